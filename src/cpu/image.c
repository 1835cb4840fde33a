/* cpu/image.c: pixel-range clamp and per-channel normalisation (CPU bodies
 * of ops/image.h), moved from models/clip_common.c unchanged. Every
 * element is one expression, so the thread split does not change bits. */
#include "cpu/image.h"

#include "core/err.h"

int ap_cpu_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x) {
    const float *a = x->data;
    float *o = out->data;
    const int64_t n = ap_numel(x);
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = a[i] / 2.0f + 0.5f;
        o[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); /* NaN stays NaN, as torch.clamp */
    }
    return AP_OK;
}

int ap_cpu_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                  const ap_tensor *x) {
    const float *a = x->data, *g = dout->data;
    float *d = dx->data;
    const int64_t n = ap_numel(x);
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = a[i] / 2.0f + 0.5f;
        d[i] = (v >= 0.0f && v <= 1.0f) ? g[i] / 2.0f : 0.0f;
    }
    return AP_OK;
}

int ap_cpu_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                     const float *mean, const float *std) {
    const int64_t B = x->shape[0], C = x->shape[1], plane = x->shape[2] * x->shape[3];
#pragma omp parallel for collapse(2) num_threads(ctx->n_threads) if (B * C * plane > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *q = x->data + (b * C + c) * plane;
            float *o = out->data + (b * C + c) * plane;
            for (int64_t i = 0; i < plane; i++) o[i] = (q[i] - mean[c]) / std[c];
        }
    return AP_OK;
}

int ap_cpu_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                      const float *std) {
    const int64_t B = dout->shape[0], C = dout->shape[1], plane = dout->shape[2] * dout->shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *s = dout->data + (b * C + c) * plane;
            float *d = dx->data + (b * C + c) * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i] / std[c];
        }
    return AP_OK;
}
