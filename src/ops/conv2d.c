/* conv2d.c: argument checks and dispatch of 2-D convolution; the CPU bodies
 * (packed GEMM, Winograd, im2col + BLAS) are in cpu/conv2d*.c. The weight
 * may be f32, bf16 or f16 (frozen: no dweight unless f32). */
#include "conv2d.h"

#include <limits.h>
#include <stdio.h>

#include "backend.h"
#include "core/err.h"

/* Output geometry of a valid call. */
typedef struct {
    int64_t B, O, Ho, Wo, K; /* K = C * kh * kw */
} conv_geom;

/* Re-records the current error with the shapes of in and w appended, so every
 * shape error names both. */
static int fail_ctx(const ap_tensor *in, const ap_tensor *w, int stride, int pad) {
    char msg[1024], si[160] = "(none)", sw[160] = "(none)";
    snprintf(msg, sizeof msg, "%s", ap_errmsg());
    if (in && in->data) ap_shape_str(in, si, sizeof si);
    if (w && w->data) ap_shape_str(w, sw, sizeof sw);
    return ap_fail("%s (in %s, weight %s, stride %d, pad %d)", msg, si, sw, stride,
                   pad);
}

/* Validates in, w, stride and pad and fills d. */
static int check_geometry(const char *op, conv_geom *d, const ap_tensor *in,
                          const ap_tensor *w, int stride, int pad) {
    if (ap_expect4(op, "in", in, -1, -1, -1, -1) ||
        ap_expect_dt(op, "weight", w, AP_WEIGHT_DTYPES, 4,
                     (int64_t[]){-1, in->shape[1], -1, -1}))
        return fail_ctx(in, w, stride, pad);
    if (stride < 1 || pad < 0) {
        ap_fail("%s: stride must be >= 1 and pad >= 0, found stride %d, pad %d", op,
                stride, pad);
        return fail_ctx(in, w, stride, pad);
    }
    int64_t H = in->shape[2], W = in->shape[3], kh = w->shape[2], kw = w->shape[3];
    if (H + 2 * pad < kh || W + 2 * pad < kw) {
        ap_fail("%s: kernel %lldx%lld larger than the padded input %lldx%lld", op,
                (long long)kh, (long long)kw, (long long)(H + 2 * pad),
                (long long)(W + 2 * pad));
        return fail_ctx(in, w, stride, pad);
    }
    if (ap_numel(in) / in->shape[0] > INT_MAX || ap_numel(w) > INT_MAX ||
        H + 2 * pad > INT_MAX / 2 || W + 2 * pad > INT_MAX / 2) {
        ap_fail("%s: tensors too large for 32-bit GEMM indexing", op);
        return fail_ctx(in, w, stride, pad);
    }
    d->B = in->shape[0], d->O = w->shape[0], d->K = in->shape[1] * kh * kw;
    d->Ho = (H + 2 * pad - kh) / stride + 1, d->Wo = (W + 2 * pad - kw) / stride + 1;
    if ((int64_t)d->K * d->Ho * d->Wo > INT_MAX ||
        (int64_t)d->O * d->Ho * d->Wo > INT_MAX) {
        ap_fail("%s: tensors too large for 32-bit GEMM indexing", op);
        return fail_ctx(in, w, stride, pad);
    }
    return AP_OK;
}

/* Checks an output-side tensor (out, dout) of shape (B, O, Ho, Wo). */
static int check_out(const char *op, const char *arg, const conv_geom *d,
                     const ap_tensor *t, const ap_tensor *in, const ap_tensor *w,
                     int stride, int pad) {
    if (ap_expect4(op, arg, t, d->B, d->O, d->Ho, d->Wo))
        return fail_ctx(in, w, stride, pad);
    return AP_OK;
}

int ap_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b, int stride, int pad) {
    static const char *op = "conv2d_forward";
    conv_geom d;
    AP_TRY(check_geometry(op, &d, in, w, stride, pad));
    AP_TRY(check_out(op, "out", &d, out, in, w, stride, pad));
    if (ap_present(b) && ap_expect1(op, "bias", b, d.O)) return fail_ctx(in, w, stride, pad);
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, "bias", b, NULL));
    AP_TRY(ap_expect_weight_on(ctx, op, w, NULL));
    return AP_DISPATCH(ctx, conv2d_forward, out, in, w, b, stride, pad);
}

int ap_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w, int stride,
                       int pad) {
    static const char *op = "conv2d_backward";
    /* in is read only for dweight; without dweight a shape-only descriptor
     * (data NULL) is enough, so frozen layers need not keep their inputs. */
    static float shape_only_marker;
    ap_tensor in_shape;
    if (!ap_present(dw) && in && !in->data) {
        in_shape = *in;
        in_shape.data = &shape_only_marker;
        in = &in_shape;
    }
    conv_geom d;
    AP_TRY(check_geometry(op, &d, in, w, stride, pad));
    AP_TRY(check_out(op, "dout", &d, dout, in, w, stride, pad));
    if (ap_present(din) && ap_expect_same(op, "in", in, "din", din))
        return fail_ctx(in, w, stride, pad);
    AP_TRY(ap_expect_weight_on(ctx, op, w, dw));
    if (ap_present(dw) && ap_expect_same(op, "weight", w, "dweight", dw))
        return fail_ctx(in, w, stride, pad);
    if (ap_present(db) && ap_expect1(op, "dbias", db, d.O)) return fail_ctx(in, w, stride, pad);
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dweight", dw, "dbias", db, "dout", dout, "in",
                        in->data == &shape_only_marker ? NULL : in, NULL));
    return AP_DISPATCH(ctx, conv2d_backward, din, dw, db, dout, in, w, stride, pad);
}
