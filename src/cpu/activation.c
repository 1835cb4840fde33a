/* activation.c: pointwise activations (CPU reference): SiLU, GELU (erf, tanh),
 * QuickGELU, GEGLU.
 *
 * Accumulation rule: activation grads = (there are no parameters).
 * Formulas follow PyTorch's CPU kernels (GeluKernel, x * sigmoid(1.702 x)) in
 * float, with PyTorch's vectorised erf (see verf); at large |x| every
 * derivative tends to 0 or 1 without NaN. */
#include "cpu.h"
#include "ops/activation.h"

#include <math.h>

#include "core/err.h"
#include "core/isa.h"
#include "vexp.h"

/* Work is split into fixed chunks of CHUNK elements (threads over chunks);
 * each chunk runs a kernel compiled for the variant in use (core/isa.h). The
 * exponentials are ap_vexp (vexp.h), written so that the loops vectorise
 * (libm's expf and erff are scalar calls): silu, quick_gelu and erf-GELU run
 * 8 or 16 lanes at a time. */
#define CHUNK 8192
#define PAR_CHUNKS(n, body)                                                                 \
    _Pragma("omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 32768)") \
    for (int64_t c0 = 0; c0 < (n); c0 += CHUNK) {                                          \
        const int64_t len = (n) - c0 < CHUNK ? (n) - c0 : CHUNK;                          \
        body;                                                                               \
    }

/* erf(x) as PyTorch's vectorised CPU kernels compute it (Abramowitz-Stegun
 * 7.1.26, |error| <= 1.5e-7): sign(x) (1 - t p(t) exp(-x^2)), t = 1 / (1 +
 * 0.3275911 |x|). */
AP_ISA_INLINE float verf(float x) {
    const float ax = fabsf(x), t = 1.0f / (0.3275911f * ax + 1.0f);
    const float p =
        (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
        0.254829592f;
    return copysignf(1.0f - p * t * ap_vexp(-ax * ax), x);
}

AP_ISA_INLINE void silu_fwd_body(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + ap_vexp(-x[i]));
}
AP_ISA_KERNEL(silu_fwd, (const float *x, float *y, int64_t n), (x, y, n));

AP_ISA_INLINE void silu_bwd_body(const float *x, const float *dy, float *dx, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + ap_vexp(-x[i]));
        dx[i] = dy[i] * (s + x[i] * s * (1.0f - s));
    }
}
AP_ISA_KERNEL(silu_bwd, (const float *x, const float *dy, float *dx, int64_t n), (x, dy, dx, n));

int ap_cpu_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, float *, int64_t) = ap_isa_pick(ctx, silu_fwd);
    PAR_CHUNKS(n, k(x + c0, y + c0, len))
    return AP_OK;
}

int ap_cpu_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in) {
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, const float *, float *, int64_t) = ap_isa_pick(ctx, silu_bwd);
    PAR_CHUNKS(n, k(x + c0, dy + c0, dx + c0, len))
    return AP_OK;
}

/* ---- GELU ---------------------------------------------------------------- */

#define GELU_SQRT1_2 0.70710678118654752f    /* 1 / sqrt(2) */
#define GELU_INV_SQRT_2PI 0.39894228040143268f /* 1 / sqrt(2 pi) */
#define GELU_K 0.79788456080286536f          /* sqrt(2 / pi) */
#define GELU_C 0.044715f
#define QUICK_GELU_A 1.702f

AP_ISA_INLINE float gelu_erf(float x) { return 0.5f * x * (1.0f + verf(x * GELU_SQRT1_2)); }

AP_ISA_INLINE float gelu_erf_grad(float x) {
    const float cdf = 0.5f * (1.0f + verf(x * GELU_SQRT1_2));
    return cdf + x * GELU_INV_SQRT_2PI * ap_vexp(-0.5f * x * x);
}

AP_ISA_INLINE float gelu_tanh(float x) {
    const float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    return 0.5f * x * (1.0f + t);
}

AP_ISA_INLINE float gelu_tanh_grad(float x) {
    const float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    const float sech2 = 1.0f - t * t;
    /* sech2 is exactly 0 where x^2 may overflow: keep 0 * inf out. */
    const float inner =
        sech2 == 0.0f ? 0.0f : 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    return 0.5f * (1.0f + t) + inner;
}

AP_ISA_INLINE void gelu_fwd_body(const float *x, float *y, int64_t n, int tanh_approx) {
    if (tanh_approx) {
        for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh(x[i]);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = gelu_erf(x[i]);
    }
}
AP_ISA_KERNEL(gelu_fwd, (const float *x, float *y, int64_t n, int tanh_approx),
              (x, y, n, tanh_approx));

AP_ISA_INLINE void gelu_bwd_body(const float *x, const float *dy, float *dx, int64_t n,
                                 int tanh_approx) {
    if (tanh_approx) {
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_erf_grad(x[i]);
    }
}
AP_ISA_KERNEL(gelu_bwd, (const float *x, const float *dy, float *dx, int64_t n, int tanh_approx),
              (x, dy, dx, n, tanh_approx));

int ap_cpu_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                    int tanh_approx) {
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, float *, int64_t, int) = ap_isa_pick(ctx, gelu_fwd);
    PAR_CHUNKS(n, k(x + c0, y + c0, len, tanh_approx))
    return AP_OK;
}

int ap_cpu_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in, int tanh_approx) {
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, const float *, float *, int64_t, int) = ap_isa_pick(ctx, gelu_bwd);
    PAR_CHUNKS(n, k(x + c0, dy + c0, dx + c0, len, tanh_approx))
    return AP_OK;
}

/* ---- QuickGELU ----------------------------------------------------------- */

AP_ISA_INLINE void qgelu_fwd_body(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + ap_vexp(-QUICK_GELU_A * x[i]));
}
AP_ISA_KERNEL(qgelu_fwd, (const float *x, float *y, int64_t n), (x, y, n));

AP_ISA_INLINE void qgelu_bwd_body(const float *x, const float *dy, float *dx, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + ap_vexp(-QUICK_GELU_A * x[i]));
        dx[i] = dy[i] * (s + x[i] * (QUICK_GELU_A * s * (1.0f - s))); /* no inf * 0 */
    }
}
AP_ISA_KERNEL(qgelu_bwd, (const float *x, const float *dy, float *dx, int64_t n), (x, dy, dx, n));

int ap_cpu_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const float *x = in->data;
    float *y = out->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, float *, int64_t) = ap_isa_pick(ctx, qgelu_fwd);
    PAR_CHUNKS(n, k(x + c0, y + c0, len))
    return AP_OK;
}

int ap_cpu_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                           const ap_tensor *in) {
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    int64_t n = ap_numel(in);
    void (*const k)(const float *, const float *, float *, int64_t) = ap_isa_pick(ctx, qgelu_bwd);
    PAR_CHUNKS(n, k(x + c0, dy + c0, dx + c0, len))
    return AP_OK;
}

/* ---- GEGLU --------------------------------------------------------------- */

/* N of in (..., 2N) (ops/activation.c validated in and its half). */
static int64_t geglu_half(const ap_tensor *in) { return in->shape[in->ndim - 1] / 2; }

/* One row: y = hidden * gelu(gate), the row's input [hidden | gate]. */
AP_ISA_INLINE void geglu_fwd_row_body(const float *h, float *yr, int64_t N) {
    const float *gate = h + N;
#pragma omp simd
    for (int64_t j = 0; j < N; j++) yr[j] = h[j] * gelu_erf(gate[j]);
}
AP_ISA_KERNEL(geglu_fwd_row, (const float *h, float *yr, int64_t N), (h, yr, N));

/* One row of the backward; din may alias in (each element read before written). */
AP_ISA_INLINE void geglu_bwd_row_body(const float *h, const float *dyr, float *dh, int64_t N) {
    const float *gate = h + N;
    float *dgate = dh + N;
    /* in place, element j is read and written by iteration j alone */
#pragma omp simd
    for (int64_t j = 0; j < N; j++) {
        const float hv = h[j], gv = gate[j];
        dh[j] = dyr[j] * gelu_erf(gv);
        dgate[j] = dyr[j] * hv * gelu_erf_grad(gv);
    }
}
AP_ISA_KERNEL(geglu_bwd_row, (const float *h, const float *dyr, float *dh, int64_t N),
              (h, dyr, dh, N));

int ap_cpu_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    int64_t N;
    N = geglu_half(in);
    const int64_t rows = ap_numel(out) / N;
    const float *x = in->data;
    float *y = out->data;
    void (*const k)(const float *, float *, int64_t) = ap_isa_pick(ctx, geglu_fwd_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 32768)
    for (int64_t r = 0; r < rows; r++) k(x + r * 2 * N, y + r * N, N);
    return AP_OK;
}

int ap_cpu_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                      const ap_tensor *in) {
    int64_t N;
    N = geglu_half(in);
    const int64_t rows = ap_numel(dout) / N;
    const float *x = in->data, *dy = dout->data;
    float *dx = din->data;
    void (*const k)(const float *, const float *, float *, int64_t) = ap_isa_pick(ctx, geglu_bwd_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 32768)
    for (int64_t r = 0; r < rows; r++) k(x + r * 2 * N, dy + r * N, dx + r * 2 * N, N);
    return AP_OK;
}
