/* test_weight_dtype.c: linear and conv2d with a frozen weight kept in bf16 or
 * f16 (mixed_precision: bf16 / fp16). Widening a 2-byte weight to float32 is
 * exact, so every path (packed GEMM widening while packing, Winograd
 * widening while transforming, BLAS paths widening into scratch) must give
 * bit for bit what the float32 op gives on the widened weight: forward out,
 * backward din and db. A gradient for such a weight is refused. Run once per
 * kernel variant (tests/ops/meson.build), on the conv paths the variant has. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/rows.h"
#include "testutil.h"

/* wq (dt) = w rounded; w32 = wq widened back (what the f32 op must see). */
static void make_weight(ap_ctx *ctx, const ap_tensor *w, ap_dtype dt, ap_tensor *wq,
                        ap_tensor *w32) {
    int64_t n = ap_numel(w);
    *wq = ap_tensor_of(malloc((size_t)n * 2), dt, AP_CPU, w->ndim, w->shape);
    *w32 = *w;
    w32->data = tu_alloc(n);
    tu_check(ap_copy(ctx, wq, w) == 0 && ap_copy(ctx, w32, wq) == 0,
             "weight converts to %s and back: %s", ap_dtype_name(dt), ap_errmsg());
}

static void test_linear(ap_ctx *ctx, int ndim, const int64_t *xshape, int O, ap_dtype dt,
                        uint64_t seed) {
    const int I = (int)xshape[ndim - 1];
    ap_tensor x = ap_tn(tu_alloc(1), ndim, xshape);
    int64_t nx = ap_numel(&x);
    free(x.data), x.data = tu_alloc(nx);
    ap_tensor y[2], dx[2], g = x, w = ap_t2(tu_alloc((int64_t)O * I), O, I), wq, w32;
    ap_tensor b = ap_t1(tu_alloc(O), O), db[2];
    g.shape[ndim - 1] = O;
    int64_t ny = ap_numel(&g);
    g.data = tu_alloc(ny);
    tu_fill_normal(x.data, nx, seed, 1.0f);
    tu_fill_normal(w.data, (int64_t)O * I, seed + 1, 0.2f);
    tu_fill_normal(b.data, O, seed + 2, 1.0f);
    tu_fill_normal(g.data, ny, seed + 3, 1.0f);
    make_weight(ctx, &w, dt, &wq, &w32);
    for (int v = 0; v < 2; v++) {
        const ap_tensor *wv = v ? &w32 : &wq;
        y[v] = g, y[v].data = tu_alloc(ny);
        dx[v] = x, dx[v].data = tu_alloc(nx);
        db[v] = b, db[v].data = tu_alloc(O);
        tu_check(ap_linear_forward(ctx, &y[v], &x, wv, &b) == 0, "linear_forward (%s) runs: %s",
                 ap_dtype_name(wv->dtype), ap_errmsg());
        tu_check(ap_linear_backward(ctx, &dx[v], NULL, &db[v], &g, &x, wv) == 0,
                 "linear_backward (%s) runs: %s", ap_dtype_name(wv->dtype), ap_errmsg());
    }
    char xs[96], what[200];
    ap_shape_str(&x, xs, sizeof xs);
    snprintf(what, sizeof what, "linear out, %s weight == f32 widened (in %s, O %d, %d thr)",
             ap_dtype_name(dt), xs, O, ctx->n_threads);
    tu_compare(what, y[0].data, y[1].data, ny, 0, 0);
    snprintf(what, sizeof what, "linear din, %s weight == f32 widened (in %s, O %d, %d thr)",
             ap_dtype_name(dt), xs, O, ctx->n_threads);
    tu_compare(what, dx[0].data, dx[1].data, nx, 0, 0);
    snprintf(what, sizeof what, "linear db, %s weight == f32 widened (in %s, O %d)",
             ap_dtype_name(dt), xs, O);
    tu_compare(what, db[0].data, db[1].data, O, 0, 0);
    tu_expect_error("linear_backward with dweight for a 2-byte weight",
                    ap_linear_backward(ctx, NULL, &w, NULL, &g, &x, &wq), "linear_backward",
                    "dweight", ap_dtype_name(dt), "frozen", NULL);
    for (int v = 0; v < 2; v++) free(y[v].data), free(dx[v].data), free(db[v].data);
    free(x.data), free(g.data), free(w.data), free(wq.data), free(w32.data), free(b.data);
}

typedef struct {
    int B, C, H, W, O, kh, kw, s, p;
} geom;

static void test_conv(ap_ctx *ctx, geom q, ap_dtype dt, uint64_t seed, const char *path) {
    const int Ho = (q.H + 2 * q.p - q.kh) / q.s + 1, Wo = (q.W + 2 * q.p - q.kw) / q.s + 1;
    ap_tensor x = ap_t4(NULL, q.B, q.C, q.H, q.W), g = ap_t4(NULL, q.B, q.O, Ho, Wo);
    ap_tensor w = ap_t4(NULL, q.O, q.C, q.kh, q.kw), b = ap_t1(tu_alloc(q.O), q.O), wq, w32;
    int64_t nx = ap_numel(&x), ny = ap_numel(&g), nw = ap_numel(&w);
    x.data = tu_alloc(nx), g.data = tu_alloc(ny), w.data = tu_alloc(nw);
    tu_fill_normal(x.data, nx, seed, 1.0f);
    tu_fill_normal(w.data, nw, seed + 1, 0.2f);
    tu_fill_normal(b.data, q.O, seed + 2, 1.0f);
    tu_fill_normal(g.data, ny, seed + 3, 1.0f);
    make_weight(ctx, &w, dt, &wq, &w32);
    ap_tensor y[2], dx[2], db[2];
    for (int v = 0; v < 2; v++) {
        const ap_tensor *wv = v ? &w32 : &wq;
        y[v] = g, y[v].data = tu_alloc(ny);
        dx[v] = x, dx[v].data = tu_alloc(nx);
        db[v] = b, db[v].data = tu_alloc(q.O);
        tu_check(ap_conv2d_forward(ctx, &y[v], &x, wv, &b, q.s, q.p) == 0,
                 "conv2d_forward (%s) runs: %s", ap_dtype_name(wv->dtype), ap_errmsg());
        tu_check(ap_conv2d_backward(ctx, &dx[v], NULL, &db[v], &g, &x, wv, q.s, q.p) == 0,
                 "conv2d_backward (%s) runs: %s", ap_dtype_name(wv->dtype), ap_errmsg());
    }
    char what[240];
    snprintf(what, sizeof what,
             "conv2d out, %s weight == f32 widened (B%d C%d %dx%d O%d k%dx%d s%d p%d, %s)",
             ap_dtype_name(dt), q.B, q.C, q.H, q.W, q.O, q.kh, q.kw, q.s, q.p, path);
    tu_compare(what, y[0].data, y[1].data, ny, 0, 0);
    memcpy(what, "conv2d din", 10);
    tu_compare(what, dx[0].data, dx[1].data, nx, 0, 0);
    memcpy(what, "conv2d  db", 10);
    tu_compare(what, db[0].data, db[1].data, q.O, 0, 0);
    tu_expect_error("conv2d_backward with dweight for a 2-byte weight",
                    ap_conv2d_backward(ctx, NULL, &w, NULL, &g, &x, &wq, q.s, q.p),
                    "conv2d_backward", "dweight", ap_dtype_name(dt), "frozen", NULL);
    for (int v = 0; v < 2; v++) free(y[v].data), free(dx[v].data), free(db[v].data);
    free(x.data), free(g.data), free(w.data), free(wq.data), free(w32.data), free(b.data);
}

/* Only the weight may be 2-byte; a bf16 activation or bias is refused. */
static void test_refused(ap_ctx *ctx) {
    static float buf[4096];
    static uint16_t hbuf[4096];
    ap_tensor x = ap_t3(buf, 2, 3, 5), w = ap_t2(buf, 4, 5), y = ap_t3(buf, 2, 3, 4);
    ap_tensor xb = ap_tensor_of(hbuf, AP_BF16, AP_CPU, 3, x.shape);
    ap_tensor bb = ap_tensor_of(hbuf, AP_BF16, AP_CPU, 1, (int64_t[]){4});
    tu_expect_error("linear_forward with a bf16 input", ap_linear_forward(ctx, &y, &xb, &w, NULL),
                    "linear_forward", "in", "bf16", NULL);
    tu_expect_error("linear_forward with a bf16 bias", ap_linear_forward(ctx, &y, &x, &w, &bb),
                    "linear_forward", "bias", "bf16", NULL);
    ap_tensor cx = ap_t4(buf, 1, 2, 4, 4), cy = ap_t4(buf, 1, 4, 4, 4);
    ap_tensor cw = ap_tensor_of(hbuf, AP_BF16, AP_CPU, 4, (int64_t[]){4, 2, 3, 3});
    ap_tensor cwd = ap_tensor_of(hbuf, AP_BF16, AP_CUDA, 4, (int64_t[]){4, 2, 3, 3});
    tu_expect_error("conv2d_forward with a bf16 bias",
                    ap_conv2d_forward(ctx, &cy, &cx, &cw, &bb, 1, 1), "conv2d_forward", "bias",
                    "bf16", NULL);
    tu_expect_error("conv2d_forward with a weight on cuda",
                    ap_conv2d_forward(ctx, &cy, &cx, &cwd, NULL, 1, 1), "conv2d_forward",
                    "weight", "cuda", NULL);
}

int main(void) {
    ap_ctx ctx1, ctx2;
    ap_ctx_init(&ctx1, 1);
    ap_ctx_init(&ctx2, 2);
    printf("test_weight_dtype: kernel variant %s\n", ap_isa_name(ctx2.isa));
    const ap_dtype dts[] = {AP_BF16, AP_F16};
    for (int t = 0; t < 2; t++) {
        const ap_dtype dt = dts[t];
        printf("test_weight_dtype: linear, %s weight\n", ap_dtype_name(dt));
        test_linear(&ctx2, 3, (int64_t[]){2, 3, 5}, 4, dt, 1);             /* tiny: BLAS */
        test_linear(&ctx2, 3, (int64_t[]){2, 77, 96}, 130, dt, 2);         /* packed on AVX-512 */
        test_linear(&ctx1, 2, (int64_t[]){37, 320}, 64, dt, 3);            /* 2-D, one thread */
        test_linear(&ctx2, 3, (int64_t[]){1, 300, 64}, 160, dt, 4);        /* split GEMM */
        printf("test_weight_dtype: conv2d, %s weight\n", ap_dtype_name(dt));
        const geom gs[] = {{2, 64, 16, 17, 64, 3, 3, 1, 1}, /* Winograd where forced */
                           {1, 13, 9, 40, 29, 3, 3, 1, 1},  /* packed, din as a conv */
                           {2, 7, 11, 9, 5, 3, 3, 2, 1},    /* strided: din by GEMM + col2im */
                           {1, 33, 8, 8, 70, 1, 1, 1, 0},   /* 1x1 direct */
                           {1, 2, 4, 5, 3, 3, 3, 1, 3}};    /* pad > k - 1 */
        const ap_conv_path paths[] = {AP_CONV_AUTO, AP_CONV_WINOGRAD, AP_CONV_DIRECT,
                                      AP_CONV_BLAS};
        const char *pnames[] = {"auto", "winograd", "direct", "blas"};
        for (size_t p = 0; p < 4; p++) {
            ctx1.conv_path = ctx2.conv_path = paths[p];
            for (size_t k = 0; k < sizeof gs / sizeof *gs; k++)
                test_conv(k % 2 ? &ctx1 : &ctx2, gs[k], dt, 10 + k, pnames[p]);
        }
        ctx1.conv_path = ctx2.conv_path = AP_CONV_AUTO;
    }
    printf("test_weight_dtype: refused combinations\n");
    test_refused(&ctx2);
    ap_ctx_free(&ctx1);
    ap_ctx_free(&ctx2);
    return tu_exit();
}
