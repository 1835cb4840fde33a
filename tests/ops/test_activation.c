/* test_activation.c: gradchecks, PyTorch goldens (tests/fixtures/ops_norm:
 * GELU erf / tanh, QuickGELU, GEGLU) and shape errors of the activations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "ops/activation.h"
#include "testutil.h"

typedef struct {
    ap_ctx *ctx;
    ap_tensor in, out;
    const float *proj;
} silu_case;

static double silu_loss(void *p) {
    silu_case *c = p;
    ap_silu_forward(c->ctx, &c->out, &c->in);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void test_silu_gradcheck(ap_ctx *ctx) {
    int64_t n0 = 3, n1 = 7, n = n0 * n1;
    float *x = tu_alloc(n), *y = tu_alloc(n), *proj = tu_alloc(n), *dx = tu_alloc(n);
    tu_fill_uniform(x, n, 1, -4, 4);
    tu_fill_uniform(proj, n, 2, -1, 1);
    silu_case c = {ctx, ap_t2(x, n0, n1), ap_t2(y, n0, n1), proj};
    ap_tensor tdx = ap_t2(dx, n0, n1), tdy = ap_t2(proj, n0, n1);
    tu_check(ap_silu_backward(ctx, &tdx, &tdy, &c.in) == 0, "silu_backward runs");
    /* fp32 forward, double loss: eps 1e-2 keeps truncation error ~1e-4. */
    tu_gradcheck("silu din (3x7)", silu_loss, &c, x, n, dx, 1e-2, 2e-3, 64);
    free(x), free(y), free(proj), free(dx);
}

static void test_silu_shapes(ap_ctx *ctx) {
    float buf[12];
    ap_tensor a = ap_t2(buf, 3, 4), b = ap_t2(buf, 4, 3);
    tu_expect_error("silu_forward with out (4, 3) for in (3, 4)",
                    ap_silu_forward(ctx, &b, &a), "silu_forward", "(3, 4)", "(4, 3)",
                    NULL);
}

/* ---- GELU, QuickGELU, GEGLU ---------------------------------------------- */

enum { ACT_GELU_ERF, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_GEGLU };
static const char *act_name[] = {"gelu_erf", "gelu_tanh", "quick_gelu", "geglu"};

static int act_forward(ap_ctx *ctx, int act, const ap_tensor *out, const ap_tensor *in) {
    switch (act) {
    case ACT_GELU_ERF: return ap_gelu_forward(ctx, out, in, 0);
    case ACT_GELU_TANH: return ap_gelu_forward(ctx, out, in, 1);
    case ACT_QUICK_GELU: return ap_quick_gelu_forward(ctx, out, in);
    default: return ap_geglu_forward(ctx, out, in);
    }
}

static int act_backward(ap_ctx *ctx, int act, const ap_tensor *din, const ap_tensor *dout,
                        const ap_tensor *in) {
    switch (act) {
    case ACT_GELU_ERF: return ap_gelu_backward(ctx, din, dout, in, 0);
    case ACT_GELU_TANH: return ap_gelu_backward(ctx, din, dout, in, 1);
    case ACT_QUICK_GELU: return ap_quick_gelu_backward(ctx, din, dout, in);
    default: return ap_geglu_backward(ctx, din, dout, in);
    }
}

typedef struct {
    ap_ctx *ctx;
    int act;
    ap_tensor in, out;
    const float *proj;
} act_case;

static double act_loss(void *p) {
    act_case *c = p;
    act_forward(c->ctx, c->act, &c->out, &c->in);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

/* Inputs over a wide range: a sweep of [-8, 8] (where the curvature is) and
 * magnitudes up to 40 (saturated tails). Larger |x| are covered by the
 * goldens and test_act_extremes: there fp32 spacing (~1e-3 at 1e4) swamps
 * any finite-difference step. */
static void wide_inputs(float *x, int64_t n) {
    static const float tails[] = {-40, -20, -12, 12, 20, 40};
    for (int64_t i = 0; i < n; i++) x[i] = -8.0f + 16.0f * (float)i / (float)(n - 1);
    for (int64_t i = 0; i < 6 && i < n; i++) x[i * (n / 6)] = tails[i];
}

static void test_act_gradcheck(ap_ctx *ctx, int act) {
    /* (5, 13) for the pointwise ones; GEGLU in (3, 5, 14): N = 7. */
    const int geglu = act == ACT_GEGLU;
    const int64_t n = geglu ? 3 * 5 * 14 : 5 * 13, nout = geglu ? n / 2 : n;
    float *x = tu_alloc(n), *y = tu_alloc(nout), *proj = tu_alloc(nout), *dx = tu_alloc(n);
    wide_inputs(x, n);
    if (geglu) tu_fill_uniform(x, n / 2, 3, -3, 3); /* the hidden half of each row */
    if (geglu)
        for (int64_t r = 0; r < 15; r++) /* rows are [hidden(7) | gate(7)] */
            for (int64_t j = 0; j < 7; j++) {
                float h = x[r * 7 + j];
                x[r * 7 + j] = x[n / 2 + r * 7 + j];
                x[n / 2 + r * 7 + j] = h;
            }
    tu_fill_uniform(proj, nout, 4, -1, 1);
    act_case c = {ctx, act, geglu ? ap_t3(x, 3, 5, 14) : ap_t2(x, 5, 13),
                  geglu ? ap_t3(y, 3, 5, 7) : ap_t2(y, 5, 13), proj};
    ap_tensor tdx = c.in, tdy = c.out;
    tdx.data = dx;
    tdy.data = proj;
    int rc = act_backward(ctx, act, &tdx, &tdy, &c.in);
    tu_check(rc == 0, "%s backward runs %s", act_name[act], rc ? ap_errmsg() : "");
    /* eps 1e-2 on O(1..40) inputs: truncation ~1e-4 near |x| ~ 1, fp32
     * rounding of outputs up to 40 is ~4e-6 / 2e-2 = 2e-4. */
    char what[64];
    snprintf(what, sizeof what, "%s din %s", act_name[act], geglu ? "(3x5x14)" : "(5x13)");
    tu_gradcheck(what, act_loss, &c, x, n, dx, 1e-2, 2e-3, 256);
    free(x), free(y), free(proj), free(dx);
}

/* At |x| up to FLT_MAX: finite results, the asymptotes y -> x (x > 0), 0
 * (x < 0), dy/dx -> 1, 0. */
static void test_act_extremes(ap_ctx *ctx) {
    static float x[] = {3e38f, 1e10f, 1e4f, -1e4f, -1e10f, -3e38f};
    const int64_t n = 6;
    float y[6], dx[6], one[6] = {1, 1, 1, 1, 1, 1};
    ap_tensor tx = ap_t1(x, n), ty = ap_t1(y, n), tdx = ap_t1(dx, n), t1 = ap_t1(one, n);
    for (int act = ACT_GELU_ERF; act <= ACT_QUICK_GELU; act++) {
        int rc = act_forward(ctx, act, &ty, &tx) | act_backward(ctx, act, &tdx, &t1, &tx);
        int ok = rc == 0;
        for (int64_t i = 0; i < n; i++) {
            const float want_y = x[i] > 0 ? x[i] : 0.0f, want_d = x[i] > 0 ? 1.0f : 0.0f;
            ok &= isfinite(y[i]) && isfinite(dx[i]) &&
                  fabsf(y[i] - want_y) <= 1e-6f * fabsf(x[i]) && dx[i] == want_d;
        }
        tu_check(ok, "%s at |x| = 1e4 .. 3e38: y -> x or 0, dy/dx -> 1 or 0, no NaN/inf",
                 act_name[act]);
    }
}

static void golden_act(ap_ctx *ctx, ap_st_file *f, int act) {
    const int geglu = act == ACT_GEGLU;
    char key[64], what[96];
    ap_tensor in, proj, out_w, gin_w;
    tu_fixture(f, geglu ? "geglu.in" : "act.in", &in);
    tu_fixture(f, geglu ? "geglu.proj" : "act.proj", &proj);
    snprintf(key, sizeof key, "%s.out", act_name[act]);
    tu_fixture(f, key, &out_w);
    snprintf(key, sizeof key, "%s.grad_in", act_name[act]);
    tu_fixture(f, key, &gin_w);
    ap_tensor out = out_w, din = in;
    out.data = tu_alloc(ap_numel(&out_w));
    din.data = tu_alloc(ap_numel(&in));
    int rc = act_forward(ctx, act, &out, &in) | act_backward(ctx, act, &din, &proj, &in);
    tu_check(rc == 0, "%s forward and backward run %s", act_name[act], rc ? ap_errmsg() : "");
    /* libm erff / expf / tanhf vs torch's vectorised versions: a few ulp,
     * relative (outputs reach 1e4); atol for values near 0. */
    snprintf(what, sizeof what, "%s out", act_name[act]);
    tu_compare(what, out.data, out_w.data, ap_numel(&out_w), 1e-6, 4e-6);
    snprintf(what, sizeof what, "%s grad_in", act_name[act]);
    tu_compare(what, din.data, gin_w.data, ap_numel(&in), 1e-6, 4e-6);
    free(in.data), free(proj.data), free(out_w.data), free(gin_w.data), free(out.data);
    free(din.data);
}

static void test_act_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_norm");
    if (!f) return;
    for (int act = ACT_GELU_ERF; act <= ACT_GEGLU; act++) golden_act(ctx, f, act);
    ap_st_close(f);
}

static void test_act_shapes(ap_ctx *ctx) {
    static float buf[64];
    ap_tensor a = ap_t2(buf, 3, 4), b = ap_t2(buf, 4, 3), odd = ap_t2(buf, 3, 5);
    ap_tensor g10 = ap_t2(buf, 3, 10), h5 = ap_t2(buf, 3, 5), h4 = ap_t2(buf, 3, 4);
    tu_expect_error("gelu_forward with out (4, 3) for in (3, 4)",
                    ap_gelu_forward(ctx, &b, &a, 0), "gelu_forward", "(3, 4)", "(4, 3)",
                    NULL);
    tu_expect_error("gelu_backward with dout (4, 3) for in (3, 4)",
                    ap_gelu_backward(ctx, &a, &b, &a, 1), "gelu_backward", "dout", "(4, 3)",
                    NULL);
    tu_expect_error("quick_gelu_backward with din (4, 3) for in (3, 4)",
                    ap_quick_gelu_backward(ctx, &b, &a, &a), "quick_gelu_backward", "din",
                    "(4, 3)", NULL);
    tu_expect_error("geglu_forward with an odd last dim",
                    ap_geglu_forward(ctx, &h5, &odd), "geglu_forward", "2N", "(3, 5)", NULL);
    tu_expect_error("geglu_forward with out (3, 4) for in (3, 10)",
                    ap_geglu_forward(ctx, &h4, &g10), "geglu_forward", "out", "(3, 5)",
                    "(3, 4)", NULL);
    tu_expect_error("geglu_backward with din (3, 5) for in (3, 10)",
                    ap_geglu_backward(ctx, &h5, &h5, &g10), "geglu_backward", "din",
                    "(3, 10)", "(3, 5)", NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_activation: silu, gelu (erf, tanh), quick_gelu, geglu\n");
    test_silu_gradcheck(&ctx);
    test_silu_shapes(&ctx);
    for (int act = ACT_GELU_ERF; act <= ACT_GEGLU; act++) test_act_gradcheck(&ctx, act);
    test_act_extremes(&ctx);
    test_act_goldens(&ctx);
    test_act_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
