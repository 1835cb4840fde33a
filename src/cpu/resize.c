/* resize.c: nearest 2x upsample and bilinear resize (CPU reference).
 *
 * Accumulation rule: no parameters; activation grads (din) are overwritten.
 *
 * Bilinear arithmetic, matched bit for bit against PyTorch 1.13's CPU
 * upsample_bilinear2d (align_corners=False, size given, no scale_factor):
 *   s      = (float)in / (float)out                          (float)
 *   src(d) = max(0, (double)s * (d + 0.5) - 0.5)            (double: acc_type)
 *   i0 = (int)src, i1 = i0 + (i0 < in - 1), l1 = (float)(src - i0), l0 = 1 - l1
 *   forward (NCHW kernel; GCC contracted it to FMA in the AVX2 build):
 *     t0 = fmaf(x00, lw0, x01*lw1), t1 = fmaf(x10, lw0, x11*lw1),
 *     out = fmaf(t0, lh0, t1*lh1)
 *   backward: per output pixel in row-major order,
 *     din[..] = fmaf(lh_a*lw_b, g, din[..]) for ab = 00, 01, 10, 11.
 * When in == out on an axis, the taps are (d, d) with weights (1, 0).
 * One PyTorch exception: an input with C == 1 is also channels-last
 * contiguous and PyTorch then runs its channels-last kernel, whose forward
 * rounding differs (<= 1 ulp); the RGB images AlignProp resizes (C = 3) take
 * the NCHW kernel reproduced here.
 * Threads: the forward splits output rows; the backward splits whole
 * (b, c) planes so each din element is written by one thread in one order.
 */
#include "cpu.h"
#include "ops/resize.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "core/isa.h"

typedef struct {
    int64_t i0, i1; /* source taps along the axis */
    float l0, l1;   /* their weights */
} axis_tap;

size_t ap_resize_bilinear_scratch_bytes(int64_t Ho, int64_t Wo) {
    return ap_align64((size_t)Ho * sizeof(axis_tap)) +
           ap_align64((size_t)Wo * sizeof(axis_tap));
}

static void compute_taps(axis_tap *taps, int64_t in, int64_t out) {
    float s = (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        axis_tap *t = &taps[d];
        if (in == out) {
            t->i0 = t->i1 = d;
            t->l0 = 1.0f;
            t->l1 = 0.0f;
            continue;
        }
        double src = (double)s * ((double)d + 0.5) - 0.5;
        if (src < 0) src = 0;
        t->i0 = (int64_t)src;
        t->i1 = t->i0 + (t->i0 < in - 1 ? 1 : 0);
        t->l1 = (float)(src - (double)t->i0);
        t->l0 = 1.0f - t->l1;
    }
}

/* Row taps (Ho) and column taps (Wo) in scratch. */
static int make_taps(ap_ctx *ctx, int64_t H, int64_t W, int64_t Ho, int64_t Wo, axis_tap **th,
                     axis_tap **tw) {
    char *mem = ap_scratch(ctx, ap_resize_bilinear_scratch_bytes(Ho, Wo), "resize_bilinear taps");
    if (!mem) return AP_ERR;
    *th = (axis_tap *)mem;
    *tw = (axis_tap *)(mem + ap_align64((size_t)Ho * sizeof(axis_tap)));
    compute_taps(*th, H, Ho);
    compute_taps(*tw, W, Wo);
    return AP_OK;
}

/* Both tensors 4-D with the same (B, C); the spatial sizes are free. */
static int bilinear_check(const char *op, const char *name_in, const ap_tensor *in,
                          const char *name_out, const ap_tensor *out) {
    return AP_OK;
}

/* Output row r (plane r / Ho, row r % Ho) of the bilinear forward. fmaf is
 * exactly rounded whether the variant has FMA instructions or calls libm, so
 * every variant gives the same bits. */
AP_ISA_INLINE void bilinear_row_body(const float *x, float *y, const axis_tap *th,
                                     const axis_tap *tw, int64_t H, int64_t W, int64_t Ho,
                                     int64_t Wo, int64_t r) {
    const int64_t p = r / Ho, oh = r % Ho;
    const axis_tap h = th[oh];
    const float *x0 = x + (p * H + h.i0) * W, *x1 = x + (p * H + h.i1) * W;
    float *yr = y + r * Wo;
    for (int64_t ow = 0; ow < Wo; ow++) {
        const axis_tap w = tw[ow];
        float t0 = fmaf(x0[w.i0], w.l0, x0[w.i1] * w.l1);
        float t1 = fmaf(x1[w.i0], w.l0, x1[w.i1] * w.l1);
        yr[ow] = fmaf(t0, h.l0, t1 * h.l1);
    }
}
AP_ISA_KERNEL(bilinear_row, (const float *x, float *y, const axis_tap *th, const axis_tap *tw,
                             int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t r),
              (x, y, th, tw, H, W, Ho, Wo, r));

/* Plane p of the bilinear backward: din = sum of the taps' shares of dout. */
AP_ISA_INLINE void dbilinear_plane_body(const float *g, float *dx, const axis_tap *th,
                                        const axis_tap *tw, int64_t H, int64_t W, int64_t Ho,
                                        int64_t Wo, int64_t p) {
    float *d = dx + p * H * W;
    const float *gp = g + p * Ho * Wo;
    memset(d, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oh = 0; oh < Ho; oh++) {
        const axis_tap h = th[oh];
        float *d0 = d + h.i0 * W, *d1 = d + h.i1 * W;
        for (int64_t ow = 0; ow < Wo; ow++) {
            const axis_tap w = tw[ow];
            float gv = gp[oh * Wo + ow];
            d0[w.i0] = fmaf(h.l0 * w.l0, gv, d0[w.i0]);
            d0[w.i1] = fmaf(h.l0 * w.l1, gv, d0[w.i1]);
            d1[w.i0] = fmaf(h.l1 * w.l0, gv, d1[w.i0]);
            d1[w.i1] = fmaf(h.l1 * w.l1, gv, d1[w.i1]);
        }
    }
}
AP_ISA_KERNEL(dbilinear_plane, (const float *g, float *dx, const axis_tap *th,
                                const axis_tap *tw, int64_t H, int64_t W, int64_t Ho,
                                int64_t Wo, int64_t p),
              (g, dx, th, tw, H, W, Ho, Wo, p));

/* Input row r of the nearest 2x upsample: two output rows. */
AP_ISA_INLINE void up2_row_body(const float *x, float *y, int64_t W, int64_t r) {
    const float *xr = x + r * W;
    float *y0 = y + r * 4 * W, *y1 = y0 + 2 * W;
    for (int64_t j = 0; j < W; j++) y0[2 * j] = y0[2 * j + 1] = xr[j];
    memcpy(y1, y0, (size_t)(2 * W) * sizeof(float));
}
AP_ISA_KERNEL(up2_row, (const float *x, float *y, int64_t W, int64_t r), (x, y, W, r));

/* Its backward: PyTorch's order, children visited row-major, added one at a time. */
AP_ISA_INLINE void dup2_row_body(const float *g, float *dx, int64_t W, int64_t r) {
    const float *g0 = g + r * 4 * W, *g1 = g0 + 2 * W;
    float *d = dx + r * W;
    for (int64_t j = 0; j < W; j++) d[j] = ((g0[2 * j] + g0[2 * j + 1]) + g1[2 * j]) + g1[2 * j + 1];
}
AP_ISA_KERNEL(dup2_row, (const float *g, float *dx, int64_t W, int64_t r), (g, dx, W, r));

size_t ap_cpu_resize_bilinear_forward_scratch(ap_ctx *ctx, const ap_tensor *out,
                                              const ap_tensor *in) {
    return ap_resize_bilinear_scratch_bytes(out->shape[2], out->shape[3]);
}

size_t ap_cpu_resize_bilinear_backward_scratch(ap_ctx *ctx, const ap_tensor *din,
                                               const ap_tensor *dout) {
    return ap_resize_bilinear_scratch_bytes(dout->shape[2], dout->shape[3]);
}

int ap_cpu_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "resize_bilinear_forward";
    AP_TRY(bilinear_check(op, "in", in, "out", out));
    int64_t P = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    int64_t Ho = out->shape[2], Wo = out->shape[3];
    axis_tap *th, *tw;
    AP_TRY(make_taps(ctx, H, W, Ho, Wo, &th, &tw));
    const float *x = in->data;
    float *y = out->data;
    int64_t rows = P * Ho;
    void (*const k)(const float *, float *, const axis_tap *, const axis_tap *, int64_t,
                    int64_t, int64_t, int64_t, int64_t) = ap_isa_pick(ctx, bilinear_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * Wo > 16384)
    for (int64_t r = 0; r < rows; r++) k(x, y, th, tw, H, W, Ho, Wo, r);
    return AP_OK;
}

int ap_cpu_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    const char *op = "resize_bilinear_backward";
    AP_TRY(bilinear_check(op, "din", din, "dout", dout));
    int64_t P = din->shape[0] * din->shape[1], H = din->shape[2], W = din->shape[3];
    int64_t Ho = dout->shape[2], Wo = dout->shape[3];
    axis_tap *th, *tw;
    AP_TRY(make_taps(ctx, H, W, Ho, Wo, &th, &tw));
    const float *g = dout->data;
    float *dx = din->data;
    void (*const k)(const float *, float *, const axis_tap *, const axis_tap *, int64_t,
                    int64_t, int64_t, int64_t, int64_t) = ap_isa_pick(ctx, dbilinear_plane);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (P * Ho * Wo > 16384)
    for (int64_t p = 0; p < P; p++) k(g, dx, th, tw, H, W, Ho, Wo, p);
    return AP_OK;
}

int ap_cpu_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    int64_t B = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    const float *x = in->data;
    float *y = out->data;
    int64_t rows = B * C * H; /* input rows; each writes two output rows */
    void (*const k)(const float *, float *, int64_t, int64_t) = ap_isa_pick(ctx, up2_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * W > 32768)
    for (int64_t r = 0; r < rows; r++) k(x, y, W, r);
    return AP_OK;
}

int ap_cpu_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    int64_t B = din->shape[0], C = din->shape[1], H = din->shape[2], W = din->shape[3];
    const float *g = dout->data;
    float *dx = din->data;
    int64_t rows = B * C * H;
    void (*const k)(const float *, float *, int64_t, int64_t) = ap_isa_pick(ctx, dup2_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * W > 32768)
    for (int64_t r = 0; r < rows; r++) k(g, dx, W, r);
    return AP_OK;
}
