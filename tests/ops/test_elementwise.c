/* test_elementwise.c: add, mul, scale, axpy, channel concat, channel bias and
 * the NCHW <-> NLC permutes: gradchecks, PyTorch goldens
 * (tools/fixtures/ops_misc.py), aliasing, shape errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "ops/elementwise.h"
#include "testutil.h"

enum { OP_ADD, OP_MUL, OP_SCALE, OP_CONCAT, OP_CHBIAS, OP_TO_NLC, OP_TO_NCHW };

/* One op with up to two inputs; the loss is sum(out * proj). */
typedef struct {
    ap_ctx *ctx;
    int op;
    ap_tensor x0, x1, out;
    const float *proj;
    float s;
} ew_case;

static int run_forward(ew_case *c) {
    switch (c->op) {
    case OP_ADD: return ap_add_forward(c->ctx, &c->out, &c->x0, &c->x1);
    case OP_MUL: return ap_mul_forward(c->ctx, &c->out, &c->x0, &c->x1);
    case OP_SCALE: return ap_scale_forward(c->ctx, &c->out, &c->x0, c->s);
    case OP_CONCAT: return ap_concat_channels_forward(c->ctx, &c->out, &c->x0, &c->x1);
    case OP_CHBIAS: return ap_add_channel_bias_forward(c->ctx, &c->out, &c->x0, &c->x1);
    case OP_TO_NLC: return ap_nchw_to_nlc_forward(c->ctx, &c->out, &c->x0);
    default: return ap_nlc_to_nchw_forward(c->ctx, &c->out, &c->x0);
    }
}

/* Backward into d0 (for x0) and d1 (for x1), with dout = proj. */
static int run_backward(ew_case *c, const ap_tensor *d0, const ap_tensor *d1) {
    ap_tensor dy = ap_tn((float *)c->proj, c->out.ndim, c->out.shape);
    switch (c->op) {
    case OP_ADD: return ap_add_backward(c->ctx, d0, d1, &dy);
    case OP_MUL: return ap_mul_backward(c->ctx, d0, d1, &dy, &c->x0, &c->x1);
    case OP_SCALE: return ap_scale_backward(c->ctx, d0, &dy, c->s);
    case OP_CONCAT: return ap_concat_channels_backward(c->ctx, d0, d1, &dy);
    case OP_CHBIAS: return ap_add_channel_bias_backward(c->ctx, d0, d1, &dy);
    case OP_TO_NLC: return ap_nchw_to_nlc_backward(c->ctx, d0, &dy);
    default: return ap_nlc_to_nchw_backward(c->ctx, d0, &dy);
    }
}

static double ew_loss(void *p) {
    ew_case *c = p;
    run_forward(c);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

/* Gradchecks every input of an op; shapes as tensors with NULL data. */
static void gradcheck_op(ap_ctx *ctx, const char *what, int op, ap_tensor x0, ap_tensor x1,
                         ap_tensor out, float s) {
    int two = x1.ndim > 0;
    int64_t n0 = ap_numel(&x0), n1 = two ? ap_numel(&x1) : 0, m = ap_numel(&out);
    x0.data = tu_alloc(n0);
    if (two) x1.data = tu_alloc(n1);
    out.data = tu_alloc(m);
    float *proj = tu_alloc(m), *d0 = tu_alloc(n0), *d1 = two ? tu_alloc(n1) : NULL;
    tu_fill_uniform(x0.data, n0, 21, -2, 2);
    if (two) tu_fill_uniform(x1.data, n1, 22, -2, 2);
    tu_fill_uniform(proj, m, 23, -1, 1);
    ew_case c = {ctx, op, x0, x1, out, proj, s};
    ap_tensor td0 = ap_tn(d0, x0.ndim, x0.shape), td1 = ap_tn(d1, x1.ndim, x1.shape);
    tu_check(run_backward(&c, &td0, two ? &td1 : NULL) == 0, "%s backward runs (%s)", what,
             ap_errmsg());
    char name[160];
    /* Linear or bilinear in each input: central differences are exact up
     * to fp32 rounding of the loss terms. */
    snprintf(name, sizeof name, "%s d(in0)", what);
    tu_gradcheck(name, ew_loss, &c, x0.data, n0, d0, 1e-2, 1e-3, 100);
    if (two) {
        snprintf(name, sizeof name, "%s d(in1)", what);
        tu_gradcheck(name, ew_loss, &c, x1.data, n1, d1, 1e-2, 1e-3, 100);
    }
    free(x0.data), free(x1.data), free(out.data), free(proj), free(d0), free(d1);
}

static void test_gradchecks(ap_ctx *ctx) {
    ap_tensor none = {0};
    gradcheck_op(ctx, "add 3x5x7", OP_ADD, ap_t3(NULL, 3, 5, 7), ap_t3(NULL, 3, 5, 7),
                 ap_t3(NULL, 3, 5, 7), 0);
    gradcheck_op(ctx, "mul 3x5x7", OP_MUL, ap_t3(NULL, 3, 5, 7), ap_t3(NULL, 3, 5, 7),
                 ap_t3(NULL, 3, 5, 7), 0);
    gradcheck_op(ctx, "scale -0.7 3x5x7", OP_SCALE, ap_t3(NULL, 3, 5, 7), none,
                 ap_t3(NULL, 3, 5, 7), -0.7f);
    gradcheck_op(ctx, "concat (2,3,5,4)+(2,5,5,4)", OP_CONCAT, ap_t4(NULL, 2, 3, 5, 4),
                 ap_t4(NULL, 2, 5, 5, 4), ap_t4(NULL, 2, 8, 5, 4), 0);
    gradcheck_op(ctx, "channel bias (2,3,5,7)+(2,3)", OP_CHBIAS, ap_t4(NULL, 2, 3, 5, 7),
                 ap_t2(NULL, 2, 3), ap_t4(NULL, 2, 3, 5, 7), 0);
    gradcheck_op(ctx, "nchw_to_nlc (2,3,5,7)", OP_TO_NLC, ap_t4(NULL, 2, 3, 5, 7), none,
                 ap_t3(NULL, 2, 35, 3), 0);
    gradcheck_op(ctx, "nlc_to_nchw (2,35,3)", OP_TO_NCHW, ap_t3(NULL, 2, 35, 3), none,
                 ap_t4(NULL, 2, 3, 5, 7), 0);
}

/* Loads "<case>.<role>" into t (caller frees t->data). */
static float *load(ap_st_file *f, const char *cs, const char *role, ap_tensor *t) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", cs, role);
    return tu_fixture(f, key, t);
}

/* Golden: forward from in0 (and in1) and each gradient of sum(out * proj). */
static void golden(ap_ctx *ctx, ap_st_file *f, const char *cs, int op, const char *r0,
                   const char *r1, double dtol1) {
    ap_tensor x0, x1 = {0}, out, proj, g0, g1 = {0};
    char role[64], what[160];
    load(f, cs, r0, &x0);
    load(f, cs, "out", &out);
    load(f, cs, "proj", &proj);
    snprintf(role, sizeof role, "grad_%s", r0);
    load(f, cs, role, &g0);
    if (r1) {
        load(f, cs, r1, &x1);
        snprintf(role, sizeof role, "grad_%s", r1);
        load(f, cs, role, &g1);
    }
    int64_t m = ap_numel(&out);
    float *y = tu_alloc(m), *d0 = tu_alloc(ap_numel(&x0)), *d1 = r1 ? tu_alloc(ap_numel(&x1)) : NULL;
    ew_case c = {ctx, op, x0, x1, ap_tn(y, out.ndim, out.shape), proj.data, 0};
    tu_check(run_forward(&c) == 0, "%s forward runs (%s)", cs, ap_errmsg());
    snprintf(what, sizeof what, "%s forward vs torch (exact)", cs);
    tu_compare(what, y, out.data, m, 0, 0);
    ap_tensor td0 = ap_tn(d0, x0.ndim, x0.shape), td1 = ap_tn(d1, x1.ndim, x1.shape);
    tu_check(run_backward(&c, &td0, r1 ? &td1 : NULL) == 0, "%s backward runs (%s)", cs,
             ap_errmsg());
    snprintf(what, sizeof what, "%s d%s vs torch (exact)", cs, r0);
    tu_compare(what, d0, g0.data, ap_numel(&x0), 0, 0);
    if (r1) {
        snprintf(what, sizeof what, "%s d%s vs torch", cs, r1);
        tu_compare(what, d1, g1.data, ap_numel(&x1), dtol1, dtol1);
    }
    free(y), free(d0), free(d1);
    free(x0.data), free(x1.data), free(out.data), free(proj.data), free(g0.data), free(g1.data);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_misc");
    if (!f) return;
    /* Products and copies are single roundings: exact. */
    golden(ctx, f, "mul", OP_MUL, "a", "b", 0);
    golden(ctx, f, "concat", OP_CONCAT, "a", "b", 0);
    /* dbias: 35 terms summed in double here, in float by torch: 1e-6. */
    golden(ctx, f, "chbias", OP_CHBIAS, "in", "bias", 1e-6);
    golden(ctx, f, "to_nlc", OP_TO_NLC, "in", NULL, 0);
    golden(ctx, f, "to_nchw", OP_TO_NCHW, "in", NULL, 0);
    ap_st_close(f);
}

/* In-place forms the models use, large enough to take the threaded path. */
static void test_aliasing_and_axpy(ap_ctx *ctx) {
    int64_t B = 2, C = 32, H = 40, W = 40, n = B * C * H * W;
    float *a = tu_alloc(n), *b = tu_alloc(n), *want = tu_alloc(n), *bias = tu_alloc(B * C);
    tu_fill_uniform(a, n, 31, -1, 1);
    tu_fill_uniform(b, n, 32, -1, 1);
    tu_fill_uniform(bias, B * C, 33, -1, 1);
    ap_tensor ta = ap_t4(a, B, C, H, W), tb = ap_t4(b, B, C, H, W), tbias = ap_t2(bias, B, C);
    for (int64_t i = 0; i < n; i++) want[i] = a[i] + b[i];
    ap_add_forward(ctx, &ta, &ta, &tb);
    tu_compare("add with out aliasing a (exact)", a, want, n, 0, 0);
    for (int64_t i = 0; i < n; i++) want[i] = a[i] + bias[i / (H * W)];
    ap_add_channel_bias_forward(ctx, &ta, &ta, &tbias);
    tu_compare("channel bias with out aliasing in (exact)", a, want, n, 0, 0);
    for (int64_t i = 0; i < n; i++) want[i] = a[i] + -0.25f * b[i];
    ap_axpy(ctx, &ta, -0.25f, &tb);
    tu_compare("axpy y += -0.25 x (exact)", a, want, n, 0, 0);
    /* mul backward with da aliasing dout: da = dout * b, db = dout * a. */
    float *g = tu_alloc(n), *db = tu_alloc(n), *want_db = tu_alloc(n);
    tu_fill_uniform(g, n, 34, -1, 1);
    for (int64_t i = 0; i < n; i++) want[i] = g[i] * b[i], want_db[i] = g[i] * a[i];
    ap_tensor tg = ap_t4(g, B, C, H, W), tdb = ap_t4(db, B, C, H, W);
    ap_mul_backward(ctx, &tg, &tdb, &tg, &ta, &tb);
    tu_compare("mul backward da (aliasing dout)", g, want, n, 0, 0);
    tu_compare("mul backward db", db, want_db, n, 0, 0);
    /* add backward with da aliasing dout and db NULL: a no-op, no error. */
    tu_check(ap_add_backward(ctx, &tg, NULL, &tg) == 0, "add backward da == dout, db NULL");
    free(a), free(b), free(want), free(bias), free(g), free(db), free(want_db);
}

static void test_shapes(ap_ctx *ctx) {
    static float buf[4096], buf2[4096];
    ap_tensor a = ap_t4(buf, 2, 3, 5, 4), b_badh = ap_t4(buf2, 2, 5, 6, 4);
    ap_tensor out = ap_t4(buf2, 2, 8, 5, 4), out7 = ap_t4(buf2, 2, 7, 5, 4);
    ap_tensor b = ap_t4(buf2, 2, 5, 5, 4), x34 = ap_t2(buf, 3, 4), x43 = ap_t2(buf2, 4, 3);
    tu_expect_error("add_forward with b (4, 3) for a (3, 4)", ap_add_forward(ctx, &x34, &x34, &x43),
                    "add_forward", "(3, 4)", "(4, 3)", NULL);
    tu_expect_error("mul_backward with db (4, 3) for a (3, 4)",
                    ap_mul_backward(ctx, NULL, &x43, &x34, &x34, &x34), "mul_backward", "db",
                    "(4, 3)", NULL);
    tu_expect_error("concat_channels_forward with b height 6 for a (2, 3, 5, 4)",
                    ap_concat_channels_forward(ctx, &out, &a, &b_badh), "concat_channels_forward",
                    "b", "(2, *, 5, 4)", "(2, 5, 6, 4)", NULL);
    tu_expect_error("concat_channels_forward with out 7 channels for 3 + 5",
                    ap_concat_channels_forward(ctx, &out7, &a, &b), "concat_channels_forward",
                    "out", "(2, 8, 5, 4)", "(2, 7, 5, 4)", NULL);
    tu_expect_error("concat_channels_backward with da 3 + db 5 channels of dout 7",
                    ap_concat_channels_backward(ctx, &a, &b, &out7), "concat_channels_backward",
                    "(2, 3, 5, 4)", "(2, 5, 5, 4)", "(2, 7, 5, 4)", NULL);
    ap_tensor bias_bad = ap_t2(buf2, 2, 4);
    tu_expect_error("add_channel_bias_forward with bias (2, 4) for in (2, 3, 5, 4)",
                    ap_add_channel_bias_forward(ctx, &a, &a, &bias_bad),
                    "add_channel_bias_forward", "bias", "(2, 3)", "(2, 4)", NULL);
    tu_expect_error("add_channel_bias_backward with dbias (2, 4)",
                    ap_add_channel_bias_backward(ctx, NULL, &bias_bad, &a),
                    "add_channel_bias_backward", "dbias", "(2, 3)", "(2, 4)", NULL);
    ap_tensor nlc_bad = ap_t3(buf2, 2, 20, 4);
    tu_expect_error("nchw_to_nlc_forward with out (2, 20, 4) for in (2, 3, 5, 4)",
                    ap_nchw_to_nlc_forward(ctx, &nlc_bad, &a), "nchw_to_nlc_forward", "out",
                    "(2, 20, 3)", "(2, 20, 4)", NULL);
    tu_expect_error("nlc_to_nchw_forward with in (2, 20, 4) for out (2, 3, 5, 4)",
                    ap_nlc_to_nchw_forward(ctx, &a, &nlc_bad), "nlc_to_nchw_forward", "in",
                    "(2, 20, 3)", "(2, 20, 4)", NULL);
    tu_expect_error("nchw_to_nlc_backward with dout (2, 20, 4) for din (2, 3, 5, 4)",
                    ap_nchw_to_nlc_backward(ctx, &a, &nlc_bad), "nchw_to_nlc_backward", "dout",
                    "(2, 20, 4)", NULL);
    tu_expect_error("axpy with x (4, 3) for y (3, 4)", ap_axpy(ctx, &x34, 1.0f, &x43), "axpy",
                    "(3, 4)", "(4, 3)", NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_elementwise: add, mul, scale, axpy, concat, channel bias, permutes\n");
    test_gradchecks(&ctx);
    test_goldens(&ctx);
    test_aliasing_and_axpy(&ctx);
    test_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
