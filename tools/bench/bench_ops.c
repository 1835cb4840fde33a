/* bench_ops.c: times the CPU ops at Stable Diffusion sizes (not a test).
 *
 * usage: bench_ops [--threads N] [--reps N] [CASE ...]
 * Cases: conv, conv_din, linear, attention, group_norm (default: all).
 * conv_din is conv with frozen weight and bias (backward computes din only,
 * as for AlignProp's frozen UNet convs; its fb GFLOP/s count 2x the forward).
 * For each case it
 * (fb = one forward plus one backward; GFLOP/s count the textbook FLOPs, 3x the
 * forward for fb, not the extra recomputation a fused backward does)
 * prints one line "BENCH case=... fwd_ms=... fb_ms=... fwd_gflop=... fb_gflop=...
 * peak_extra_mb=..." that tools/bench-ops puts beside PyTorch's numbers.
 * Times are the median of --reps runs after one warm-up; peak_extra_mb is the
 * growth of the process's peak RSS over the inputs, outputs and gradients.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/ctx.h"
#include "core/err.h"
#include "core/isa.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/norm.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static float *buf(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) { fprintf(stderr, "bench_ops: out of memory (%lld floats)\n", (long long)n); exit(1); }
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define CHECK(x) do { if ((x) != 0) { fprintf(stderr, "bench_ops: %s\n", ap_errmsg()); exit(1); } } while (0)

typedef void (*step_fn)(ap_ctx *ctx, void *st, int backward);

static void run(const char *name, ap_ctx *ctx, void *st, step_fn fn, int reps,
                double fwd_flop, double fb_flop, double base_rss) {
    double tf[64], tb[64];
    if (reps > 64) reps = 64;
    fn(ctx, st, 1); /* warm-up (sizes scratch) */
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        fn(ctx, st, 0);
        double t1 = now_ms();
        fn(ctx, st, 1);
        double t2 = now_ms();
        tf[r] = t1 - t0;
        tb[r] = t2 - t1; /* fn(.., 1) runs forward + backward */
    }
    qsort(tf, (size_t)reps, sizeof(double), cmp_d);
    qsort(tb, (size_t)reps, sizeof(double), cmp_d);
    double f = tf[reps / 2], fb = tb[reps / 2];
    printf("BENCH case=%s threads=%d fwd_ms=%.2f fb_ms=%.2f fwd_gflops=%.1f fb_gflops=%.1f "
           "peak_extra_mb=%.1f\n",
           name, ctx->n_threads, f, fb, fwd_flop / f * 1e-6, fb_flop / fb * 1e-6,
           peak_rss_mb() - base_rss);
    fflush(stdout);
}

/* conv 2x320x64x64, 3x3 s1 p1, 320 -> 320 */
typedef struct { ap_tensor x, w, b, y, dx, dw, db, dy; } conv_st;
static void conv_step(ap_ctx *ctx, void *p, int bwd) {
    conv_st *s = p;
    CHECK(ap_conv2d_forward(ctx, &s->y, &s->x, &s->w, &s->b, 1, 1));
    if (bwd) CHECK(ap_conv2d_backward(ctx, &s->dx, &s->dw, &s->db, &s->dy, &s->x, &s->w, 1, 1));
}

/* conv_din: the same conv with weight and bias frozen (dw, db not wanted). */
static void conv_din_step(ap_ctx *ctx, void *p, int bwd) {
    conv_st *s = p;
    CHECK(ap_conv2d_forward(ctx, &s->y, &s->x, &s->w, &s->b, 1, 1));
    if (bwd) CHECK(ap_conv2d_backward(ctx, &s->dx, NULL, NULL, &s->dy, &s->x, &s->w, 1, 1));
}

/* linear 4096x320 -> 1280 (rows = B*L = 2*4096? the 4096 tokens) */
typedef struct { ap_tensor x, w, b, y, dx, dw, db, dy; } lin_st;
static void lin_step(ap_ctx *ctx, void *p, int bwd) {
    lin_st *s = p;
    CHECK(ap_linear_forward(ctx, &s->y, &s->x, &s->w, &s->b));
    if (bwd) CHECK(ap_linear_backward(ctx, &s->dx, &s->dw, &s->db, &s->dy, &s->x, &s->w));
}

/* attention B=2, L=4096, 8 heads x 40 */
typedef struct { ap_tensor q, k, v, o, lse, dq, dk, dv, dout; int H; float scale; } attn_st;
static void attn_step(ap_ctx *ctx, void *p, int bwd) {
    attn_st *s = p;
    CHECK(ap_attention_forward(ctx, &s->o, &s->lse, &s->q, &s->k, &s->v, s->H, s->scale, 0));
    if (bwd)
        CHECK(ap_attention_backward(ctx, &s->dq, &s->dk, &s->dv, &s->dout, &s->q, &s->k,
                                    &s->v, &s->o, &s->lse, s->H, s->scale, 0));
}

/* group_norm 2x320x64x64, 32 groups */
typedef struct { ap_tensor x, g, b, y, mean, rstd, dx, dg, db, dy; } gn_st;
static void gn_step(ap_ctx *ctx, void *p, int bwd) {
    gn_st *s = p;
    CHECK(ap_group_norm_forward(ctx, &s->y, &s->mean, &s->rstd, &s->x, &s->g, &s->b, 32, 1e-5f));
    if (bwd)
        CHECK(ap_group_norm_backward(ctx, &s->dx, &s->dg, &s->db, &s->dy, &s->x, &s->mean,
                                     &s->rstd, &s->g, 32));
}

static int wanted(int argc, char **argv, int first, const char *name) {
    if (first >= argc) return 1;
    for (int i = first; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int threads = 0, reps = 5, first = 1;
    while (first < argc && !strncmp(argv[first], "--", 2)) {
        if (!strcmp(argv[first], "--help")) {
            printf("usage: bench_ops [--info] [--threads N] [--reps N] [conv|conv_din|linear|attention|group_norm ...]\n");
            return 0;
        }
        if (!strcmp(argv[first], "--info")) { /* the CPU and the kernels that run */
            char cpu[512];
            ap_ctx vc;
            if (ap_ctx_init(&vc, 1)) { fprintf(stderr, "bench_ops: %s\n", ap_errmsg()); return 2; }
            printf("ours: %s; conv2d: %s; linear: %s (OPENBLAS_CORETYPE %s)\n",
                   ap_cpu_describe(cpu, sizeof cpu), ap_conv2d_variant(&vc),
                   ap_cpu_isa() == AP_ISA_AVX512 ? "packed AVX-512 GEMM" : "OpenBLAS",
                   getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "auto");
            return 0;
        }
        if (first + 1 >= argc) { fprintf(stderr, "bench_ops: %s needs a value\n", argv[first]); return 2; }
        if (!strcmp(argv[first], "--threads")) threads = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--reps")) reps = atoi(argv[first + 1]);
        else { fprintf(stderr, "bench_ops: unknown option %s (try --help)\n", argv[first]); return 2; }
        first += 2;
    }
    if (reps < 1) reps = 1;
    ap_ctx ctx;
    CHECK(ap_ctx_init(&ctx, threads));
    ap_ctx_pin_threads(&ctx);
    if (wanted(argc, argv, first, "conv")) {
        int64_t B = 2, C = 320, H = 64, W = 64;
        conv_st s = {ap_t4(buf(B * C * H * W), B, C, H, W), ap_t4(buf(C * C * 9), C, C, 3, 3),
                     ap_t1(buf(C), C), ap_t4(buf(B * C * H * W), B, C, H, W),
                     ap_t4(buf(B * C * H * W), B, C, H, W), ap_t4(buf(C * C * 9), C, C, 3, 3),
                     ap_t1(buf(C), C), ap_t4(buf(B * C * H * W), B, C, H, W)};
        double fl = 2.0 * B * C * H * W * C * 9;
        run("conv", &ctx, &s, conv_step, reps, fl, 3 * fl, peak_rss_mb());
    }
    if (wanted(argc, argv, first, "conv_din")) {
        int64_t B = 2, C = 320, H = 64, W = 64;
        conv_st s = {ap_t4(buf(B * C * H * W), B, C, H, W), ap_t4(buf(C * C * 9), C, C, 3, 3),
                     ap_t1(buf(C), C), ap_t4(buf(B * C * H * W), B, C, H, W),
                     ap_t4(buf(B * C * H * W), B, C, H, W), {0}, {0},
                     ap_t4(buf(B * C * H * W), B, C, H, W)};
        double fl = 2.0 * B * C * H * W * C * 9;
        run("conv_din", &ctx, &s, conv_din_step, reps, fl, 2 * fl, peak_rss_mb());
    }
    if (wanted(argc, argv, first, "linear")) {
        int64_t R = 4096, I = 320, O = 1280;
        lin_st s = {ap_t2(buf(R * I), R, I), ap_t2(buf(O * I), O, I), ap_t1(buf(O), O),
                    ap_t2(buf(R * O), R, O), ap_t2(buf(R * I), R, I), ap_t2(buf(O * I), O, I),
                    ap_t1(buf(O), O), ap_t2(buf(R * O), R, O)};
        double fl = 2.0 * R * I * O;
        run("linear", &ctx, &s, lin_step, reps, fl, 3 * fl, peak_rss_mb());
    }
    if (wanted(argc, argv, first, "attention")) {
        int64_t B = 2, L = 4096, H = 8, D = 40, C = H * D;
        attn_st s = {ap_t3(buf(B * L * C), B, L, C), ap_t3(buf(B * L * C), B, L, C),
                     ap_t3(buf(B * L * C), B, L, C), ap_t3(buf(B * L * C), B, L, C),
                     ap_t3(buf(B * H * L), B, H, L), ap_t3(buf(B * L * C), B, L, C),
                     ap_t3(buf(B * L * C), B, L, C), ap_t3(buf(B * L * C), B, L, C),
                     ap_t3(buf(B * L * C), B, L, C), (int)H, 0.15811388f};
        double base = peak_rss_mb();
        double fl = 4.0 * B * H * L * L * D; /* QK^T and PV */
        run("attention", &ctx, &s, attn_step, reps, fl, 3 * fl, base);
    }
    if (wanted(argc, argv, first, "group_norm")) {
        int64_t B = 2, C = 320, H = 64, W = 64, n = B * C * H * W;
        gn_st s = {ap_t4(buf(n), B, C, H, W), ap_t1(buf(C), C), ap_t1(buf(C), C),
                   ap_t4(buf(n), B, C, H, W), ap_t2(buf(B * 32), B, 32), ap_t2(buf(B * 32), B, 32),
                   ap_t4(buf(n), B, C, H, W), ap_t1(buf(C), C), ap_t1(buf(C), C),
                   ap_t4(buf(n), B, C, H, W)};
        run("group_norm", &ctx, &s, gn_step, reps, 8.0 * n, 20.0 * n, peak_rss_mb());
    }
    ap_ctx_free(&ctx);
    return 0;
}
