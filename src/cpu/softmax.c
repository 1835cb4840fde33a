/* softmax.c: softmax over the last axis (CPU reference).
 *
 * Accumulation rule: activation grads = (there are no parameters).
 * Forward subtracts the row max before exp (no overflow for any finite input;
 * a row of -inf except one entry works too), sums in double, and scales by the
 * reciprocal. exp runs as a branch-free polynomial that GCC vectorises
 * (libm expf does not), within 1 ulp of exp on [-87, 0]. Backward:
 * din = out * (dout - sum_j dout_j * out_j), the dot in double. Rows are
 * independent: parallel over rows.
 */
#include "cpu.h"
#include "ops/softmax.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "core/isa.h"

/* exp(x) for x <= 0 (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, degree-7
 * polynomial, scale by 2^n through the exponent bits). Values below
 * -87.3 (results under 1.2e-38, where floats turn denormal) give exactly 0,
 * as does -inf; NaN gives NaN. Integer masks instead of ?: keep the loop
 * vectorisable. */
AP_ISA_INLINE float exp_nonpos(float x) {
    int32_t ix;
    memcpy(&ix, &x, sizeof ix);
    ix &= 0x7fffffff;                /* bits of |x| */
    const int32_t nan = -(ix > 0x7f800000);
    const int32_t lim = 0x42ae999a;  /* 87.3f */
    const int32_t under = ix > lim;  /* also -inf (and NaN, restored below) */
    ix -= (ix - lim) & -under;       /* |x| clamped to 87.3 */
    float a;
    memcpy(&a, &ix, sizeof a);
    const float xc = -a;
    const int32_t n = (int32_t)(xc * 1.44269504088896341f - 0.5f); /* round(x / ln2) */
    const float nf = (float)n;
    const float r = (xc - nf * 0.693359375f) + nf * 2.12194440e-4f; /* x - n ln2 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t sb = (n + 127) << 23; /* 2^n, n in [-126, 0] */
    float sc, e;
    memcpy(&sc, &sb, sizeof sc);
    e = p * sc;
    int32_t eb;
    memcpy(&eb, &e, sizeof eb);
    eb &= under - 1;                            /* 0 where under */
    eb = (eb & ~nan) | (0x7fc00000 & nan);      /* NaN stays NaN */
    memcpy(&e, &eb, sizeof e);
    return e;
}


/* One row: yr = softmax(xr) over N values. */
AP_ISA_INLINE void softmax_row_body(const float *xr, float *yr, int64_t N) {
    float mx = xr[0];
    for (int64_t j = 1; j < N; j++) mx = xr[j] > mx ? xr[j] : mx;
#pragma omp simd
    for (int64_t j = 0; j < N; j++) yr[j] = exp_nonpos(xr[j] - mx);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < N; j++) s += yr[j];
    const float inv = (float)(1.0 / s);
#pragma omp simd
    for (int64_t j = 0; j < N; j++) yr[j] *= inv;
}
AP_ISA_KERNEL(softmax_row, (const float *xr, float *yr, int64_t N), (xr, yr, N));

/* One row of the backward: dxr = yr * (dyr - sum dyr * yr). */
AP_ISA_INLINE void dsoftmax_row_body(const float *yr, const float *dyr, float *dxr, int64_t N) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < N; j++) s += (double)dyr[j] * yr[j];
    const float sf = (float)s;
#pragma omp simd
    for (int64_t j = 0; j < N; j++) dxr[j] = yr[j] * (dyr[j] - sf);
}
AP_ISA_KERNEL(dsoftmax_row, (const float *yr, const float *dyr, float *dxr, int64_t N),
              (yr, dyr, dxr, N));

int ap_cpu_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    int64_t N;
    N = in->shape[in->ndim - 1]; /* validated in ops/softmax.c */
    const int64_t rows = ap_numel(in) / N;
    const float *x = in->data;
    float *y = out->data;
    void (*const row)(const float *, float *, int64_t) = ap_isa_pick(ctx, softmax_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 16384)
    for (int64_t r = 0; r < rows; r++) row(x + r * N, y + r * N, N);
    return AP_OK;
}

int ap_cpu_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                        const ap_tensor *out) {
    int64_t N;
    N = out->shape[out->ndim - 1];
    const int64_t rows = ap_numel(out) / N;
    const float *y = out->data, *dy = dout->data;
    float *dx = din->data;
    void (*const row)(const float *, const float *, float *, int64_t) =
        ap_isa_pick(ctx, dsoftmax_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * N > 16384)
    for (int64_t r = 0; r < rows; r++) row(y + r * N, dy + r * N, dx + r * N, N);
    return AP_OK;
}
