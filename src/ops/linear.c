/* linear.c: argument checks and dispatch of the fully connected layer; the
 * CPU body (one GEMM each way) is in cpu/linear.c. The weight may be f32,
 * bf16 or f16 (frozen: no dweight unless f32); everything else is f32. */
#include "linear.h"

#include <limits.h>
#include <stdio.h>

#include "backend.h"
#include "core/err.h"

static int fail_ctx(const ap_tensor *in, const ap_tensor *w) {
    char msg[1024], si[160] = "(none)", sw[160] = "(none)";
    snprintf(msg, sizeof msg, "%s", ap_errmsg());
    if (in && in->data) ap_shape_str(in, si, sizeof si);
    if (w && w->data) ap_shape_str(w, sw, sizeof sw);
    return ap_fail("%s (in %s, weight %s)", msg, si, sw);
}

static int check_in_w(const char *op, const ap_tensor *in, const ap_tensor *w,
                      int *rows, int *I, int *O) {
    if (!in || !in->data || in->ndim < 1 || in->ndim > AP_MAX_DIMS) {
        char si[160] = "(none)";
        if (in && in->data) ap_shape_str(in, si, sizeof si);
        ap_fail("%s: in: expected a tensor of shape (..., I), found %s", op, si);
        return fail_ctx(in, w);
    }
    int64_t nin = in->shape[in->ndim - 1];
    static const int64_t any[AP_MAX_DIMS] = {-1, -1, -1, -1, -1, -1};
    if (ap_expect(op, "in", in, in->ndim, any) ||
        ap_expect_dt(op, "weight", w, AP_WEIGHT_DTYPES, 2, (int64_t[]){-1, nin}))
        return fail_ctx(in, w);
    int64_t nrows = ap_numel(in) / nin;
    if (ap_numel(in) > INT_MAX || ap_numel(w) > INT_MAX ||
        nrows * w->shape[0] > INT_MAX) {
        ap_fail("%s: tensors too large for 32-bit GEMM indexing", op);
        return fail_ctx(in, w);
    }
    *rows = (int)nrows, *I = (int)nin, *O = (int)w->shape[0];
    return AP_OK;
}

static int check_rows(const char *op, const char *arg, const ap_tensor *t,
                      const ap_tensor *in, const ap_tensor *w, int O) {
    int64_t want[AP_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++) want[i] = in->shape[i];
    want[in->ndim - 1] = O;
    if (ap_expect(op, arg, t, in->ndim, want)) return fail_ctx(in, w);
    return AP_OK;
}

int ap_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b) {
    static const char *op = "linear_forward";
    int rows, I, O;
    AP_TRY(check_in_w(op, in, w, &rows, &I, &O));
    AP_TRY(check_rows(op, "out", out, in, w, O));
    if (ap_present(b) && ap_expect1(op, "bias", b, O)) return fail_ctx(in, w);
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, "bias", b, NULL));
    AP_TRY(ap_expect_weight_on(ctx, op, w, NULL));
    return AP_DISPATCH(ctx, linear_forward, out, in, w, b);
}

int ap_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w) {
    static const char *op = "linear_backward";
    int rows, I, O;
    AP_TRY(check_in_w(op, in, w, &rows, &I, &O));
    AP_TRY(check_rows(op, "dout", dout, in, w, O));
    if (ap_present(din) && ap_expect_same(op, "in", in, "din", din)) return fail_ctx(in, w);
    AP_TRY(ap_expect_weight_on(ctx, op, w, dw));
    if (ap_present(dw) && ap_expect_same(op, "weight", w, "dweight", dw)) return fail_ctx(in, w);
    if (ap_present(db) && ap_expect1(op, "dbias", db, O)) return fail_ctx(in, w);
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dweight", dw, "dbias", db, "dout", dout, "in", in,
                        NULL));
    return AP_DISPATCH(ctx, linear_backward, din, dw, db, dout, in, w);
}
