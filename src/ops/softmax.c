/* softmax.c: argument checks and dispatch of softmax over the last axis;
 * the CPU body is in cpu/softmax.c. */
#include "softmax.h"

#include "backend.h"
#include "core/err.h"

static int last_axis(const char *op, const char *arg, const ap_tensor *t, int64_t *N) {
    char s[96];
    if (!ap_present(t)) return ap_fail("%s: %s: missing tensor", op, arg);
    if (t->ndim < 1 || t->shape[t->ndim - 1] <= 0)
        return ap_fail("%s: %s: expected shape (..., N) with N > 0, found %s", op, arg,
                       ap_shape_str(t, s, sizeof s));
    *N = t->shape[t->ndim - 1];
    return AP_OK;
}

int ap_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "softmax_forward";
    int64_t N;
    AP_TRY(last_axis(op, "in", in, &N));
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, softmax_forward, out, in);
}

int ap_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                        const ap_tensor *out) {
    const char *op = "softmax_backward";
    int64_t N;
    AP_TRY(last_axis(op, "out", out, &N));
    AP_TRY(ap_expect_same(op, "out", out, "dout", dout));
    AP_TRY(ap_expect_same(op, "out", out, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, "out", out, NULL));
    return AP_DISPATCH(ctx, softmax_backward, din, dout, out);
}
