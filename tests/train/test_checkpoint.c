/* test_checkpoint.c: train/checkpoint.h on SD v1.5's rank-4 LoRA key set
 * (797,184 floats, docs/lora.md §5): bit-exact round trip, the
 * safetensors export through ap_wsrc_open, limit pruning, latest skipping a
 * temporary and a truncated state.h5, strict read errors, content hashes
 * that catch a changed LoRA or Adam value, the time to write one checkpoint,
 * and kill -9 at random moments of a writer loop. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/lora_file.h"
#include "io/weights.h"
#include "testutil.h"
#include "train/checkpoint.h"

static char g_dir[256];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* SD v1.5's LoRA list: 16 transformer blocks, attn1 (self) and attn2 (cross,
 * 768), to_q/k/v/out, down (4, in) then up (out, 4), save_attn_procs order
 * (blocks in the order of the appendix). rank 0: a small variant for loops. */
static void sd_lora(ap_params *p, int small) {
    static const struct { const char *blk; int n, h; } blocks[] = {
        {"down_blocks.0", 2, 320}, {"down_blocks.1", 2, 640}, {"down_blocks.2", 2, 1280},
        {"up_blocks.1", 3, 1280},  {"up_blocks.2", 3, 640},   {"up_blocks.3", 3, 320},
        {"mid_block", 1, 1280}};
    static const char *proj[4] = {"to_q", "to_k", "to_v", "to_out"};
    ap_params_init(p);
    for (int b = 0; b < 7; b++)
        for (int a = 0; a < blocks[b].n; a++)
            for (int at = 1; at <= 2; at++)
                for (int k = 0; k < 4; k++) {
                    int64_t h = small ? blocks[b].h / 32 : blocks[b].h;
                    int64_t in = at == 2 && (k == 1 || k == 2) ? (small ? 24 : 768) : h;
                    int64_t dn[2] = {4, in}, up[2] = {h, 4};
                    const char *pre = blocks[b].blk;
                    ap_params_add(p, NULL, 2, dn,
                                  "%s.attentions.%d.transformer_blocks.0.attn%d.processor.%s_lora."
                                  "down.weight",
                                  pre, a, at, proj[k]);
                    ap_params_add(p, NULL, 2, up,
                                  "%s.attentions.%d.transformer_blocks.0.attn%d.processor.%s_lora."
                                  "up.weight",
                                  pre, a, at, proj[k]);
                }
    ap_params_alloc(p, "test LoRA");
}

static void fill(ap_params *p, float *m, float *v, uint64_t seed) {
    tu_fill_normal(p->flat, (int64_t)p->total, seed, 0.02f);
    tu_fill_normal(m, (int64_t)p->total, seed + 1, 1e-3f);
    tu_fill_uniform(v, (int64_t)p->total, seed + 2, 0, 1e-6f);
    p->flat[0] = -0.0f; /* bit-exact means the sign of zero too */
    p->flat[1] = 1e-40f; /* a denormal */
}

static ap_ckpt_meta meta_for(int64_t step) {
    ap_ckpt_meta m = {.step = step, .epoch = step / 10, .adam_step = step,
                      .seed = 0xfedcba9876543210ull, .next_sample = step * 64,
                      .config = "lr: 1.0e-3\nprompt_fn: simple_animals\n", .model = "sd-v1-5",
                      .base_hash = "sha256:0123abcd"};
    return m;
}

static void run_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static int count_prefix(const char *dir, const char *prefix, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix)) && (!needle || strstr(e->d_name, needle));
    if (d) closedir(d);
    return n;
}

/* Add 1 to the first value of dataset name of an HDF5 file (a bit flip's
 * worth of damage with the file's structure intact). */
static void change_one(const char *file, const char *name) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hsize_t start[2] = {0, 0}, one[2] = {1, 1};
    float x = 0;
    hid_t ms = H5Screate_simple(1, one, NULL);
    int nd = sp < 0 ? 0 : H5Sget_simple_extent_ndims(sp);
    int ok = sp >= 0 && H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, one, NULL) >= 0 &&
             H5Dread(ds, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &x) >= 0;
    x += 1.0f;
    ok = ok && H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &x) >= 0;
    tu_check(ok && nd >= 1, "changed the first value of %s in %s", name, file);
    H5Sclose(ms);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
}

static void test_roundtrip(void) {
    printf("round trip (SD v1.5 rank-4 LoRA key set):\n");
    ap_params p, q;
    sd_lora(&p, 0);
    sd_lora(&q, 0);
    tu_check(p.count == 256 && p.total == 797184, "%d tensors, %zu floats (expected 256, 797184)",
             p.count, p.total);
    float *m = tu_alloc((int64_t)p.total), *v = tu_alloc((int64_t)p.total);
    float *m2 = tu_alloc((int64_t)p.total), *v2 = tu_alloc((int64_t)p.total);
    fill(&p, m, v, 11);
    char run[512], path[4096];
    run_dir(run, sizeof run, "rt");
    ap_ckpt_meta meta = meta_for(120);
    /* time: median of 5 writes of the full checkpoint (state.h5 + export, fsync'ed) */
    double t[5];
    int rc = 0;
    for (int i = 0; i < 5 && !rc; i++) {
        double t0 = now_s();
        rc = ap_ckpt_write(run, &p, m, v, &meta, 0, path, sizeof path);
        t[i] = now_s() - t0;
    }
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    tu_check(rc == 0, "write %s (%s)", path, rc ? ap_errmsg() : "ok");
    printf("  time to write a checkpoint of 797,184 LoRA floats + 2 moment buffers "
           "(%.1f MB state.h5 + %.1f MB safetensors, fsync'ed): median %.1f ms, min %.1f, max %.1f\n",
           3 * 797184 * 4 / 1e6, 797184 * 4 / 1e6, t[2] * 1e3, t[0] * 1e3, t[4] * 1e3);
    ap_ckpt_meta got;
    rc = ap_ckpt_read(path, &q, m2, v2, &got);
    tu_check(rc == 0, "read back (%s)", rc ? ap_errmsg() : "ok");
    if (rc == 0) {
        tu_check(!memcmp(q.flat, p.flat, p.total * 4) && !memcmp(m2, m, p.total * 4) &&
                     !memcmp(v2, v, p.total * 4),
                 "LoRA, m, v bit-exact (memcmp of %zu bytes each)", p.total * 4);
        tu_check(got.step == 120 && got.epoch == 12 && got.adam_step == 120 &&
                     got.seed == meta.seed && got.next_sample == 120 * 64,
                 "step %lld epoch %lld adam_step %lld seed %llx next_sample %lld", (long long)got.step,
                 (long long)got.epoch, (long long)got.adam_step, (unsigned long long)got.seed,
                 (long long)got.next_sample);
        tu_check(got.config && !strcmp(got.config, meta.config) && !strcmp(got.model, meta.model) &&
                     !strcmp(got.base_hash, meta.base_hash),
                 "config, model, base_hash strings equal");
        ap_ckpt_meta_free(&got);
    }
    /* the state.h5 alone, LoRA only (m, v, meta NULL) */
    char file[4200];
    snprintf(file, sizeof file, "%s/state.h5", path);
    memset(q.flat, 0, q.total * 4);
    rc = ap_ckpt_read(file, &q, NULL, NULL, NULL);
    tu_check(rc == 0 && !memcmp(q.flat, p.flat, p.total * 4), "LoRA-only read of state.h5 (%s)",
             rc ? ap_errmsg() : "ok");

    /* the export: names and shapes through the weight index, values exact */
    snprintf(file, sizeof file, "%s/pytorch_lora_weights.safetensors", path);
    ap_wsrc *w = NULL;
    rc = ap_wsrc_open(&w, file);
    tu_check(rc == 0, "ap_wsrc_open(%s) (%s)", file, rc ? ap_errmsg() : "ok");
    if (rc == 0) {
        tu_check(ap_wsrc_count(w) == p.count, "%d tensors in the export (expected %d)",
                 ap_wsrc_count(w), p.count);
        int bad = 0;
        for (int i = 0; i < p.count; i++) {
            ap_tensor s;
            if (ap_wsrc_shape(w, p.items[i].name, &s) || s.ndim != 2 ||
                s.shape[0] != p.items[i].t.shape[0] || s.shape[1] != p.items[i].t.shape[1]) {
                if (bad++ < 3) printf("       %s: missing or wrong shape\n", p.items[i].name);
            }
        }
        tu_check(bad == 0, "every save_attn_procs name present with its shape (%d bad)", bad);
        memset(q.flat, 0, q.total * 4);
        rc = ap_params_fill(&q, w, "", NULL);
        tu_check(rc == 0 && !memcmp(q.flat, p.flat, p.total * 4),
                 "export values fill the LoRA list bit-exactly (%s)", rc ? ap_errmsg() : "ok");
        ap_wsrc_close(w);
    }

    /* strict errors */
    ap_params bad;
    ap_params_init(&bad);
    int64_t s1[2] = {4, 320}, s2[2] = {4, 321};
    ap_params_add(&bad, NULL, 2, s1, "%s", p.items[0].name);
    ap_params_add(&bad, NULL, 2, s2, "%s", p.items[1].name); /* (320, 4) in the file */
    ap_params_alloc(&bad, "bad");
    tu_expect_error("mismatched shape", ap_ckpt_read(path, &bad, NULL, NULL, NULL), "state.h5",
                    p.items[1].name, "expected shape (4, 321)", "found (320, 4)", NULL);
    ap_params_free(&bad);
    ap_params_init(&bad);
    ap_params_add(&bad, NULL, 2, s1, "%s", p.items[0].name);
    ap_params_add(&bad, NULL, 2, s1, "down_blocks.9.nonexistent.down.weight");
    ap_params_alloc(&bad, "bad");
    tu_expect_error("missing tensor", ap_ckpt_read(path, &bad, NULL, NULL, NULL), "state.h5",
                    "down_blocks.9.nonexistent.down.weight", "missing", NULL);
    ap_params_free(&bad);
    ap_params_init(&bad);
    ap_params_add(&bad, NULL, 2, s1, "%s", p.items[0].name);
    ap_params_alloc(&bad, "bad");
    float *mm = tu_alloc(1280);
    tu_expect_error("Adam m element count (a one-tensor LoRA list)",
                    ap_ckpt_read(path, &bad, mm, NULL, NULL), "state.h5", "/adam/m",
                    "wrong element count", "expected 1280", "found 797184", NULL);
    free(mm);
    tu_expect_error("tensors the model lacks", ap_ckpt_read(path, &bad, NULL, NULL, NULL),
                    "state.h5", "255 tensors under /lora", NULL);
    ap_params_free(&bad);
    /* content hashes: one value changed inside /lora, then inside /adam/v
     * (the HDF5 structure intact) */
    snprintf(file, sizeof file, "%s/state.h5", path);
    change_one(file, "/lora/down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight");
    tu_expect_error("a LoRA value changed after writing", ap_ckpt_read(path, &q, m2, v2, NULL),
                    "state.h5", "/lora: content hash", "lora_hash", NULL);
    rc = ap_ckpt_write(run, &p, m, v, &meta, 0, path, sizeof path);
    change_one(file, "/adam/v");
    tu_check(rc == 0 && ap_ckpt_read(path, &q, NULL, NULL, NULL) == 0,
             "an Adam value changed: a LoRA-only read still verifies (%s)", rc ? ap_errmsg() : "ok");
    tu_expect_error("an Adam value changed after writing", ap_ckpt_read(path, &q, m2, v2, NULL),
                    "state.h5", "/adam/m and /adam/v: content hash", "adam_hash", NULL);
    /* truncated copy and a non-HDF5 file */
    char trunc[4300];
    snprintf(trunc, sizeof trunc, "%s/truncated.h5", g_dir);
    snprintf(file, sizeof file, "%s/state.h5", path);
    FILE *in = fopen(file, "rb"), *out = fopen(trunc, "wb");
    char *buf = malloc(1 << 20);
    size_t n = in ? fread(buf, 1, 1 << 20, in) : 0;
    if (out) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    free(buf);
    tu_expect_error("truncated state.h5 (first 1 MiB)", ap_ckpt_read(trunc, &q, NULL, NULL, NULL),
                    "truncated.h5", "not a readable HDF5 file", NULL);
    out = fopen(trunc, "wb");
    if (out) fputs("this is not HDF5\n", out), fclose(out);
    tu_expect_error("not HDF5", ap_ckpt_read(trunc, &q, NULL, NULL, NULL), "truncated.h5",
                    "not a readable HDF5 file", NULL);
    tu_expect_error("missing file", ap_ckpt_read("/nonexistent/checkpoint_3", &q, NULL, NULL, NULL),
                    "/nonexistent/checkpoint_3/state.h5", NULL);
    free(m), free(v), free(m2), free(v2);
    ap_params_free(&p), ap_params_free(&q);
}

static void test_prune_latest(void) {
    printf("pruning and latest:\n");
    ap_params p;
    sd_lora(&p, 1);
    float *m = tu_alloc((int64_t)p.total), *v = tu_alloc((int64_t)p.total);
    char run[512], dir[600], path[4096];
    run_dir(run, sizeof run, "prune");
    snprintf(dir, sizeof dir, "%s/checkpoints", run);
    int rc = ap_ckpt_latest(run, path, sizeof path);
    tu_check(rc == 0, "no checkpoints yet: latest returns 0 (%d)", rc);
    int64_t steps[] = {5, 10, 15, 20, 25};
    for (int i = 0; i < 5; i++) {
        ap_ckpt_meta meta = meta_for(steps[i]);
        fill(&p, m, v, (uint64_t)steps[i]);
        rc |= ap_ckpt_write(run, &p, m, v, &meta, 3, NULL, 0);
    }
    struct stat st;
    char d[700];
    int kept = 1;
    for (int i = 0; i < 5; i++) {
        snprintf(d, sizeof d, "%s/checkpoint_%lld", dir, (long long)steps[i]);
        kept &= (stat(d, &st) == 0) == (i >= 2);
    }
    tu_check(rc == 0 && kept && count_prefix(dir, "checkpoint_", NULL) == 3,
             "limit 3 after 5 writes: 15, 20, 25 kept, oldest removed, nothing else (%d entries)",
             count_prefix(dir, "checkpoint_", NULL));
    /* an older step written after newer ones is never the one pruned */
    ap_ckpt_meta meta = meta_for(7);
    rc = ap_ckpt_write(run, &p, m, v, &meta, 3, NULL, 0);
    snprintf(d, sizeof d, "%s/checkpoint_7", dir);
    int has7 = stat(d, &st) == 0;
    snprintf(d, sizeof d, "%s/checkpoint_15", dir);
    tu_check(rc == 0 && has7 && stat(d, &st) != 0, "writing step 7 with limit 3 keeps 7, drops 15");
    /* latest: a newer stray temporary and a truncated state.h5 are skipped */
    snprintf(d, sizeof d, "%s/checkpoint_30.tmp.999.0", dir);
    mkdir(d, 0777);
    snprintf(d, sizeof d, "%s/checkpoint_40", dir);
    mkdir(d, 0777);
    snprintf(d, sizeof d, "%s/checkpoint_40/state.h5", dir);
    FILE *f = fopen(d, "wb");
    if (f) fwrite("\x89HDF\r\n\x1a\n\0\0\0\0", 1, 12, f), fclose(f);
    snprintf(d, sizeof d, "%s/checkpoint_35", dir); /* empty directory: no state.h5 */
    mkdir(d, 0777);
    printf("  (two warnings expected below: checkpoint_40 truncated, checkpoint_35 empty)\n");
    fflush(stdout);
    rc = ap_ckpt_latest(run, path, sizeof path);
    tu_check(rc == 1 && strlen(path) > 14 && !strcmp(path + strlen(path) - 14, "/checkpoint_25"),
             "latest = checkpoint_25 (found %s)", rc == 1 ? path : "none");
    free(m), free(v);
    ap_params_free(&p);
}

/* kill -9: a child writes checkpoints in a loop (limit 3), resuming after the
 * latest like a restarted run; the parent kills it at random moments and then
 * requires every final-named checkpoint to read back exactly. */
static void writer_loop(const char *run) {
    ap_params p;
    sd_lora(&p, 0);
    float *m = tu_alloc((int64_t)p.total), *v = tu_alloc((int64_t)p.total);
    char path[4096];
    ap_ckpt_meta got;
    int64_t step = 1;
    if (ap_ckpt_latest(run, path, sizeof path) == 1 && ap_ckpt_read(path, &p, m, v, &got) == 0) {
        step = got.step + 1;
        ap_ckpt_meta_free(&got);
    }
    for (;; step++) {
        ap_ckpt_meta meta = meta_for(step);
        fill(&p, m, v, (uint64_t)step);
        if (ap_ckpt_write(run, &p, m, v, &meta, 3, NULL, 0)) {
            fprintf(stderr, "writer: %s\n", ap_errmsg());
            _exit(2);
        }
    }
}

static void test_kill9(void) {
    printf("kill -9 at random moments of a writer loop (SD-size checkpoints, limit 3):\n");
    char run[512], dir[600];
    run_dir(run, sizeof run, "kill");
    snprintf(dir, sizeof dir, "%s/checkpoints", run);
    ap_params p, want;
    sd_lora(&p, 0);
    sd_lora(&want, 0);
    float *m = tu_alloc((int64_t)p.total), *v = tu_alloc((int64_t)p.total);
    float *wm = tu_alloc((int64_t)want.total), *wv = tu_alloc((int64_t)want.total);
    srand((unsigned)time(NULL));
    int kills = 8, checked = 0, bad = 0, temps = 0;
    for (int k = 0; k < kills; k++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) writer_loop(run);
        usleep(100000 + (useconds_t)(rand() % 500000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            tu_check(0, "writer %d ended otherwise than by SIGKILL (status 0x%x)", k, status);
            continue;
        }
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, "checkpoint_", 11)) continue;
            if (strstr(e->d_name, ".tmp.")) {
                temps++;
                continue;
            }
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            ap_ckpt_meta got;
            int rc = ap_ckpt_read(path, &p, m, v, &got);
            long long step = atoll(e->d_name + 11);
            fill(&want, wm, wv, (uint64_t)step);
            int same = rc == 0 && got.step == step && !memcmp(p.flat, want.flat, p.total * 4) &&
                       !memcmp(m, wm, p.total * 4) && !memcmp(v, wv, p.total * 4);
            char st[4300];
            snprintf(st, sizeof st, "%s/pytorch_lora_weights.safetensors", path);
            ap_wsrc *w = NULL;
            int ok_st = ap_wsrc_open(&w, st) == 0;
            if (ok_st) {
                ok_st = ap_params_fill(&want, w, "", NULL) == 0 &&
                        !memcmp(p.flat, want.flat, p.total * 4);
                ap_wsrc_close(w);
            }
            /* the peft export (docs/lora.md §7) holds the same values */
            snprintf(st, sizeof st, "%s/peft", path);
            ap_lora_set ls;
            if (ok_st && ap_lora_read(&ls, st) == 0) {
                ok_st = ls.layout == AP_LORA_PEFT && ls.p.count == p.count;
                for (int k = 0; ok_st && k < p.count; k++) {
                    const ap_param *q = ap_params_find(&ls.p, p.items[k].name);
                    ok_st = q && !memcmp(ls.p.flat + q->offset, p.flat + p.items[k].offset,
                                         (size_t)ap_numel(&q->t) * 4);
                }
                ap_lora_set_free(&ls);
            } else {
                ok_st = 0;
            }
            int entries = count_prefix(path, "", NULL) - 2; /* . and .. */
            if (!same || !ok_st || entries != 3) { /* state.h5, the export, peft/ */
                if (bad++ < 5)
                    printf("       %s: read %s, values %s, export %s, %d entries\n", path,
                           rc ? ap_errmsg() : "ok", same ? "exact" : "DIFFER",
                           ok_st ? "ok" : "BAD", entries);
            }
            if (rc == 0) ap_ckpt_meta_free(&got);
            checked++;
        }
        if (d) closedir(d);
    }
    char path[4096];
    int latest = ap_ckpt_latest(run, path, sizeof path);
    tu_check(bad == 0 && checked > 0,
             "%d kills: %d final-named checkpoint reads, all complete and exact (%d bad); "
             "%d stray temporaries seen (allowed: a killed writer cannot clean up)",
             kills, checked, bad, temps);
    tu_check(latest == 1, "latest after the kills: %s", latest == 1 ? path : "none");
    free(m), free(v), free(wm), free(wv);
    ap_params_free(&p), ap_params_free(&want);
}

int main(void) {
    printf("test_checkpoint: checkpoint directories (state.h5 + LoRA export)\n");
    snprintf(g_dir, sizeof g_dir, "/tmp/ap_test_ckpt.XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("mkdtemp failed");
    test_roundtrip();
    test_prune_latest();
    test_kill9();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_dir);
    return tu_exit();
}
