/* activation.c: argument checks and dispatch of the pointwise activations
 * (SiLU, GELU, QuickGELU, GEGLU); the CPU bodies are in cpu/activation.c. */
#include "activation.h"

#include "backend.h"
#include "core/err.h"

static int geglu_dims(const char *op, const ap_tensor *in, const char *half_name,
                      const ap_tensor *half, int64_t *N) {
    char s[96];
    if (!ap_present(in)) return ap_fail("%s: in: missing tensor", op);
    const int64_t last = in->ndim >= 1 ? in->shape[in->ndim - 1] : 0;
    if (last <= 0 || last % 2 != 0)
        return ap_fail("%s: in: expected shape (..., 2N) with an even last dim, found %s",
                       op, ap_shape_str(in, s, sizeof s));
    int64_t dims[AP_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++) dims[i] = in->shape[i];
    dims[in->ndim - 1] = last / 2;
    *N = last / 2;
    return ap_expect(op, half_name, half, in->ndim, dims);
}

int ap_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "silu_forward";
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, silu_forward, out, in);
}

int ap_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in) {
    const char *op = "silu_backward";
    AP_TRY(ap_expect_same(op, "in", in, "dout", dout));
    AP_TRY(ap_expect_same(op, "in", in, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, "in", in, NULL));
    return AP_DISPATCH(ctx, silu_backward, din, dout, in);
}

int ap_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                    int tanh_approx) {
    const char *op = "gelu_forward";
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, gelu_forward, out, in, tanh_approx);
}

int ap_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in, int tanh_approx) {
    const char *op = "gelu_backward";
    AP_TRY(ap_expect_same(op, "in", in, "dout", dout));
    AP_TRY(ap_expect_same(op, "in", in, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, "in", in, NULL));
    return AP_DISPATCH(ctx, gelu_backward, din, dout, in, tanh_approx);
}

int ap_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "quick_gelu_forward";
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, quick_gelu_forward, out, in);
}

int ap_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                           const ap_tensor *in) {
    const char *op = "quick_gelu_backward";
    AP_TRY(ap_expect_same(op, "in", in, "dout", dout));
    AP_TRY(ap_expect_same(op, "in", in, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, "in", in, NULL));
    return AP_DISPATCH(ctx, quick_gelu_backward, din, dout, in);
}

int ap_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "geglu_forward";
    int64_t N;
    AP_TRY(geglu_dims(op, in, "out", out, &N));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, geglu_forward, out, in);
}

int ap_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                      const ap_tensor *in) {
    const char *op = "geglu_backward";
    int64_t N;
    AP_TRY(geglu_dims(op, in, "dout", dout, &N));
    AP_TRY(ap_expect_same(op, "in", in, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, "in", in, NULL));
    return AP_DISPATCH(ctx, geglu_backward, din, dout, in);
}
