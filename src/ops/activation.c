/* activation.c: pointwise activations (CPU reference): SiLU, GELU (erf, tanh),
 * QuickGELU, GEGLU.
 *
 * Accumulation rule: activation grads = (there are no parameters).
 * Formulas follow PyTorch's CPU kernels (GeluKernel, x * sigmoid(1.702 x)) in
 * float; at large |x| every derivative tends to 0 or 1 without NaN. */
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

/* ---- GELU ---------------------------------------------------------------- */

#define GELU_SQRT1_2 0.70710678118654752f    /* 1 / sqrt(2) */
#define GELU_INV_SQRT_2PI 0.39894228040143268f /* 1 / sqrt(2 pi) */
#define GELU_K 0.79788456080286536f          /* sqrt(2 / pi) */
#define GELU_C 0.044715f
#define QUICK_GELU_A 1.702f

static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * GELU_SQRT1_2)); }

static inline float gelu_erf_grad(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * GELU_SQRT1_2));
    return cdf + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
}

static inline float gelu_tanh(float x) {
    const float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    return 0.5f * x * (1.0f + t);
}

static inline float gelu_tanh_grad(float x) {
    const float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    const float sech2 = 1.0f - t * t;
    /* sech2 is exactly 0 where x^2 may overflow: keep 0 * inf out. */
    const float inner =
        sech2 == 0.0f ? 0.0f : 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    return 0.5f * (1.0f + t) + inner;
}

int ap_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                    int tanh_approx) {
    AP_TRY(ap_expect_same("gelu_forward", "in", in, "out", out));
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
    if (tanh_approx) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh(x[i]);
    } else {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = gelu_erf(x[i]);
    }
    return AP_OK;
}

int ap_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in, int tanh_approx) {
    AP_TRY(ap_expect_same("gelu_backward", "in", in, "dout", dout));
    AP_TRY(ap_expect_same("gelu_backward", "in", in, "din", din));
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
    if (tanh_approx) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
    } else {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_erf_grad(x[i]);
    }
    return AP_OK;
}

/* ---- QuickGELU ----------------------------------------------------------- */

int ap_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_TRY(ap_expect_same("quick_gelu_forward", "in", in, "out", out));
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-QUICK_GELU_A * x[i]));
    return AP_OK;
}

int ap_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                           const ap_tensor *in) {
    AP_TRY(ap_expect_same("quick_gelu_backward", "in", in, "dout", dout));
    AP_TRY(ap_expect_same("quick_gelu_backward", "in", in, "din", din));
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-QUICK_GELU_A * x[i]));
        dx[i] = dy[i] * (s + x[i] * (QUICK_GELU_A * s * (1.0f - s))); /* no inf * 0 */
    }
    return AP_OK;
}

/* ---- GEGLU --------------------------------------------------------------- */

/* Checks in (..., 2N) and that half has shape (..., N); returns N. */
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

int ap_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    int64_t N;
    AP_TRY(geglu_dims("geglu_forward", in, "out", out, &N));
    const int64_t rows = ap_numel(out) / N;
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * N, *gate = h + N;
        float *yr = y + r * N;
        for (int64_t j = 0; j < N; j++) yr[j] = h[j] * gelu_erf(gate[j]);
    }
    return AP_OK;
}

int ap_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                      const ap_tensor *in) {
    int64_t N;
    AP_TRY(geglu_dims("geglu_backward", in, "dout", dout, &N));
    AP_TRY(ap_expect_same("geglu_backward", "in", in, "din", din));
    const int64_t rows = ap_numel(dout) / N;
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * N, *gate = h + N, *dyr = dy + r * N;
        float *dh = dx + r * 2 * N, *dgate = dh + N;
        for (int64_t j = 0; j < N; j++) { /* read both before writing: din may alias in */
            const float hv = h[j], gv = gate[j];
            dh[j] = dyr[j] * gelu_erf(gv);
            dgate[j] = dyr[j] * hv * gelu_erf_grad(gv);
        }
    }
    return AP_OK;
}
