/* bench_vae.c: times the VAE decoder (models/vae.h) on random weights (not a
 * test). Compare with tools/bench/vae_torch.py (diffusers, same config and
 * thread count).
 *
 * usage: bench_vae [--threads N] [--reps N] [--batch B] [--latent H W]
 *                  [--channels 64,128,256,256] [--layers 2] [--groups 32] [--full-tape]
 * --full-tape: tape every activation (v->full_tape) instead of block
 * checkpointing; --reps 0: one run of each, no warm-up (for peak-RSS checks).
 * Defaults: SD v1.5's decoder, B 1, a 64x64 latent. Prints one line per
 * measurement: the median of --reps runs after one warm-up, for inference
 * (tape NULL) and for a taped forward plus backward, with the planned tape
 * and tmp sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "models/vae.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *x, size_t n, unsigned seed, float scale) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * scale;
    }
}

int main(int argc, char **argv) {
    int threads = 0, reps = 3, full_tape = 0;
    int64_t B = 1, h = 64, w = 64;
    ap_vae_config c;
    ap_vae_config_sd15(&c);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--latent") && i + 2 < argc) h = atoi(argv[++i]), w = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) c.layers_per_block = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--groups") && i + 1 < argc) c.groups = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full-tape")) full_tape = 1;
        else if (!strcmp(argv[i], "--channels") && i + 1 < argc) {
            c.n_blocks = 0;
            for (char *t = strtok(argv[++i], ","); t && c.n_blocks < AP_VAE_MAX_BLOCKS; t = strtok(NULL, ","))
                c.block_out[c.n_blocks++] = atoi(t);
        } else {
            printf("usage: bench_vae [--threads N] [--reps N] [--batch B] [--latent H W]\n"
                   "                 [--channels 64,128,256,256] [--layers 2] [--groups 32]"
                   " [--full-tape]\n");
            return strcmp(argv[i], "--help") ? 1 : 0;
        }
    }
    ap_ctx ctx;
    ap_vae v;
    if (ap_ctx_init(&ctx, threads) || ap_vae_declare(&v, &c) || ap_vae_alloc(&v)) {
        fprintf(stderr, "bench_vae: %s\n", ap_errmsg());
        return 1;
    }
    v.full_tape = full_tape;
    /* random weights: GroupNorm gammas 1, others small */
    for (int i = 0; i < v.params.count; i++) {
        ap_param *p = &v.params.items[i];
        size_t n = (size_t)ap_numel(&p->t);
        if (strstr(p->name, "norm") && strstr(p->name, "weight"))
            for (size_t j = 0; j < n; j++) p->t.data[j] = 1.0f;
        else
            fill(p->t.data, n, (unsigned)i + 1, p->t.ndim > 1 ? 2.0f / (float)(p->t.shape[1] * 3) : 0.1f);
    }
    int64_t s = (int64_t)1 << (c.n_blocks - 1);
    size_t nl = (size_t)(B * c.latent_channels * h * w), ni = (size_t)(B * c.out_channels * h * s * w * s);
    float *lat = malloc(nl * 4), *img = malloc(ni * 4), *dimg = malloc(ni * 4), *dlat = malloc(nl * 4);
    fill(lat, nl, 7, 2.0f);
    fill(dimg, ni, 9, 2.0f);
    ap_tensor tl = ap_t4(lat, B, c.latent_channels, h, w), td = ap_t4(dlat, B, c.latent_channels, h, w);
    ap_tensor ti = ap_t4(img, B, c.out_channels, h * s, w * s), tdi = ap_t4(dimg, B, c.out_channels, h * s, w * s);
    ap_arena tape, tmp;
    ap_plan plan;
    if (ap_vae_plan_measure(&ctx, &v, B, h, w, &plan) ||
        ap_arena_init(&tape, plan.tape_bytes, "VAE tape") ||
        ap_arena_init(&tmp, plan.tmp_bytes, "VAE tmp") || ap_ctx_reserve(&ctx, plan.scratch_bytes)) {
        fprintf(stderr, "bench_vae: %s\n", ap_errmsg());
        return 1;
    }
    ctx.tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_vae_saved sv;
    printf("bench_vae: %zu parameters, B %lld, latent %lldx%lld, %d threads; tape %.0f MB, "
           "tmp %.0f MB, scratch %.0f MB\n", v.params.total, (long long)B, (long long)h,
           (long long)w, ctx.n_threads, plan.tape_bytes / 1e6, tmp.cap / 1e6, ctx.scratch_cap / 1e6);
    double *t_inf = calloc((size_t)reps + 1, sizeof(double)), *t_fb = calloc((size_t)reps + 1, sizeof(double));
    for (int r = 0; r <= reps; r++) {
        double t0 = now_ms();
        if (ap_vae_forward(&ctx, NULL, &v, &sv, &ti, &tl)) goto fail;
        t_inf[r] = now_ms() - t0;
        ap_tape_reset(&tp);
        t0 = now_ms();
        if (ap_vae_forward(&ctx, &tp, &v, &sv, &ti, &tl) ||
            ap_vae_backward(&ctx, &tp, &v, &sv, &td, &tdi))
            goto fail;
        t_fb[r] = now_ms() - t0;
    }
    qsort(t_inf + 1, (size_t)reps, sizeof(double), cmp);
    qsort(t_fb + 1, (size_t)reps, sizeof(double), cmp);
    int m = reps ? 1 + reps / 2 : 0;
    printf("BENCH vae decode fwd_ms=%.0f fwd+bwd_ms=%.0f (%s, median of %d after a warm-up)\n",
           t_inf[m], t_fb[m], full_tape ? "full tape" : "checkpointed", reps);
    return 0;
fail:
    fprintf(stderr, "bench_vae: %s\n", ap_errmsg());
    return 1;
}
