/* softmax.c: softmax over the last axis (CPU reference).
 *
 * Accumulation rule: activation grads = (there are no parameters).
 * Forward subtracts the row max before exp (no overflow for any finite input;
 * a row of -inf except one entry works too), sums in double, and scales by the
 * reciprocal. Backward: din = out * (dout - sum_j dout_j * out_j), the dot in
 * double. Rows are independent: parallel over rows.
 */
#include "softmax.h"

#include <math.h>

#include "core/err.h"

/* Fails unless t has at least one dim and a non-empty last axis; returns N. */
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
    int64_t N;
    AP_TRY(last_axis("softmax_forward", "in", in, &N));
    AP_TRY(ap_expect_same("softmax_forward", "in", in, "out", out));
    const int64_t rows = ap_numel(in) / N;
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * N;
        float *yr = y + r * N;
        float mx = xr[0];
        for (int64_t j = 1; j < N; j++) mx = xr[j] > mx ? xr[j] : mx;
        double s = 0;
        for (int64_t j = 0; j < N; j++) {
            const float e = expf(xr[j] - mx);
            yr[j] = e;
            s += e;
        }
        const float inv = (float)(1.0 / s);
#pragma omp simd
        for (int64_t j = 0; j < N; j++) yr[j] *= inv;
    }
    return AP_OK;
}

int ap_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                        const ap_tensor *out) {
    int64_t N;
    AP_TRY(last_axis("softmax_backward", "out", out, &N));
    AP_TRY(ap_expect_same("softmax_backward", "out", out, "dout", dout));
    AP_TRY(ap_expect_same("softmax_backward", "out", out, "din", din));
    const int64_t rows = ap_numel(out) / N;
    const float *y = out->data, *dy = dout->data;
    float *dx = din->data;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * N, *dyr = dy + r * N;
        float *dxr = dx + r * N;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < N; j++) s += (double)dyr[j] * yr[j];
        const float sf = (float)s;
#pragma omp simd
        for (int64_t j = 0; j < N; j++) dxr[j] = yr[j] * (dyr[j] - sf);
    }
    return AP_OK;
}
