/* lora_file.c: a UNet LoRA file of any layout, read and written (lora_file.h,
 * docs/lora.md §6-7). */
#include "io/lora_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/path.h"
#include "io/st_write.h"

int ap_lora_resolve(const char *path, char *file, size_t cap) {
    static const char *const names[] = {"pytorch_lora_weights.safetensors",
                                        "pytorch_lora_weights.bin", NULL};
    if (!ap_is_dir(path)) {
        if (snprintf(file, cap, "%s", path) >= (int)cap) return ap_fail("%s: path too long", path);
        return AP_OK;
    }
    for (int i = 0; names[i]; i++) {
        snprintf(file, cap, "%s/%s", path, names[i]);
        if (ap_is_file(file)) return AP_OK;
    }
    return ap_fail("%s: LoRA weights: expected %s or %s in the directory, found none", path,
                   names[0], names[1]);
}

/* Rename hook: a stored key of layout *ctx -> its save_attn_procs name
 * (alphas: "<module>.processor.<proj>_lora.alpha"). */
static int to_procs(void *ctx, const char *key, char *name, size_t cap) {
    ap_lora_layout l = *(const ap_lora_layout *)ctx;
    ap_lora_key k;
    if (ap_lora_key_parse(l, key, &k)) return ap_fail("LoRA key %s: not of the %s layout", key, ap_lora_layout_name(l)), -1;
    if (k.part == AP_LORA_ALPHA) {
        ap_lora_key d = k;
        d.part = AP_LORA_DOWN;
        char down[512];
        if (ap_lora_key_format(AP_LORA_ATTN_PROCS, &d, down, sizeof down)) return -1;
        /* ".down.weight" -> ".alpha" */
        size_t n = strlen(down) - strlen(".down.weight");
        if (snprintf(name, cap, "%.*s.alpha", (int)n, down) >= (int)cap) return ap_fail("LoRA key %s: too long", key), -1;
    } else if (ap_lora_key_format(AP_LORA_ATTN_PROCS, &k, name, cap)) {
        return -1;
    }
    return strcmp(name, key) ? AP_WSRC_RENAMED : 0;
}

static int is_alpha(const char *name) {
    size_t n = strlen(name);
    return n > 6 && !strcmp(name + n - 6, ".alpha");
}

/* The up matrix belonging to a down name, and the down of an alpha name. */
static void sibling(const char *name, const char *from, const char *to, char *out, size_t cap) {
    size_t n = strlen(name) - strlen(from);
    snprintf(out, cap, "%.*s%s", (int)n, name, to);
}

static int ends(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* The key in the file's layout of a save_attn_procs name (alphas as
 * "<...>_lora.alpha"), for messages; the name itself when it does not map. */
static const char *file_key(const ap_lora_set *s, const char *name, char *out, size_t cap) {
    char down[600];
    ap_lora_key k;
    int alpha = ends(name, ".alpha");
    if (alpha) sibling(name, ".alpha", ".down.weight", down, sizeof down);
    else snprintf(down, sizeof down, "%s", name);
    if (ap_lora_key_parse(AP_LORA_ATTN_PROCS, down, &k)) return name;
    if (alpha) k.part = AP_LORA_ALPHA;
    return ap_lora_key_format(s->layout, &k, out, cap) ? name : out;
}

/* Check pairs and ranks, fold alphas into the ups. */
static int fold(ap_lora_set *s, const ap_params *alpha) {
    char other[600];
    s->rank = 0;
    for (int i = 0; i < s->p.count; i++) {
        const ap_param *d = &s->p.items[i];
        if (d->t.ndim != 2)
            return ap_fail("%s: LoRA matrix %s has %d dims; expected 2", s->file,
                           file_key(s, d->name, other, sizeof other), d->t.ndim);
        if (!ends(d->name, ".down.weight")) continue;
        sibling(d->name, ".down.weight", ".up.weight", other, sizeof other);
        const ap_param *u = ap_params_find(&s->p, other);
        char k1[600], k2[600];
        if (!u) return ap_fail("%s (%s layout): %s has no up matrix %s", s->file,
                              ap_lora_layout_name(s->layout), file_key(s, d->name, k1, sizeof k1),
                              file_key(s, other, k2, sizeof k2));
        int64_t r = d->t.shape[0];
        if (u->t.shape[1] != r)
            return ap_fail("%s: %s is (%lld, %lld) but %s is (%lld, %lld); expected up (out, %lld)",
                           s->file, file_key(s, d->name, k1, sizeof k1), (long long)r,
                           (long long)d->t.shape[1], file_key(s, u->name, k2, sizeof k2),
                           (long long)u->t.shape[0], (long long)u->t.shape[1], (long long)r);
        if (s->rank && s->rank != r)
            return ap_fail("%s: %s has rank %lld, earlier adapters rank %d; expected one rank for "
                           "the whole LoRA", s->file, file_key(s, d->name, k1, sizeof k1),
                           (long long)r, s->rank);
        s->rank = (int)r;
    }
    for (int i = 0; i < s->p.count; i++) {
        const ap_param *u = &s->p.items[i];
        if (!ends(u->name, ".up.weight")) continue;
        sibling(u->name, ".up.weight", ".down.weight", other, sizeof other);
        char k1[600], k2[600];
        if (!ap_params_find(&s->p, other))
            return ap_fail("%s: %s has no down matrix %s", s->file, file_key(s, u->name, k1, sizeof k1),
                           file_key(s, other, k2, sizeof k2));
    }
    if (!s->p.count) return ap_fail("%s: no LoRA matrices found", s->file);
    for (int i = 0; i < alpha->count; i++) {
        const ap_param *a = &alpha->items[i];
        if (ap_numel(&a->t) != 1) return ap_fail("%s: alpha %s has %lld elements; expected a scalar", s->file, a->name, (long long)ap_numel(&a->t));
        sibling(a->name, ".alpha", ".up.weight", other, sizeof other);
        const ap_param *u = ap_params_find(&s->p, other);
        if (!u) return ap_fail("%s: alpha %s belongs to no adapter of the file (no %s)", s->file, a->name, other);
        float av = alpha->flat[a->offset], scale = av / (float)s->rank;
        /* 0 means alpha = rank to sd-scripts but scale 0 to diffusers: refused */
        if (!(av > 0.0f))
            return ap_fail("%s: %s is %g; expected a number > 0 (tools disagree on what "
                           "alpha 0 means: sd-scripts reads it as the rank, diffusers as scale 0)",
                           s->file, file_key(s, a->name, other, sizeof other), (double)av);
        float *x = s->p.flat + u->offset;
        for (int64_t k = 0; k < ap_numel(&u->t); k++) x[k] *= scale;
        s->alphas++;
        s->alphas_not_rank += av != (float)s->rank;
    }
    return AP_OK;
}

int ap_lora_read(ap_lora_set *s, const char *path) {
    memset(s, 0, sizeof *s);
    ap_params_init(&s->p);
    AP_TRY(ap_lora_resolve(path, s->file, sizeof s->file));
    ap_wsrc *w = NULL;
    AP_TRY(ap_wsrc_open(&w, s->file));
    int n = ap_wsrc_count(w), rc = AP_OK;
    const char **keys = ap_calloc((size_t)n + 1, sizeof *keys, "LoRA key list");
    ap_params alpha;
    ap_params_init(&alpha);
    if (!keys) rc = AP_ERR;
    for (int i = 0; !rc && i < n; i++) keys[i] = ap_wsrc_key(w, i);
    if (!rc) rc = ap_lora_layout_detect(keys, n, s->file, &s->layout);
    if (!rc) rc = ap_wsrc_set_rename(w, to_procs, &s->layout);
    for (int i = 0; !rc && i < n; i++) {
        const char *name = ap_wsrc_name(w, i);
        ap_tensor t;
        rc = ap_wsrc_shape(w, name, &t);
        if (!rc && ap_params_add(is_alpha(name) ? &alpha : &s->p, NULL, t.ndim, t.shape, "%s", name) < 0) rc = AP_ERR;
    }
    if (!rc) rc = ap_params_alloc(&s->p, "LoRA tensors");
    if (!rc) rc = ap_params_alloc(&alpha, "LoRA alphas");
    if (!rc) rc = ap_params_fill(&s->p, w, "", (const char *const[]){".alpha", NULL});
    if (!rc && alpha.count) rc = ap_params_fill(&alpha, w, "", (const char *const[]){".weight", NULL});
    if (!rc) rc = fold(s, &alpha);
    free(keys);
    ap_params_free(&alpha);
    ap_wsrc_close(w);
    if (rc) ap_lora_set_free(s);
    return rc;
}

int ap_lora_rank(const char *path, int *rank) {
    char file[4096];
    AP_TRY(ap_lora_resolve(path, file, sizeof file));
    ap_wsrc *w = NULL;
    AP_TRY(ap_wsrc_open(&w, file));
    int n = ap_wsrc_count(w), rc = AP_OK;
    ap_lora_layout l = AP_LORA_ATTN_PROCS;
    const char **keys = ap_calloc((size_t)n + 1, sizeof *keys, "LoRA key list");
    if (!keys) rc = AP_ERR;
    for (int i = 0; !rc && i < n; i++) keys[i] = ap_wsrc_key(w, i);
    if (!rc) rc = ap_lora_layout_detect(keys, n, file, &l);
    if (!rc) rc = ap_wsrc_set_rename(w, to_procs, &l);
    int found = 0;
    for (int i = 0; !rc && !found && i < n; i++) {
        const char *name = ap_wsrc_name(w, i);
        if (!ends(name, ".down.weight")) continue;
        ap_tensor t;
        rc = ap_wsrc_shape(w, name, &t);
        if (!rc && (t.ndim != 2 || t.shape[0] < 1))
            rc = ap_fail("%s: %s: expected shape (rank, in), found %d dims", file, name, t.ndim);
        if (!rc) *rank = (int)t.shape[0], found = 1;
    }
    if (!rc && !found) rc = ap_fail("%s: no LoRA down matrix found (%s layout)", file, ap_lora_layout_name(l));
    free(keys);
    ap_wsrc_close(w);
    return rc;
}

void ap_lora_set_free(ap_lora_set *s) { ap_params_free(&s->p); }

int ap_lora_fill(ap_params *slots, const ap_lora_set *s) {
    char unmatched[1024] = "", missing[1024] = "", shape[1024] = "";
    int nu = 0, nm = 0, ns = 0;
    size_t uu = 0, um = 0, us = 0;
#define LIST(buf, used, cnt, ...)                                                            \
    do {                                                                                     \
        if ((cnt)++ < 4 && (used) < sizeof(buf) - 1)                                         \
            (used) += (size_t)snprintf((buf) + (used), sizeof(buf) - (used), __VA_ARGS__);   \
        if ((used) >= sizeof(buf)) (used) = sizeof(buf) - 1;                                 \
    } while (0)
    for (int i = 0; i < s->p.count; i++)
        if (!ap_params_find(slots, s->p.items[i].name))
            LIST(unmatched, uu, nu, "%s%s", nu > 1 ? ", " : "", s->p.items[i].name);
    for (int i = 0; i < slots->count; i++) { /* in the model's order */
        const ap_param *d = &slots->items[i];
        const ap_param *f = ap_params_find(&s->p, d->name);
        if (!f) {
            LIST(missing, um, nm, "%s%s", nm > 1 ? ", " : "", d->name);
            continue;
        }
        int same = d->t.ndim == f->t.ndim;
        for (int k = 0; same && k < d->t.ndim; k++) same = d->t.shape[k] == f->t.shape[k];
        if (!same) {
            char a[80], b[80];
            LIST(shape, us, ns, "%s%s expected %s, found %s", ns > 1 ? ", " : "", d->name,
                 ap_shape_str(&d->t, a, sizeof a), ap_shape_str(&f->t, b, sizeof b));
        }
    }
#undef LIST
    if (nu || nm || ns)
        return ap_fail("%s (%s layout): %d keys match no attention layer of this UNet%s%s%s; %d "
                       "of its LoRA slots missing%s%s%s; %d wrong shapes%s%s%s. Expected a LoRA "
                       "made for this model (rank %d here, %d in the file)",
                       s->file, ap_lora_layout_name(s->layout), nu, nu ? " (" : "", unmatched,
                       nu ? (nu > 4 ? ", ...)" : ")") : "", nm, nm ? " (" : "", missing,
                       nm ? (nm > 4 ? ", ...)" : ")") : "", ns, ns ? " (" : "", shape,
                       ns ? (ns > 4 ? ", ...)" : ")") : "",
                       slots->count ? (int)slots->items[0].t.shape[0] : 0, s->rank);
    for (int i = 0; i < s->p.count; i++) {
        const ap_param *f = &s->p.items[i];
        const ap_param *d = ap_params_find(slots, f->name);
        memcpy(slots->flat + d->offset, s->p.flat + f->offset, (size_t)ap_numel(&f->t) * sizeof(float));
    }
    return AP_OK;
}

int ap_lora_write(const ap_params *p, ap_lora_layout layout, const char *path) {
    int n = p->count, cap = 2 * n + 1, m = 0, rc = AP_OK;
    ap_st_entry *e = ap_calloc((size_t)cap, sizeof *e, "LoRA export list");
    char **names = ap_calloc((size_t)cap, sizeof *names, "LoRA export names");
    ap_tensor *alphas = ap_calloc((size_t)n + 1, sizeof *alphas, "LoRA alphas");
    float *av = ap_calloc((size_t)n + 1, sizeof *av, "LoRA alpha values");
    if (!e || !names || !alphas || !av) rc = AP_ERR;
    for (int i = 0; !rc && i < n; i++) {
        const ap_param *q = &p->items[i];
        ap_lora_key k;
        if (ap_lora_key_parse(AP_LORA_ATTN_PROCS, q->name, &k)) {
            rc = ap_fail("%s: LoRA slot %s is no save_attn_procs adapter name", path, q->name);
            break;
        }
        names[m] = ap_malloc(512, "LoRA key");
        if (!names[m] || ap_lora_key_format(layout, &k, names[m], 512)) { rc = AP_ERR; break; }
        e[m].name = names[m];
        e[m].t = &q->t;
        m++;
        if (layout == AP_LORA_KOHYA && k.part == AP_LORA_DOWN) {
            k.part = AP_LORA_ALPHA;
            names[m] = ap_malloc(512, "LoRA key");
            if (!names[m] || ap_lora_key_format(layout, &k, names[m], 512)) { rc = AP_ERR; break; }
            av[i] = (float)q->t.shape[0]; /* alpha = rank: scale 1 */
            alphas[i] = ap_tn(&av[i], 0, NULL);
            e[m].name = names[m];
            e[m].t = &alphas[i];
            m++;
        }
    }
    const char *meta[] = {"format", "pt", NULL};
    if (!rc) rc = ap_st_write(path, e, m, meta);
    for (int i = 0; names && i < cap; i++) free(names[i]);
    free(names), free(e), free(alphas), free(av);
    return rc;
}
