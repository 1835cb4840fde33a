/* test_workspace.c: measured workspaces at the op level.
 *
 * 1. A dry-run context (ap_ctx_dry) records exactly the scratch a real run
 *    of the same op takes (conv2d on every path and geometry class,
 *    attention, the norms' backward, bilinear resize), and touches no
 *    tensor: outputs poisoned with NaN stay NaN.
 * 2. A measuring arena records the peak a real arena reaches for the same
 *    allocations, and hands out addresses that fault when touched.
 * 3. A real arena ends at a guard page: a write one float past its plan
 *    kills the writer with SIGSEGV.
 * Exact equality everywhere (sizes are integers).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/rows.h"
#include "ops/norm.h"
#include "ops/resize.h"
#include "testutil.h"

typedef struct {
    ap_tensor t;
    float *buf;
} owned;

static owned make(int ndim, const int64_t *shape, uint64_t seed) {
    owned o;
    o.t = ap_tn(NULL, ndim, shape);
    o.buf = tu_alloc(ap_numel(&o.t));
    tu_fill_uniform(o.buf, ap_numel(&o.t), seed, -1.0f, 1.0f);
    o.t.data = o.buf;
    return o;
}

static void poison(owned *o) {
    for (int64_t i = 0; i < ap_numel(&o->t); i++) o->buf[i] = NAN;
}

static int all_nan(const owned *o) {
    for (int64_t i = 0; i < ap_numel(&o->t); i++)
        if (!isnan(o->buf[i])) return 0;
    return 1;
}

/* Runs op on a dry-run copy of real and on a fresh real context; the two
 * scratch peaks must be equal and the dry run must leave out poisoned. */
typedef int (*op_fn)(ap_ctx *ctx, void *args);

static void same_scratch(const char *what, ap_ctx *real, op_fn fn, void *args, owned *out) {
    ap_ctx dry = ap_ctx_dry(real);
    if (out) poison(out);
    tu_check(fn(&dry, args) == 0, "%s: dry run succeeds (%s)", what, ap_errmsg());
    if (out) tu_check(all_nan(out), "%s: dry run leaves the output untouched", what);
    ap_ctx run;
    tu_check(ap_ctx_init(&run, real->n_threads) == 0, "context");
    run.isa = real->isa;
    run.conv_path = real->conv_path;
    tu_check(fn(&run, args) == 0, "%s: real run succeeds (%s)", what, ap_errmsg());
    tu_check(dry.scratch_peak == run.scratch_peak,
             "%s: measured scratch %zu bytes == used %zu bytes", what, dry.scratch_peak,
             run.scratch_peak);
    ap_ctx_free(&run);
    ap_ctx_free(&dry);
}

typedef struct {
    owned x, w, b, y, dx, dw, db;
    int stride, pad;
} conv_args;

static int conv_fwd(ap_ctx *ctx, void *p) {
    conv_args *a = p;
    return ap_conv2d_forward(ctx, &a->y.t, &a->x.t, &a->w.t, &a->b.t, a->stride, a->pad);
}
static int conv_bwd(ap_ctx *ctx, void *p) {
    conv_args *a = p;
    return ap_conv2d_backward(ctx, &a->dx.t, &a->dw.t, &a->db.t, &a->y.t, &a->x.t, &a->w.t,
                              a->stride, a->pad);
}
static int conv_bwd_dx(ap_ctx *ctx, void *p) {
    conv_args *a = p;
    return ap_conv2d_backward(ctx, &a->dx.t, NULL, NULL, &a->y.t, &a->x.t, &a->w.t, a->stride,
                              a->pad);
}

static void test_conv(ap_ctx *ctx, int B, int C, int H, int W, int O, int k, int s, int p,
                      ap_conv_path path) {
    conv_args a;
    const int Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    a.x = make(4, (int64_t[]){B, C, H, W}, 1);
    a.w = make(4, (int64_t[]){O, C, k, k}, 2);
    a.b = make(1, (int64_t[]){O}, 3);
    a.y = make(4, (int64_t[]){B, O, Ho, Wo}, 4);
    a.dx = make(4, (int64_t[]){B, C, H, W}, 5);
    a.dw = make(4, (int64_t[]){O, C, k, k}, 6);
    a.db = make(1, (int64_t[]){O}, 7);
    a.stride = s, a.pad = p;
    const ap_conv_path was = ctx->conv_path;
    ctx->conv_path = path;
    char what[160];
    snprintf(what, sizeof what, "conv2d B%d C%d %dx%d O%d k%d s%d p%d path %d", B, C, H, W, O,
             k, s, p, (int)path);
    char w2[200];
    snprintf(w2, sizeof w2, "%s forward", what);
    same_scratch(w2, ctx, conv_fwd, &a, &a.y);
    tu_fill_uniform(a.y.buf, ap_numel(&a.y.t), 4, -1.0f, 1.0f);
    snprintf(w2, sizeof w2, "%s backward", what);
    same_scratch(w2, ctx, conv_bwd, &a, &a.dx);
    snprintf(w2, sizeof w2, "%s backward din only", what);
    same_scratch(w2, ctx, conv_bwd_dx, &a, &a.dx);
    ctx->conv_path = was;
    owned *all[] = {&a.x, &a.w, &a.b, &a.y, &a.dx, &a.dw, &a.db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->buf);
}

typedef struct {
    owned q, k, v, o, lse, dq, dk, dv;
    int heads;
} attn_args;

static int attn_fwd(ap_ctx *ctx, void *p) {
    attn_args *a = p;
    return ap_attention_forward(ctx, &a->o.t, &a->lse.t, &a->q.t, &a->k.t, &a->v.t, a->heads,
                                0.125f, 0);
}
static int attn_bwd(ap_ctx *ctx, void *p) {
    attn_args *a = p;
    return ap_attention_backward(ctx, &a->dq.t, &a->dk.t, &a->dv.t, &a->o.t, &a->q.t, &a->k.t,
                                 &a->v.t, &a->o.t, &a->lse.t, a->heads, 0.125f, 0);
}

static void test_attention(ap_ctx *ctx, int B, int Lq, int Lk, int H, int D) {
    attn_args a;
    a.q = make(3, (int64_t[]){B, Lq, H * D}, 11);
    a.k = make(3, (int64_t[]){B, Lk, H * D}, 12);
    a.v = make(3, (int64_t[]){B, Lk, H * D}, 13);
    a.o = make(3, (int64_t[]){B, Lq, H * D}, 14);
    a.lse = make(3, (int64_t[]){B, H, Lq}, 15);
    a.dq = make(3, (int64_t[]){B, Lq, H * D}, 16);
    a.dk = make(3, (int64_t[]){B, Lk, H * D}, 17);
    a.dv = make(3, (int64_t[]){B, Lk, H * D}, 18);
    a.heads = H;
    char what[160];
    snprintf(what, sizeof what, "attention B%d Lq%d Lk%d H%d D%d forward", B, Lq, Lk, H, D);
    same_scratch(what, ctx, attn_fwd, &a, &a.o);
    snprintf(what, sizeof what, "attention B%d Lq%d Lk%d H%d D%d backward", B, Lq, Lk, H, D);
    same_scratch(what, ctx, attn_bwd, &a, &a.dq);
    owned *all[] = {&a.q, &a.k, &a.v, &a.o, &a.lse, &a.dq, &a.dk, &a.dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->buf);
}

typedef struct {
    owned x, g, b, mean, rstd, dx, dg, db, dy;
    int groups;
} norm_args;

static int gn_bwd(ap_ctx *ctx, void *p) {
    norm_args *a = p;
    return ap_group_norm_backward(ctx, &a->dx.t, &a->dg.t, &a->db.t, &a->dy.t, &a->x.t,
                                  &a->mean.t, &a->rstd.t, &a->g.t, a->groups);
}
static int ln_bwd(ap_ctx *ctx, void *p) {
    norm_args *a = p;
    return ap_layer_norm_backward(ctx, &a->dx.t, &a->dg.t, &a->db.t, &a->dy.t, &a->x.t,
                                  &a->mean.t, &a->rstd.t, &a->g.t);
}

static void test_norms(ap_ctx *ctx) {
    norm_args a;
    a.x = make(4, (int64_t[]){2, 64, 8, 8}, 21);
    a.dy = make(4, (int64_t[]){2, 64, 8, 8}, 22);
    a.dx = make(4, (int64_t[]){2, 64, 8, 8}, 23);
    a.g = make(1, (int64_t[]){64}, 24);
    a.b = make(1, (int64_t[]){64}, 25);
    a.dg = make(1, (int64_t[]){64}, 26);
    a.db = make(1, (int64_t[]){64}, 27);
    a.mean = make(2, (int64_t[]){2, 32}, 28);
    a.rstd = make(2, (int64_t[]){2, 32}, 29);
    a.groups = 32;
    same_scratch("group_norm backward", ctx, gn_bwd, &a, &a.dx);
    owned *all[] = {&a.x, &a.dy, &a.dx, &a.mean, &a.rstd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->buf);
    a.x = make(3, (int64_t[]){2, 77, 64}, 31);
    a.dy = make(3, (int64_t[]){2, 77, 64}, 32);
    a.dx = make(3, (int64_t[]){2, 77, 64}, 33);
    a.mean = make(1, (int64_t[]){154}, 34);
    a.rstd = make(1, (int64_t[]){154}, 35);
    same_scratch("layer_norm backward", ctx, ln_bwd, &a, &a.dx);
    owned *more[] = {&a.x, &a.dy, &a.dx, &a.mean, &a.rstd, &a.g, &a.b, &a.dg, &a.db};
    for (size_t i = 0; i < sizeof more / sizeof *more; i++) free(more[i]->buf);
}

typedef struct {
    owned x, y;
} resize_args;

static int rs_fwd(ap_ctx *ctx, void *p) {
    resize_args *a = p;
    return ap_resize_bilinear_forward(ctx, &a->y.t, &a->x.t);
}
static int rs_bwd(ap_ctx *ctx, void *p) {
    resize_args *a = p;
    return ap_resize_bilinear_backward(ctx, &a->x.t, &a->y.t);
}

static void test_resize(ap_ctx *ctx) {
    resize_args a;
    a.x = make(4, (int64_t[]){1, 3, 64, 48}, 41);
    a.y = make(4, (int64_t[]){1, 3, 224, 224}, 42);
    same_scratch("resize_bilinear forward", ctx, rs_fwd, &a, &a.y);
    same_scratch("resize_bilinear backward", ctx, rs_bwd, &a, &a.x);
    free(a.x.buf), free(a.y.buf);
}

/* A bf16 copy of an f32 weight (the scratch the BLAS paths add to widen it). */
static owned to_bf16(ap_ctx *ctx, const owned *w) {
    owned o = *w;
    o.buf = tu_alloc((ap_numel(&w->t) + 1) / 2);
    o.t.data = o.buf;
    o.t.dtype = AP_BF16;
    tu_check(ap_copy(ctx, &o.t, &w->t) == 0, "bf16 weight (%s)", ap_errmsg());
    return o;
}

typedef struct {
    owned x, w, b, y, dx;
} lin_args;

static int lin_fwd(ap_ctx *ctx, void *p) {
    lin_args *a = p;
    return ap_linear_forward(ctx, &a->y.t, &a->x.t, &a->w.t, &a->b.t);
}
static int lin_bwd(ap_ctx *ctx, void *p) {
    lin_args *a = p;
    return ap_linear_backward(ctx, &a->dx.t, NULL, NULL, &a->y.t, &a->x.t, &a->w.t);
}

/* Frozen 2-byte weights: conv2d on every path and linear, forward and din. */
static void test_bf16_weights(ap_ctx *ctx) {
    lin_args l;
    l.x = make(3, (int64_t[]){2, 77, 320}, 51);
    owned w32 = make(2, (int64_t[]){640, 320}, 52);
    l.w = to_bf16(ctx, &w32);
    l.b = make(1, (int64_t[]){640}, 53);
    l.y = make(3, (int64_t[]){2, 77, 640}, 54);
    l.dx = make(3, (int64_t[]){2, 77, 320}, 55);
    same_scratch("linear bf16 weight forward", ctx, lin_fwd, &l, &l.y);
    same_scratch("linear bf16 weight backward din", ctx, lin_bwd, &l, &l.dx);
    owned *all[] = {&l.x, &w32, &l.w, &l.b, &l.y, &l.dx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->buf);

    const ap_conv_path paths[] = {AP_CONV_AUTO, AP_CONV_DIRECT, AP_CONV_BLAS};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        conv_args a;
        a.x = make(4, (int64_t[]){1, 64, 16, 16}, 61);
        owned cw = make(4, (int64_t[]){64, 64, 3, 3}, 62);
        a.w = to_bf16(ctx, &cw);
        a.b = make(1, (int64_t[]){64}, 63);
        a.y = make(4, (int64_t[]){1, 64, 16, 16}, 64);
        a.dx = make(4, (int64_t[]){1, 64, 16, 16}, 65);
        a.stride = 1, a.pad = 1;
        const ap_conv_path was = ctx->conv_path;
        ctx->conv_path = paths[p];
        char what[96];
        snprintf(what, sizeof what, "conv2d bf16 weight path %d forward", (int)paths[p]);
        same_scratch(what, ctx, conv_fwd, &a, &a.y);
        snprintf(what, sizeof what, "conv2d bf16 weight path %d backward din", (int)paths[p]);
        same_scratch(what, ctx, conv_bwd_dx, &a, &a.dx);
        ctx->conv_path = was;
        owned *c[] = {&a.x, &cw, &a.w, &a.b, &a.y, &a.dx};
        for (size_t i = 0; i < sizeof c / sizeof *c; i++) free(c[i]->buf);
    }
}

static void test_arenas(void) {
    const size_t sizes[] = {100, 4096, 3, 70000, 64};
    ap_arena m, r;
    tu_check(ap_arena_init_measure(&m, "measure") == 0, "measuring arena (%s)", ap_errmsg());
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        tu_check(ap_arena_alloc(&m, sizes[i], "block") != NULL, "measured block %zu", i);
    ap_arena_reset(&m);
    tu_check(ap_arena_alloc(&m, 10, "after reset") != NULL, "measured block after reset");
    tu_check(ap_arena_init(&r, m.peak, "real") == 0, "real arena of the measured peak");
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *p = ap_arena_alloc(&r, sizes[i], "block");
        tu_check(p != NULL, "real block %zu fits the measured plan", i);
        if (p) memset(p, 1, sizes[i]);
    }
    tu_check(r.peak == m.peak && r.used == r.cap,
             "real arena peak %zu == measured %zu, and fills its plan exactly", r.peak, m.peak);
    tu_check(ap_arena_alloc(&r, 1, "one too many") == NULL, "a block beyond the plan is refused");

    /* a measuring arena's addresses are never backed: touching one faults */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* not a sanitizer's handler: the plain fault */
        volatile char *p = ap_arena_alloc(&m, 64, "touched");
        p[0] = 1;
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    tu_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
             "touching a measured (unbacked) block faults with SIGSEGV");
    /* a write one float past a real arena's plan hits the guard page */
    pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        volatile float *end = (float *)(r.base + r.cap);
        end[0] = 1.0f;
        _exit(0);
    }
    waitpid(pid, &st, 0);
    tu_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
             "a write one float past the arena's plan faults with SIGSEGV (guard page)");
    ap_arena_free(&m);
    ap_arena_free(&r);
}

int main(void) {
    ap_ctx ctx;
    if (ap_ctx_init(&ctx, 2)) return fprintf(stderr, "%s\n", ap_errmsg()), 1;
    printf("test_workspace: dry-run scratch == real scratch, kernel variant %s\n",
           ap_isa_name(ctx.isa));
    const ap_conv_path paths[] = {AP_CONV_AUTO, AP_CONV_DIRECT, AP_CONV_WINOGRAD, AP_CONV_BLAS};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        test_conv(&ctx, 2, 64, 16, 16, 64, 3, 1, 1, paths[p]); /* Winograd-eligible */
        test_conv(&ctx, 1, 5, 9, 7, 6, 3, 2, 1, paths[p]);     /* strided */
        test_conv(&ctx, 2, 8, 6, 5, 12, 1, 1, 0, paths[p]);    /* 1x1 direct */
    }
    test_attention(&ctx, 2, 64, 77, 5, 8);
    test_attention(&ctx, 1, 33, 33, 2, 40);
    test_norms(&ctx);
    test_resize(&ctx);
    test_bf16_weights(&ctx);
    printf("test_workspace: measuring and guarded arenas\n");
    test_arenas();
    ap_ctx_free(&ctx);
    return tu_exit();
}
