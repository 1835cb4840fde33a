/* test_softmax.c: softmax over the last axis: gradchecks (rows with a large
 * spread and offset), PyTorch goldens (tests/fixtures/ops_norm), extremes and
 * shape errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "ops/softmax.h"
#include "testutil.h"

typedef struct {
    ap_ctx *ctx;
    ap_tensor in, out;
    const float *proj;
} sm_case;

static double sm_loss(void *p) {
    sm_case *c = p;
    ap_softmax_forward(c->ctx, &c->out, &c->in);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void test_gradcheck(ap_ctx *ctx) {
    const int64_t R = 5, N = 11, n = R * N;
    float *x = tu_alloc(n), *y = tu_alloc(n), *proj = tu_alloc(n), *dx = tu_alloc(n);
    tu_fill_normal(x, n, 41, 2.0f);
    for (int64_t j = 0; j < N; j++) {
        x[1 * N + j] += 300.0f;      /* large offset: only the max subtraction copes */
        x[2 * N + j] *= 4.0f;        /* spread ~8: a few entries dominate */
        x[3 * N + j] = -8.0f + j;    /* ramp, one entry at ~0.6 */
    }
    tu_fill_uniform(proj, n, 42, -1, 1);
    sm_case c = {ctx, ap_t2(x, R, N), ap_t2(y, R, N), proj};
    ap_tensor tdx = ap_t2(dx, R, N), tdy = ap_t2(proj, R, N);
    int rc = ap_softmax_forward(ctx, &c.out, &c.in) | ap_softmax_backward(ctx, &tdx, &tdy, &c.out);
    tu_check(rc == 0, "softmax forward and backward run %s", rc ? ap_errmsg() : "");
    /* Softmax outputs are <= 1 with curvature <= ~1: eps 1e-2 gives truncation
     * ~1e-5; fp32 rounding of the x + 300 row is ~3e-5 / 2e-2 = 1.5e-3 relative
     * to the largest gradient there (~0.5), inside tol 3e-3 * max|grad|. */
    tu_gradcheck("softmax din (5x11)", sm_loss, &c, x, n, dx, 1e-2, 3e-3, 64);
    free(x), free(y), free(proj), free(dx);
}

/* A row with one finite entry and the rest -inf (masked), and huge values. */
static void test_extremes(ap_ctx *ctx) {
    float x[8] = {-INFINITY, 2.0f, -INFINITY, -INFINITY, 3e38f, -3e38f, 1e30f, 3e38f};
    float y[8];
    ap_tensor tx = ap_t2(x, 2, 4), ty = ap_t2(y, 2, 4);
    int rc = ap_softmax_forward(ctx, &ty, &tx);
    tu_check(rc == 0 && y[0] == 0 && y[1] == 1 && y[2] == 0 && y[3] == 0,
             "softmax of [-inf, 2, -inf, -inf] = [0, 1, 0, 0] (got %g %g %g %g)", y[0], y[1],
             y[2], y[3]);
    tu_check(y[4] == 0.5f && y[5] == 0 && y[6] == 0 && y[7] == 0.5f,
             "softmax of [3e38, -3e38, 1e30, 3e38] = [0.5, 0, 0, 0.5] (got %g %g %g %g)", y[4],
             y[5], y[6], y[7]);
    float xn[3] = {1.0f, NAN, 2.0f}, yn[3];
    ap_tensor txn = ap_t1(xn, 3), tyn = ap_t1(yn, 3);
    rc = ap_softmax_forward(ctx, &tyn, &txn);
    tu_check(rc == 0 && isnan(yn[0]) && isnan(yn[1]) && isnan(yn[2]),
             "softmax of [1, NaN, 2] is all NaN, as in PyTorch (got %g %g %g)", yn[0], yn[1],
             yn[2]);
}

/* The vectorised exp over its whole range: rows (0, x) for x in [-87, 0]
 * give out[1] = e^x / (1 + e^x), compared with double. */
static void test_exp_range(ap_ctx *ctx) {
    const int64_t R = 20001;
    float *x = tu_alloc(2 * R), *y = tu_alloc(2 * R), *p1 = tu_alloc(R), *w1 = tu_alloc(R);
    for (int64_t r = 0; r < R; r++) {
        x[2 * r + 1] = -87.0f * (float)r / (float)(R - 1);
        const double e = exp((double)x[2 * r + 1]);
        w1[r] = (float)(e / (1.0 + e));
    }
    ap_tensor tx = ap_t2(x, R, 2), ty = ap_t2(y, R, 2);
    tu_check(ap_softmax_forward(ctx, &ty, &tx) == 0, "softmax (20001, 2) runs");
    for (int64_t r = 0; r < R; r++) p1[r] = y[2 * r + 1];
    /* exp within 1 ulp, the double sum's reciprocal and the product rounded
     * once each: ~2 ulp (2.4e-7) relative at every magnitude down to 1.6e-38. */
    tu_compare("softmax of (0, x), x in [-87, 0], vs double", p1, w1, R, 0, 2.5e-7);
    free(x), free(y), free(p1), free(w1);
}

static void golden(ap_ctx *ctx, ap_st_file *f, const char *cs) {
    char key[64], what[96];
    ap_tensor in, proj, out_w, gin_w;
    snprintf(key, sizeof key, "%s.in", cs);
    tu_fixture(f, key, &in);
    snprintf(key, sizeof key, "%s.proj", cs);
    tu_fixture(f, key, &proj);
    snprintf(key, sizeof key, "%s.out", cs);
    tu_fixture(f, key, &out_w);
    snprintf(key, sizeof key, "%s.grad_in", cs);
    tu_fixture(f, key, &gin_w);
    ap_tensor out = in, din = in;
    out.data = tu_alloc(ap_numel(&in));
    din.data = tu_alloc(ap_numel(&in));
    int rc = ap_softmax_forward(ctx, &out, &in) | ap_softmax_backward(ctx, &din, &proj, &out);
    tu_check(rc == 0, "%s forward and backward run %s", cs, rc ? ap_errmsg() : "");
    /* Outputs in [0, 1]: expf of max-subtracted values and a sum, a few ulp. */
    snprintf(what, sizeof what, "%s out", cs);
    tu_compare(what, out.data, out_w.data, ap_numel(&in), 1e-7, 1e-5);
    snprintf(what, sizeof what, "%s grad_in", cs);
    tu_compare(what, din.data, gin_w.data, ap_numel(&in), 1e-7, 1e-5);
    free(in.data), free(proj.data), free(out_w.data), free(gin_w.data), free(out.data);
    free(din.data);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_norm");
    if (!f) return;
    golden(ctx, f, "softmax2d");
    golden(ctx, f, "softmax3d");
    ap_st_close(f);
}

static void test_shapes(ap_ctx *ctx) {
    static float buf[24];
    ap_tensor a = ap_t2(buf, 3, 4), b = ap_t2(buf, 4, 3), e = ap_t2(buf, 3, 0);
    tu_expect_error("softmax_forward with out (4, 3) for in (3, 4)",
                    ap_softmax_forward(ctx, &b, &a), "softmax_forward", "(3, 4)", "(4, 3)",
                    NULL);
    tu_expect_error("softmax_forward with an empty last axis",
                    ap_softmax_forward(ctx, &e, &e), "softmax_forward", "(3, 0)", NULL);
    tu_expect_error("softmax_backward with dout (4, 3) for out (3, 4)",
                    ap_softmax_backward(ctx, &a, &b, &a), "softmax_backward", "dout",
                    "(4, 3)", NULL);
    tu_expect_error("softmax_backward with din (4, 3) for out (3, 4)",
                    ap_softmax_backward(ctx, &b, &a, &a), "softmax_backward", "din", "(4, 3)",
                    NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_softmax: softmax over the last axis (%d threads)\n", ctx.n_threads);
    test_gradcheck(&ctx);
    test_extremes(&ctx);
    test_exp_range(&ctx);
    test_goldens(&ctx);
    test_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
