/* rundir.c: the training run directory as one run (rundir.h): its path, is
 * it in use, moving an old run aside, removing dead writers' temporaries,
 * the done marker, and the identity comparison of two resolved configs.
 *
 * The resolved config (config.c emit) is one "key: value" per line, with
 * "train:", "pretrained:", "reward:" section lines whose keys follow
 * indented by two spaces; the identity comparison reads exactly that. */
#include "train/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "core/path.h"
#include "io/atomic.h"

int ap_run_dir_path(const ap_train_config *c, char *out, size_t cap) {
    const char *base = strrchr(c->path, '/');
    base = base ? base + 1 : c->path;
    if (c->run_name[0]) base = c->run_name;
    size_t l = strlen(base);
    if (!c->run_name[0] && l > 5 && !strcmp(base + l - 5, ".yaml")) l -= 5;
    else if (!c->run_name[0] && l > 4 && !strcmp(base + l - 4, ".yml")) l -= 4;
    if ((size_t)snprintf(out, cap, "%s/%.*s", c->logdir, (int)l, base) >= cap)
        return ap_fail("logdir: %s: path too long (at most %zu bytes with run_name)", c->logdir, cap);
    return AP_OK;
}

int ap_run_dir_used(const char *dir, char *what, size_t cap) {
    if (cap) what[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return ap_fail("%s: cannot list the run directory: %s", dir, strerror(errno));
    }
    int n = 0;
    size_t k = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (!strcmp(s, ".") || !strcmp(s, "..") || !strcmp(s, "tiny-model")) continue;
        if (n < 4 && k < cap) k += (size_t)snprintf(what + k, cap - k, "%s%s", n ? ", " : "", s);
        n++;
    }
    closedir(d);
    if (n > 4 && k < cap) snprintf(what + k, cap - k, ", ...");
    return n > 0;
}

int ap_run_dir_move_aside(const char *dir, char *out, size_t cap) {
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    for (int k = 1; k < 1000; k++) {
        int len = k == 1 ? snprintf(out, cap, "%s.old-%s", dir, stamp)
                         : snprintf(out, cap, "%s.old-%s-%d", dir, stamp, k);
        if (len < 0 || (size_t)len >= cap) return ap_fail("%s: path too long to move aside", dir);
        if (ap_path_exists(out)) continue;
        if (rename(dir, out) != 0)
            return ap_fail("%s: cannot move the old run aside to %s: %s", dir, out, strerror(errno));
        return AP_OK;
    }
    return ap_fail("%s: 999 old runs named %s.old-%s-*: move some away", dir, dir, stamp);
}

int ap_run_dir_clean_tmp(const char *dir) {
    char cdir[4096];
    if ((size_t)snprintf(cdir, sizeof cdir, "%s/checkpoints", dir) >= sizeof cdir)
        return ap_fail("%s: run directory name too long", dir);
    DIR *d = opendir(cdir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return ap_fail("%s: cannot list: %s", cdir, strerror(errno));
    }
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (!strncmp(e->d_name, "checkpoint_", 11) && strstr(e->d_name, ".tmp."))
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++) {
        char p[4500];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", cdir, names[i]) >= sizeof p) continue;
        AP_TRY(ap_atomic_remove(p));
        fprintf(stderr, "removed %s (a checkpoint being written when its writer died)\n", p);
    }
    return n;
}

int ap_run_dir_mark_done(const char *dir, int64_t step) {
    char p[4200], text[64];
    snprintf(p, sizeof p, "%s/done", dir);
    int n = snprintf(text, sizeof text, "step %" PRId64 "\n", step);
    return ap_write_file_atomic(p, text, (size_t)n);
}

int64_t ap_run_dir_done_step(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/done", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    long long s = -1;
    if (fscanf(f, "step %lld", &s) != 1) s = -1;
    fclose(f);
    return s;
}

/* ---- identity -------------------------------------------------------------- */

/* Keys that may change between a run and its resumption: when and how often
 * to save, evaluate and check; how the work is split over ranks; where
 * outputs and weights live (the weights themselves are compared by content
 * hash). Every other key changes what is trained. */
static const char *const k_resumable[] = {
    "run_name", "logdir", "num_epochs", "save_freq", "num_checkpoint_limit", "vis_freq",
    "max_vis_images", "same_evaluation", "visualize_train", "visualize_eval", "log_tensorboard", "resume_from",
    "resume_from_2", "mixing_coef_1", "mixed_precision", "allow_tf32", "backend",
    "grad_checkpoint", "checksum_every", "debug", "eval_prompt_fn", "prompts_dir",
    "max_nonfinite_steps", "train.per_gpu_capacity", "train.per_gpu_capacity_by_host",
    "pretrained.model", "pretrained.revision", "reward.aesthetic_clip", "reward.aesthetic_mlp",
    "reward.hps_checkpoint", "reward.hps_config", "reward.hps_tokenizer", NULL};

int ap_identity_resumable(const char *key) {
    for (int i = 0; k_resumable[i]; i++)
        if (!strcmp(k_resumable[i], key)) return 1;
    return 0;
}

/* The value of dotted key in a resolved config (NULL: absent); its length
 * into *len. */
static const char *lookup(const char *text, const char *key, size_t *len) {
    const char *dot = strchr(key, '.');
    size_t sl = dot ? (size_t)(dot - key) : 0;
    const char *name = dot ? dot + 1 : key;
    size_t nl = strlen(name);
    int in_sec = 0;
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (p[0] != ' ' && p[0] != '#' && ll > 0 && p[ll - 1] == ':') /* a section */
            in_sec = dot && ll - 1 == sl && !strncmp(p, key, sl);
        else if (p[0] != ' ' && p[0] != '#') in_sec = 0;
        const char *k = p;
        int indented = ll > 2 && p[0] == ' ' && p[1] == ' ' && p[2] != ' ';
        if (indented) k += 2;
        if ((dot ? in_sec && indented : !indented && p[0] != ' ') &&
            (size_t)(p + ll - k) > nl + 1 && !strncmp(k, name, nl) && k[nl] == ':' &&
            k[nl + 1] == ' ') {
            *len = (size_t)(p + ll - (k + nl + 2));
            return k + nl + 2;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

int ap_identity_diff(const char *was, const char *now, char *diff, size_t cap) {
    if (cap) diff[0] = '\0';
    if (!was || !now) return 0;
    int n = 0;
    size_t k = 0;
    char sec[32] = "";
    for (const char *p = now; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        char key[160] = "";
        if (p[0] != ' ' && p[0] != '#' && ll > 0 && ll < sizeof sec && p[ll - 1] == ':') {
            snprintf(sec, sizeof sec, "%.*s", (int)ll - 1, p);
        } else if (p[0] != '#' && ll > 0) {
            int indented = p[0] == ' ';
            const char *s = p + (indented ? 2 : 0);
            const char *colon = memchr(s, ':', (size_t)(p + ll - s));
            if (!indented) sec[0] = '\0';
            if (colon && (!indented || sec[0]))
                snprintf(key, sizeof key, "%s%s%.*s", indented ? sec : "", indented ? "." : "",
                         (int)(colon - s), s);
        }
        p = eol ? eol + 1 : NULL;
        if (!key[0] || ap_identity_resumable(key)) continue;
        size_t la, lb;
        const char *a = lookup(was, key, &la), *b = lookup(now, key, &lb);
        if (!a || !b || (la == lb && !memcmp(a, b, la))) continue;
        if (k < cap)
            k += (size_t)snprintf(diff + k, cap - k, "%s%s (%.*s -> %.*s)", n ? ", " : "", key,
                                  (int)(la > 80 ? 80 : la), a, (int)(lb > 80 ? 80 : lb), b);
        n++;
    }
    return n;
}
