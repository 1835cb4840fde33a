/* bench_unet.c: our side of tools/bench-unet (a benchmark, not a test).
 *
 *   bench_unet --dir D [--threads N] [--reps N] [--precision fp32|bf16|fp16]
 *
 * Loads the UNet + LoRA (rank 4) that tools/bench/unet_torch.py wrote into D
 * and D/io.safetensors (x, t, context, eps), checks our eps against PyTorch's,
 * then times inference forward (no tape) and forward with tape + backward (dx
 * and LoRA grads). Times are the best of --reps runs after one warm-up (the
 * machine is shared; the minimum is the least disturbed run). Prints one
 * "BENCH case=... fwd_ms=... fb_ms=... peak_extra_mb=..." line, where
 * peak_extra_mb is the planned tape + tmp + scratch, weights_mb the weight
 * block and peak_rss_mb this process's VmHWM. --precision stores the frozen
 * weights in that dtype (mixed_precision, io/weights.h); the case name then
 * ends in _bf16 / _fp16. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/unet.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* VmHWM (peak resident set) of this process in MB, -1 if unreadable. */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

static int load(ap_st_file *f, const char *name, ap_tensor *t) {
    if (ap_st_load_f32(f, name, 0, NULL, t)) {
        fprintf(stderr, "bench_unet: %s\n", ap_errmsg());
        exit(1);
    }
    return 0;
}

#define CHECK(x)                                                                   \
    do {                                                                           \
        if ((x) != 0) {                                                            \
            fprintf(stderr, "bench_unet: %s\n", ap_errmsg());                      \
            return 1;                                                              \
        }                                                                          \
    } while (0)

int main(int argc, char **argv) {
    const char *dir = NULL;
    int threads = 0, reps = 3;
    ap_dtype precision = AP_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            if (ap_weights_precision_parse(argv[++i], &precision))
                return fprintf(stderr, "bench_unet: --%s\n", ap_errmsg()), 2;
        }
        else {
            fprintf(stderr, "usage: bench_unet --dir D [--threads N] [--reps N] "
                    "[--precision fp32|bf16|fp16]\n");
            return 2;
        }
    }
    if (!dir) return fprintf(stderr, "bench_unet: --dir is required\n"), 2;
    ap_ctx ctx;
    CHECK(ap_ctx_init(&ctx, threads));
    ap_ctx_pin_threads(&ctx);
    ap_weights_set_frozen_dtype(precision);
    ap_unet m;
    CHECK(ap_unet_open(&m, dir, 4));
    CHECK(ap_unet_load_lora(&m, dir));
    char path[4096];
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    ap_st_file *f;
    CHECK(ap_st_open(&f, path));
    ap_tensor x, t, c, ref;
    load(f, "x", &x), load(f, "t", &t), load(f, "context", &c), load(f, "eps", &ref);
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], L = c.shape[1];
    ap_unet_plan p;
    CHECK(ap_unet_plan_measure(&ctx, &m, B, H, W, L, &p));
    ap_arena tape, tmp;
    CHECK(ap_arena_init(&tape, p.tape_bytes, "UNet tape"));
    CHECK(ap_arena_init(&tmp, p.tmp_bytes, "UNet tmp"));
    CHECK(ap_ctx_reserve(&ctx, p.scratch_bytes));
    ctx.tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_unet_saved sv;
    CHECK(ap_unet_saved_init(&sv, &m));
    ap_tensor eps = ref, dx = x;
    eps.data = calloc((size_t)ap_numel(&ref), sizeof(float));
    dx.data = calloc((size_t)ap_numel(&x), sizeof(float));

    CHECK(ap_unet_forward(&ctx, NULL, &m, &sv, &eps, &x, &t, &c));
    double err = 0, mag = 0;
    for (int64_t i = 0; i < ap_numel(&ref); i++) {
        double e = fabs(eps.data[i] - ref.data[i]);
        if (e > err || e != e) err = e;
        if (fabs(ref.data[i]) > mag) mag = fabs(ref.data[i]);
    }
    fprintf(stderr, "bench_unet: eps vs PyTorch: max abs err %.3g (max |eps| %.3g); %zu weights, "
            "%zu LoRA floats; tape %.1f MB, tmp %.1f MB, scratch %.1f MB\n", err, mag,
            m.params.total, m.lora.total, p.tape_bytes / 1e6, p.tmp_bytes / 1e6,
            p.scratch_bytes / 1e6);

    double best_f = 1e30, best_b = 1e30;
    for (int r = 0; r <= reps; r++) { /* r = 0: warm-up */
        double t0 = now_ms();
        CHECK(ap_unet_forward(&ctx, NULL, &m, &sv, &eps, &x, &t, &c));
        double t1 = now_ms();
        ap_tape_reset(&tp);
        CHECK(ap_unet_forward(&ctx, &tp, &m, &sv, &eps, &x, &t, &c));
        CHECK(ap_unet_backward(&ctx, &tp, &m, &sv, &dx, &ref));
        double t2 = now_ms();
        if (r > 0) {
            if (t1 - t0 < best_f) best_f = t1 - t0;
            if (t2 - t1 < best_b) best_b = t2 - t1;
        }
    }
    const char *pname = precision == AP_BF16 ? "bf16" : precision == AP_F16 ? "fp16" : "fp32";
    printf("BENCH case=unet_b%lld_%lldx%lld_ctx%lld%s%s precision=%s threads=%d fwd_ms=%.1f "
           "fb_ms=%.1f fwd_gflops=- fb_gflops=- peak_extra_mb=%.0f weights_mb=%.1f "
           "peak_rss_mb=%.0f\n", (long long)B, (long long)H, (long long)W, (long long)L,
           precision ? "_" : "", precision ? pname : "", pname, ctx.n_threads, best_f, best_b,
           (p.tape_bytes + p.tmp_bytes + p.scratch_bytes) / 1048576.0,
           ap_params_bytes(&m.params) / 1048576.0, peak_rss_mb());
    free(eps.data), free(dx.data), free(x.data), free(t.data), free(c.data), free(ref.data);
    ap_st_close(f);
    ap_unet_saved_free(&sv);
    ctx.tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    ap_unet_free(&m);
    ap_ctx_free(&ctx);
    return 0;
}
