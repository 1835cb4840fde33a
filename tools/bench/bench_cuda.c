/* bench_cuda.c: times the CUDA backend's heavy ops at SD v1.5 sizes (one
 * GPU), each as the mean of --reps runs after one warm-up, synchronised:
 * conv2d 3x3 (2, 320, 64, 64) forward and backward, linear (8192, 320) x
 * (320, 320)^T and with a bf16 weight, self-attention B 2, L 4096, 8 heads of
 * 40 forward and backward, cross-attention L 4096 x 77, GroupNorm forward.
 * Prints one line per op with ms and the achieved TFLOP/s (napkin FLOPs in
 * the line). Exits 77 without a CUDA device. Part of tools/gpu-check.
 *   bench_cuda [--reps N] [--tf32]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "cuda_backend.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/memory.h"
#include "ops/norm.h"
#include "ops/rows.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static ap_ctx g;
static int reps = 10;

/* A device tensor of that shape and dtype filled with v (never freed: a
 * benchmark process). */
static ap_tensor dev(ap_dtype dt, int ndim, const int64_t *shape, float v) {
    ap_tensor t = ap_tensor_of(NULL, dt, AP_CUDA, ndim, shape);
    t.data = ap_dev_alloc(&g, ap_nbytes(&t), "bench tensor");
    if (!t.data || ap_fill(&g, &t, v) != AP_OK) {
        fprintf(stderr, "bench_cuda: %s\n", ap_errmsg());
        exit(1);
    }
    return t;
}
#define DEV(dt, v, ...) dev(dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__}, v)

typedef int (*bench_fn)(void *);

static void run(const char *name, double flops, bench_fn fn, void *arg) {
    if (fn(arg) != AP_OK || ap_ctx_sync(&g) != AP_OK) {
        printf("%-44s FAILED: %s\n", name, ap_errmsg());
        return;
    }
    double t0 = now();
    int rc = AP_OK;
    for (int i = 0; i < reps && rc == AP_OK; i++) rc = fn(arg);
    if (rc == AP_OK) rc = ap_ctx_sync(&g);
    double ms = (now() - t0) * 1e3 / reps;
    if (rc != AP_OK) printf("%-44s FAILED: %s\n", name, ap_errmsg());
    else printf("%-44s %9.3f ms  %7.2f TFLOP/s  (%.2f GFLOP)\n", name, ms, flops / ms * 1e-9, flops * 1e-9);
    fflush(stdout);
}

typedef struct {
    ap_tensor out, in, w, b, din, dw, db, q, k, v, lse, mean, rstd, dq, dk, dv;
    int heads;
} args;

static int conv_f(void *p) {
    args *a = p;
    return ap_conv2d_forward(&g, &a->out, &a->in, &a->w, &a->b, 1, 1);
}
static int conv_b(void *p) {
    args *a = p;
    return ap_conv2d_backward(&g, &a->din, &a->dw, &a->db, &a->out, &a->in, &a->w, 1, 1);
}
static int lin_f(void *p) {
    args *a = p;
    return ap_linear_forward(&g, &a->out, &a->in, &a->w, &a->b);
}
static int attn_f(void *p) {
    args *a = p;
    return ap_attention_forward(&g, &a->out, &a->lse, &a->q, &a->k, &a->v, a->heads, 0.158f, 0);
}
static int attn_b(void *p) {
    args *a = p;
    return ap_attention_backward(&g, &a->dq, &a->dk, &a->dv, &a->out, &a->q, &a->k, &a->v,
                                 &a->out, &a->lse, a->heads, 0.158f, 0);
}
static int gn_f(void *p) {
    args *a = p;
    return ap_group_norm_forward(&g, &a->out, &a->mean, &a->rstd, &a->in, &a->w, &a->b, 32, 1e-5f);
}

int main(int argc, char **argv) {
    int tf32 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
        else {
            printf("usage: bench_cuda [--reps N] [--tf32]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    char why[256];
    if (ap_cuda_device_count(why, sizeof why) == 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    if (ap_cuda_ctx_init(&g, -1, tf32) != AP_OK) {
        fprintf(stderr, "bench_cuda: %s\n", ap_errmsg());
        return 1;
    }
    printf("bench_cuda: %d reps, TF32 %s\n", reps, tf32 ? "on" : "off");
    args a;
    memset(&a, 0, sizeof a);
    /* conv2d 3x3, (2, 320, 64, 64) -> 320: 2 * B*O*Ho*Wo * C*9 FLOPs */
    a.in = DEV(AP_F32, 0.01f, 2, 320, 64, 64);
    a.out = DEV(AP_F32, 0.01f, 2, 320, 64, 64);
    a.din = DEV(AP_F32, 0, 2, 320, 64, 64);
    a.w = DEV(AP_F32, 0.01f, 320, 320, 3, 3);
    a.dw = DEV(AP_F32, 0, 320, 320, 3, 3);
    a.b = DEV(AP_F32, 0, 320);
    a.db = DEV(AP_F32, 0, 320);
    double cf = 2.0 * 2 * 320 * 64 * 64 * 320 * 9;
    run("conv2d 3x3 (2,320,64,64) fwd", cf, conv_f, &a);
    run("conv2d 3x3 (2,320,64,64) bwd (din, dw, db)", 2 * cf, conv_b, &a);
    /* linear (8192, 320) . (320, 320)^T */
    args l;
    memset(&l, 0, sizeof l);
    l.in = DEV(AP_F32, 0.01f, 2, 4096, 320);
    l.out = DEV(AP_F32, 0, 2, 4096, 320);
    l.w = DEV(AP_F32, 0.01f, 320, 320);
    l.b = DEV(AP_F32, 0, 320);
    double lf = 2.0 * 8192 * 320 * 320;
    run("linear (2,4096,320) x (320,320)^T f32", lf, lin_f, &l);
    l.w = DEV(AP_BF16, 0.01f, 320, 320);
    run("linear (2,4096,320) x (320,320)^T bf16 w", lf, lin_f, &l);
    /* attention B 2, L 4096, 8 heads of 40: 4 * B*H*Lq*Lk*D FLOPs forward */
    args t;
    memset(&t, 0, sizeof t);
    t.heads = 8;
    t.q = DEV(AP_F32, 0.01f, 2, 4096, 320);
    t.k = DEV(AP_F32, 0.01f, 2, 4096, 320);
    t.v = DEV(AP_F32, 0.01f, 2, 4096, 320);
    t.out = DEV(AP_F32, 0, 2, 4096, 320);
    t.lse = DEV(AP_F32, 0, 2, 8, 4096);
    t.dq = DEV(AP_F32, 0, 2, 4096, 320);
    t.dk = DEV(AP_F32, 0, 2, 4096, 320);
    t.dv = DEV(AP_F32, 0, 2, 4096, 320);
    double af = 4.0 * 2 * 8 * 4096.0 * 4096 * 40;
    run("attention self B2 L4096 H8 D40 fwd", af, attn_f, &t);
    run("attention self B2 L4096 H8 D40 bwd", 2.5 * af, attn_b, &t);
    args x = t;
    x.k = DEV(AP_F32, 0.01f, 2, 77, 320);
    x.v = DEV(AP_F32, 0.01f, 2, 77, 320);
    x.dk = DEV(AP_F32, 0, 2, 77, 320);
    x.dv = DEV(AP_F32, 0, 2, 77, 320);
    run("attention cross B2 L4096x77 H8 D40 fwd", 4.0 * 2 * 8 * 4096.0 * 77 * 40, attn_f, &x);
    /* GroupNorm (2, 320, 64, 64), 32 groups: memory bound, ~3 passes */
    a.mean = DEV(AP_F32, 0, 2, 32);
    a.rstd = DEV(AP_F32, 0, 2, 32);
    run("group_norm (2,320,64,64) 32 groups fwd", 8.0 * 2 * 320 * 64 * 64, gn_f, &a);
    ap_cuda_ctx_free(&g);
    return 0;
}
