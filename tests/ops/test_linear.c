/* test_linear.c: linear forward/backward against finite differences, PyTorch
 * goldens (tools/fixtures/ops_conv.py) on 1 and 2 threads, the accumulation
 * rule, and shape errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "ops/linear.h"
#include "testutil.h"

typedef struct {
    ap_ctx *ctx;
    ap_tensor x, w, b, y, proj;
    int bias;
} lin_case;

static double lin_loss(void *p) {
    lin_case *c = p;
    if (ap_linear_forward(c->ctx, &c->y, &c->x, &c->w, c->bias ? &c->b : NULL) != 0) {
        printf("    linear_forward failed: %s\n", ap_errmsg());
        return NAN;
    }
    return tu_dot(c->y.data, c->proj.data, ap_numel(&c->y));
}

/* Gradcheck of din, dw, db for in of shape (dims..., I), w (O, I). */
static void test_gradcheck(ap_ctx *ctx, int ndim, const int64_t *xshape, int O, int bias,
                           uint64_t seed) {
    char xs[160], what[256];
    int I = (int)xshape[ndim - 1];
    lin_case c = {ctx, ap_tn(NULL, ndim, xshape), ap_t2(NULL, O, I), ap_t1(NULL, O),
                  ap_tn(NULL, ndim, xshape), ap_tn(NULL, ndim, xshape), bias};
    c.y.shape[ndim - 1] = O, c.proj.shape[ndim - 1] = O;
    int64_t nx = ap_numel(&c.x), ny = ap_numel(&c.y);
    c.x.data = tu_alloc(nx), c.w.data = tu_alloc((int64_t)O * I), c.b.data = tu_alloc(O);
    c.y.data = tu_alloc(ny), c.proj.data = tu_alloc(ny);
    tu_fill_uniform(c.x.data, nx, seed, -1, 1);
    tu_fill_uniform(c.w.data, (int64_t)O * I, seed + 1, -0.5f, 0.5f);
    tu_fill_uniform(c.b.data, O, seed + 2, -1, 1);
    tu_fill_uniform(c.proj.data, ny, seed + 3, -1, 1);
    ap_tensor dx = c.x, dw = c.w, db = c.b;
    dx.data = tu_alloc(nx), dw.data = tu_alloc((int64_t)O * I), db.data = tu_alloc(O);
    for (int64_t k = 0; k < nx; k++) dx.data[k] = 1e30f; /* din is "=" */
    ap_shape_str(&c.x, xs, sizeof xs);
    tu_check(ap_linear_backward(ctx, &dx, &dw, bias ? &db : NULL, &c.proj, &c.x, &c.w) == 0,
             "linear_backward runs (in %s, O %d) %s", xs, O, ap_errmsg());
    /* Linear in x, w, b: central differences are exact up to fp32 rounding. */
    snprintf(what, sizeof what, "linear din (in %s, O %d%s)", xs, O, bias ? "" : ", nobias");
    tu_gradcheck(what, lin_loss, &c, c.x.data, nx, dx.data, 1e-2, 1e-3, 400);
    snprintf(what, sizeof what, "linear dw (in %s, O %d%s)", xs, O, bias ? "" : ", nobias");
    tu_gradcheck(what, lin_loss, &c, c.w.data, (int64_t)O * I, dw.data, 1e-2, 1e-3, 400);
    if (bias) {
        snprintf(what, sizeof what, "linear db (in %s, O %d)", xs, O);
        tu_gradcheck(what, lin_loss, &c, c.b.data, O, db.data, 1e-2, 1e-3, 64);
    }
    /* Accumulation: dw, db +=; din alone equals din computed with dw, db. */
    if (bias) {
        float *dw2 = tu_alloc((int64_t)O * I), *db2 = tu_alloc(O), *dx2 = tu_alloc(nx);
        float *ww = tu_alloc((int64_t)O * I), *wb = tu_alloc(O);
        for (int64_t k = 0; k < (int64_t)O * I; k++) dw2[k] = 0.5f, ww[k] = 0.5f + dw.data[k];
        for (int k = 0; k < O; k++) db2[k] = -2.0f, wb[k] = -2.0f + db.data[k];
        ap_tensor tdw = dw, tdb = db, tdx = dx;
        tdw.data = dw2, tdb.data = db2, tdx.data = dx2;
        ap_linear_backward(ctx, NULL, &tdw, &tdb, &c.proj, &c.x, &c.w);
        ap_linear_backward(ctx, &tdx, NULL, NULL, &c.proj, &c.x, &c.w);
        /* Same sums plus one fp32 add. */
        tu_compare("linear dw += (prefilled 0.5)", dw2, ww, (int64_t)O * I, 1e-6, 1e-6);
        tu_compare("linear db += (prefilled -2)", db2, wb, O, 1e-6, 1e-6);
        tu_compare("linear din alone == din with dw, db", dx2, dx.data, nx, 0, 0);
        free(dw2), free(db2), free(dx2), free(ww), free(wb);
    }
    free(c.x.data), free(c.w.data), free(c.b.data), free(c.y.data), free(c.proj.data);
    free(dx.data), free(dw.data), free(db.data);
}

static const char *GOLDEN_CASES[] = {"linear3d", "linear_nobias", "linear1d",
                                     "linear_wide"};

static void test_golden(ap_st_file *f, ap_ctx *ctx, const char *name) {
    char key[128], what[192];
#define LOAD(role, t) (snprintf(key, sizeof key, "%s.%s", name, role), tu_fixture(f, key, t))
    ap_tensor x, w, b = {0}, proj, want_y, want_dx, want_dw, want_db = {0};
    LOAD("in", &x), LOAD("weight", &w), LOAD("proj", &proj), LOAD("out", &want_y);
    LOAD("grad_in", &want_dx), LOAD("grad_weight", &want_dw);
    snprintf(key, sizeof key, "%s.bias", name);
    int bias = ap_st_find(f, key) != NULL;
    if (bias) LOAD("bias", &b), LOAD("grad_bias", &want_db);
#undef LOAD
    int64_t ny = ap_numel(&want_y), nx = ap_numel(&x), nw = ap_numel(&w);
    ap_tensor y = want_y, dx = x, dw = w, db = b;
    y.data = tu_alloc(ny), dx.data = tu_alloc(nx), dw.data = tu_alloc(nw);
    db.data = bias ? tu_alloc(w.shape[0]) : NULL;
    tu_check(ap_linear_forward(ctx, &y, &x, &w, bias ? &b : NULL) == 0 &&
                 ap_linear_backward(ctx, &dx, &dw, bias ? &db : NULL, &proj, &x, &w) == 0,
             "linear %s runs on %d thread(s) %s", name, ctx->n_threads, ap_errmsg());
    /* fp32 both sides over up to I = 96 (out, din) or 100 rows (dw, db)
     * products of normal values (terms up to ~10): summation-order
     * differences ~sqrt(n) * 6e-8 * 10 ~ 1e-5 (measured: bit-identical except
     * db, 1.9e-6); atol 1e-4 + rtol 1e-5 leaves ~10x margin. */
    snprintf(what, sizeof what, "%s out vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, y.data, want_y.data, ny, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s grad_in vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, dx.data, want_dx.data, nx, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s grad_weight vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, dw.data, want_dw.data, nw, 1e-4, 1e-5);
    if (bias) {
        snprintf(what, sizeof what, "%s grad_bias vs torch (%dT)", name, ctx->n_threads);
        tu_compare(what, db.data, want_db.data, w.shape[0], 1e-4, 1e-5);
    }
    free(x.data), free(w.data), free(b.data), free(proj.data), free(want_y.data);
    free(want_dx.data), free(want_dw.data), free(want_db.data);
    free(y.data), free(dx.data), free(dw.data), free(db.data);
}

static void test_shapes(ap_ctx *ctx) {
    static float buf[1024];
    ap_tensor x = ap_t3(buf, 2, 3, 5), w = ap_t2(buf, 4, 5), y = ap_t3(buf, 2, 3, 4);
    ap_tensor b = ap_t1(buf, 4), w_bad = ap_t2(buf, 4, 6), y_bad = ap_t3(buf, 3, 2, 4);
    ap_tensor y_bad2 = ap_t2(buf, 6, 4), b_bad = ap_t1(buf, 3);
    tu_expect_error("linear_forward with weight (4, 6) for in (2, 3, 5)",
                    ap_linear_forward(ctx, &y, &x, &w_bad, &b), "linear_forward", "weight",
                    "(4, 6)", "(2, 3, 5)", NULL);
    tu_expect_error("linear_forward with out (3, 2, 4) for in (2, 3, 5)",
                    ap_linear_forward(ctx, &y_bad, &x, &w, &b), "linear_forward", "out",
                    "(2, 3, 4)", "(3, 2, 4)", "(2, 3, 5)", "(4, 5)", NULL);
    tu_expect_error("linear_forward with out (6, 4) (leading dims flattened)",
                    ap_linear_forward(ctx, &y_bad2, &x, &w, &b), "linear_forward", "out",
                    "(6, 4)", "(2, 3, 5)", NULL);
    tu_expect_error("linear_forward with bias (3) for O 4",
                    ap_linear_forward(ctx, &y, &x, &w, &b_bad), "linear_forward", "bias",
                    "(3)", "(2, 3, 5)", "(4, 5)", NULL);
    tu_expect_error("linear_backward with dout (3, 2, 4)",
                    ap_linear_backward(ctx, &x, &w, &b, &y_bad, &x, &w), "linear_backward",
                    "dout", "(3, 2, 4)", "(2, 3, 5)", NULL);
    tu_expect_error("linear_backward with dweight (4, 6)",
                    ap_linear_backward(ctx, NULL, &w_bad, NULL, &y, &x, &w),
                    "linear_backward", "dweight", "(4, 6)", "(4, 5)", NULL);
    tu_expect_error("linear_backward with dbias (3)",
                    ap_linear_backward(ctx, NULL, NULL, &b_bad, &y, &x, &w),
                    "linear_backward", "dbias", "(3)", NULL);
    tu_expect_error("linear_forward with no input",
                    ap_linear_forward(ctx, &y, NULL, &w, &b), "linear_forward", "in", NULL);
}

int main(void) {
    ap_ctx ctx1, ctx2;
    ap_ctx_init(&ctx1, 1);
    ap_ctx_init(&ctx2, 2);
    printf("test_linear: gradchecks\n");
    test_gradcheck(&ctx2, 3, (int64_t[]){2, 3, 5}, 4, 1, 1);
    test_gradcheck(&ctx2, 2, (int64_t[]){7, 6}, 3, 0, 2);
    test_gradcheck(&ctx1, 1, (int64_t[]){5}, 4, 1, 3);
    /* Large enough that ap_gemm splits over threads (> 2 MFLOP). */
    test_gradcheck(&ctx2, 3, (int64_t[]){2, 77, 96}, 130, 1, 4);
    printf("test_linear: PyTorch goldens\n");
    ap_st_file *f = tu_fixture_open("ops_conv");
    if (f) {
        for (size_t k = 0; k < sizeof GOLDEN_CASES / sizeof *GOLDEN_CASES; k++) {
            test_golden(f, &ctx1, GOLDEN_CASES[k]);
            test_golden(f, &ctx2, GOLDEN_CASES[k]);
        }
        ap_st_close(f);
    }
    printf("test_linear: shape errors\n");
    test_shapes(&ctx2);
    ap_ctx_free(&ctx1);
    ap_ctx_free(&ctx2);
    return tu_exit();
}
