/* activation.c: pointwise activations (CPU reference). */
#include "activation.h"

#include <math.h>

#include "core/err.h"

int ap_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_TRY(ap_expect_same("silu_forward", "in", in, "out", out));
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
    return AP_OK;
}

int ap_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in) {
    AP_TRY(ap_expect_same("silu_backward", "in", in, "dout", dout));
    AP_TRY(ap_expect_same("silu_backward", "in", in, "din", din));
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = dy[i] * (s + x[i] * s * (1.0f - s));
    }
    return AP_OK;
}
