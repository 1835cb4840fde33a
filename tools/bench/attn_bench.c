/* attn_bench.c: times ap_attention_forward/backward (src/ops/attention.c);
 * compare with tools/bench/attn_torch.py. Not built by default:
 *
 *   ninja -C build && cc -O3 -std=c11 -fopenmp -Isrc tools/bench/attn_bench.c \
 *       build/libalignprop.a -lopenblas -lm -o build/attn_bench
 *   build/attn_bench [B L H D THREADS REPS [causal]]   (default 2 4096 8 40 2 3)
 *
 * Napkin math: forward = 2 GEMMs of L x L x D per head (4 B H L^2 D flops),
 * backward = 5 (recomputed S, dP, dV, dQ, dK); exps: B H L^2 each way.
 * Extra memory = the scratch the op takes (reported) + lse; no L x L buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/err.h"
#include "ops/attention.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a shared, loaded
 * machine this is steadier than wall time. */
static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *randn(size_t n, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX * 3.4f - 1.7f;
    return x;
}

int main(int argc, char **argv) {
    int a[7] = {2, 4096, 8, 40, 2, 3, 0};
    for (int i = 1; i < argc && i <= 7; i++) a[i - 1] = atoi(argv[i]);
    int B = a[0], L = a[1], H = a[2], D = a[3], T = a[4], R = a[5], causal = a[6];
    size_t n = (size_t)B * L * H * D;
    ap_ctx ctx;
    ap_ctx_init(&ctx, T);
    float *q = randn(n, 1), *k = randn(n, 2), *v = randn(n, 3), *g = randn(n, 4);
    float *o = malloc(n * 4), *lse = malloc((size_t)B * H * L * 4);
    float *dq = malloc(n * 4), *dk = malloc(n * 4), *dv = malloc(n * 4);
    ap_tensor tq = ap_t3(q, B, L, H * D), tk = ap_t3(k, B, L, H * D),
              tv = ap_t3(v, B, L, H * D), tg = ap_t3(g, B, L, H * D),
              to = ap_t3(o, B, L, H * D), tl = ap_t3(lse, B, H, L),
              tdq = ap_t3(dq, B, L, H * D), tdk = ap_t3(dk, B, L, H * D),
              tdv = ap_t3(dv, B, L, H * D);
    /* Touch outputs so the RSS baseline holds inputs and outputs; the growth
     * after the runs is the op's own memory (scratch, lse already counted). */
    memset(o, 0, n * 4), memset(lse, 0, (size_t)B * H * L * 4);
    memset(dq, 0, n * 4), memset(dk, 0, n * 4), memset(dv, 0, n * 4);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss0 = ru.ru_maxrss;
    float scale = 1.0f / __builtin_sqrtf((float)D);
    double bf = 1e30, bb = 1e30, cf = 1e30, cb = 1e30;
    for (int r = 0; r < R + 1; r++) { /* first round warms up */
        double c0 = cpu(), t0 = now();
        if (ap_attention_forward(&ctx, &to, &tl, &tq, &tk, &tv, H, scale, causal)) {
            fprintf(stderr, "%s\n", ap_errmsg());
            return 1;
        }
        double c1 = cpu(), t1 = now();
        if (ap_attention_backward(&ctx, &tdq, &tdk, &tdv, &tg, &tq, &tk, &tv, &to, &tl, H,
                                  scale, causal)) {
            fprintf(stderr, "%s\n", ap_errmsg());
            return 1;
        }
        double c2 = cpu(), t2 = now();
        if (r && t1 - t0 < bf) bf = t1 - t0;
        if (r && t2 - t1 < bb) bb = t2 - t1;
        if (r && c1 - c0 < cf) cf = c1 - c0;
        if (r && c2 - c1 < cb) cb = c2 - c1;
    }
    getrusage(RUSAGE_SELF, &ru);
    double flop = 4.0 * B * H * (double)L * L * D;
    printf("attention B=%d L=%d H=%d D=%d causal=%d threads=%d: forward %.0f ms "
           "(%.1f GFLOP/s), backward %.0f ms (%.1f GFLOP/s), forward+backward %.0f ms "
           "(best of %d); CPU s forward %.2f, backward %.2f; "
           "scratch %zu bytes + lse %zu bytes; peak RSS growth %.1f MiB\n",
           B, L, H, D, causal, T, bf * 1e3, flop / bf * 1e-9, bb * 1e3,
           2.5 * flop / bb * 1e-9, (bf + bb) * 1e3, R, cf, cb, ctx.scratch_peak,
           (size_t)B * H * L * 4, (ru.ru_maxrss - rss0) / 1024.0);
    return 0;
}
