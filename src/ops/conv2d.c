/* conv2d.c: 2-D convolution as im2col + GEMM (CPU reference).
 *
 * Accumulation rule: parameter grads (dw, db) +=, activation grads (din) =.
 *
 * Per image b and chunk of output rows [i0, i1) (n = (i1 - i0) * Wo columns):
 *   col (C*kh*kw, n)   = im2col(in_b)              row r = (c, u, v)
 *   forward:  out_b[:, i0*Wo : i1*Wo]  = w (O, CKK) . col  (+ bias, pre-filled)
 *   backward: dw (O, CKK)            += dout_b[:, chunk] . col^T
 *             col                     = w^T . dout_b[:, chunk];  din_b += col2im(col)
 * col2im adds every column entry back to the input pixel it was read from,
 * so overlapping windows (kernel > stride) are summed correctly. The column
 * buffer is reused for the gradient columns after dw consumed it.
 * 1x1 kernels with stride 1 and pad 0 skip im2col: col is in_b itself.
 * Threads: im2col over col rows, col2im over input channels, db over O;
 * GEMMs split by ap_gemm.
 */
#include "conv2d.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "core/err.h"

typedef struct {
    int B, C, H, W;  /* input (B, C, H, W) */
    int O, kh, kw;   /* weight (O, C, kh, kw) */
    int s, p;        /* stride, pad */
    int Ho, Wo;      /* output (B, O, Ho, Wo) */
    int K;           /* C * kh * kw: GEMM depth, rows of col */
    int rows;        /* output rows per chunk */
    int direct;      /* 1x1 / s1 / p0: no im2col */
} conv_dims;

/* Output rows per chunk: the fewest equal chunks whose columns fit the budget. */
static int chunk_rows(int K, int Ho, int Wo) {
    size_t per_row = (size_t)K * (size_t)Wo;
    size_t max_rows = AP_CONV2D_COL_FLOATS / (per_row ? per_row : 1);
    if (max_rows < 1) max_rows = 1;
    if (max_rows >= (size_t)Ho) return Ho;
    int nchunks = (int)(((size_t)Ho + max_rows - 1) / max_rows);
    return (Ho + nchunks - 1) / nchunks;
}

static void dims_init(conv_dims *d, int B, int C, int H, int W, int O, int kh,
                      int kw, int stride, int pad) {
    d->B = B, d->C = C, d->H = H, d->W = W;
    d->O = O, d->kh = kh, d->kw = kw, d->s = stride, d->p = pad;
    d->Ho = (H + 2 * pad - kh) / stride + 1;
    d->Wo = (W + 2 * pad - kw) / stride + 1;
    d->K = C * kh * kw;
    d->direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    d->rows = d->direct ? d->Ho : chunk_rows(d->K, d->Ho, d->Wo);
}

size_t ap_conv2d_scratch_bytes(int B, int C, int H, int W, int O, int kh, int kw,
                               int stride, int pad) {
    if (B < 1 || C < 1 || H < 1 || W < 1 || O < 1 || kh < 1 || kw < 1 ||
        stride < 1 || pad < 0 || H + 2 * pad < kh || W + 2 * pad < kw)
        return 0;
    conv_dims d;
    dims_init(&d, B, C, H, W, O, kh, kw, stride, pad);
    if (d.direct) return 0;
    return (size_t)d.K * (size_t)d.rows * (size_t)d.Wo * sizeof(float);
}

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
static int check_geometry(const char *op, conv_dims *d, const ap_tensor *in,
                          const ap_tensor *w, int stride, int pad) {
    if (ap_expect4(op, "in", in, -1, -1, -1, -1) ||
        ap_expect4(op, "weight", w, -1, in->shape[1], -1, -1))
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
    dims_init(d, (int)in->shape[0], (int)in->shape[1], (int)H, (int)W,
              (int)w->shape[0], (int)kh, (int)kw, stride, pad);
    if ((int64_t)d->K * d->Ho * d->Wo > INT_MAX ||
        (int64_t)d->O * d->Ho * d->Wo > INT_MAX) {
        ap_fail("%s: tensors too large for 32-bit GEMM indexing", op);
        return fail_ctx(in, w, stride, pad);
    }
    return AP_OK;
}

/* Checks an output-side tensor (out, dout) of shape (B, O, Ho, Wo). */
static int check_out(const char *op, const char *arg, const conv_dims *d,
                     const ap_tensor *t, const ap_tensor *in, const ap_tensor *w) {
    if (ap_expect4(op, arg, t, d->B, d->O, d->Ho, d->Wo))
        return fail_ctx(in, w, d->s, d->p);
    return AP_OK;
}

/* col[r, (i - i0)*Wo + j] = in_b[c, i*s + u - p, j*s + v - p] (0 outside),
 * r = (c*kh + u)*kw + v, for output rows i in [i0, i1). */
static void im2col(const ap_ctx *ctx, const conv_dims *d, const float *x, int i0,
                   int i1, float *col) {
    const int Wo = d->Wo, s = d->s, p = d->p, W = d->W, H = d->H;
    const int n = (i1 - i0) * Wo;
    /* Output columns j whose input column x = j*s + v - p lies in [0, W). */
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d->K > 1)
    for (int r = 0; r < d->K; r++) {
        int v = r % d->kw, u = (r / d->kw) % d->kh, c = r / (d->kw * d->kh);
        int jlo = p - v > 0 ? (p - v + s - 1) / s : 0;
        int jhi = (W - 1 + p - v) / s + 1; /* exclusive */
        if (W - 1 + p - v < 0) jhi = 0;
        if (jhi > Wo) jhi = Wo;
        if (jlo > jhi) jlo = jhi;
        const float *xc = x + (size_t)c * H * W;
        float *dst = col + (size_t)r * n;
        for (int i = i0; i < i1; i++, dst += Wo) {
            int y = i * s + u - p;
            if (y < 0 || y >= H) {
                memset(dst, 0, sizeof(float) * (size_t)Wo);
                continue;
            }
            const float *src = xc + (size_t)y * W; /* src[j*s + v - p] */
            for (int j = 0; j < jlo; j++) dst[j] = 0.0f;
            if (s == 1) {
                if (jhi > jlo)
                    memcpy(dst + jlo, src + jlo + v - p,
                           sizeof(float) * (size_t)(jhi - jlo));
            } else {
                for (int j = jlo; j < jhi; j++) dst[j] = src[j * s + v - p];
            }
            for (int j = jhi; j < Wo; j++) dst[j] = 0.0f;
        }
    }
}

/* dx_b[c, i*s + u - p, j*s + v - p] += col[r, (i - i0)*Wo + j] (inside only). */
static void col2im(const ap_ctx *ctx, const conv_dims *d, const float *col, int i0,
                   int i1, float *dx) {
    const int Wo = d->Wo, s = d->s, p = d->p, W = d->W, H = d->H;
    const int n = (i1 - i0) * Wo, kk = d->kh * d->kw;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d->C > 1)
    for (int c = 0; c < d->C; c++) {
        float *xc = dx + (size_t)c * H * W;
        for (int uv = 0; uv < kk; uv++) {
            int u = uv / d->kw, v = uv % d->kw;
            int jlo = p - v > 0 ? (p - v + s - 1) / s : 0;
            int jhi = (W - 1 + p - v) / s + 1;
            if (W - 1 + p - v < 0) jhi = 0;
            if (jhi > Wo) jhi = Wo;
            const float *src = col + (size_t)(c * kk + uv) * n;
            for (int i = i0; i < i1; i++, src += Wo) {
                int y = i * s + u - p;
                if (y < 0 || y >= H) continue;
                float *dst = xc + (size_t)y * W; /* dst[j*s + v - p] */
                if (s == 1 && jhi > jlo) {
                    float *dr = dst + jlo + v - p;
                    const float *sr = src + jlo;
                    for (int j = 0; j < jhi - jlo; j++) dr[j] += sr[j];
                } else if (s > 1) {
                    for (int j = jlo; j < jhi; j++) dst[j * s + v - p] += src[j];
                }
            }
        }
    }
}

int ap_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b, int stride, int pad) {
    static const char *op = "conv2d_forward";
    conv_dims d;
    AP_TRY(check_geometry(op, &d, in, w, stride, pad));
    AP_TRY(check_out(op, "out", &d, out, in, w));
    int bias = ap_present(b);
    if (bias && ap_expect1(op, "bias", b, d.O)) return fail_ctx(in, w, stride, pad);

    const int HW = d.H * d.W, HoWo = d.Ho * d.Wo;
    float *col = NULL;
    if (!d.direct) {
        col = ap_scratch(ctx, (size_t)d.K * d.rows * d.Wo * sizeof(float),
                         "conv2d_forward columns");
        if (!col) return AP_ERR;
    }
    for (int bi = 0; bi < d.B; bi++) {
        const float *x = in->data + (size_t)bi * d.C * HW;
        float *y = out->data + (size_t)bi * d.O * HoWo;
        if (bias) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d.O > 1)
            for (int o = 0; o < d.O; o++) {
                float bo = b->data[o];
                float *yo = y + (size_t)o * HoWo;
                for (int k = 0; k < HoWo; k++) yo[k] = bo;
            }
        }
        float beta = bias ? 1.0f : 0.0f;
        if (d.direct) {
            ap_gemm(ctx, 0, 0, d.O, HW, d.C, 1.0f, w->data, d.C, x, HW, beta, y, HW);
            continue;
        }
        for (int i0 = 0; i0 < d.Ho; i0 += d.rows) {
            int i1 = i0 + d.rows < d.Ho ? i0 + d.rows : d.Ho;
            int n = (i1 - i0) * d.Wo;
            im2col(ctx, &d, x, i0, i1, col);
            ap_gemm(ctx, 0, 0, d.O, n, d.K, 1.0f, w->data, d.K, col, n, beta,
                    y + (size_t)i0 * d.Wo, HoWo);
        }
    }
    return AP_OK;
}

int ap_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w, int stride,
                       int pad) {
    static const char *op = "conv2d_backward";
    conv_dims d;
    AP_TRY(check_geometry(op, &d, in, w, stride, pad));
    AP_TRY(check_out(op, "dout", &d, dout, in, w));
    int want_dx = ap_present(din), want_dw = ap_present(dw), want_db = ap_present(db);
    if (want_dx && ap_expect_same(op, "in", in, "din", din))
        return fail_ctx(in, w, stride, pad);
    if (want_dw && ap_expect_same(op, "weight", w, "dweight", dw))
        return fail_ctx(in, w, stride, pad);
    if (want_db && ap_expect1(op, "dbias", db, d.O)) return fail_ctx(in, w, stride, pad);

    const int HW = d.H * d.W, HoWo = d.Ho * d.Wo;
    if (want_db) {
        /* Double accumulation: B*Ho*Wo terms per channel (8192 in SD). */
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d.O > 1)
        for (int o = 0; o < d.O; o++) {
            double acc = 0.0;
            for (int bi = 0; bi < d.B; bi++) {
                const float *g = dout->data + ((size_t)bi * d.O + o) * HoWo;
                for (int k = 0; k < HoWo; k++) acc += g[k];
            }
            db->data[o] += (float)acc;
        }
    }
    if (!want_dx && !want_dw) return AP_OK;

    float *col = NULL;
    if (!d.direct) {
        col = ap_scratch(ctx, (size_t)d.K * d.rows * d.Wo * sizeof(float),
                         "conv2d_backward columns");
        if (!col) return AP_ERR;
    }
    for (int bi = 0; bi < d.B; bi++) {
        const float *x = in->data + (size_t)bi * d.C * HW;
        const float *g = dout->data + (size_t)bi * d.O * HoWo;
        float *dx = want_dx ? din->data + (size_t)bi * d.C * HW : NULL;
        if (d.direct) {
            if (want_dw)
                ap_gemm(ctx, 0, 1, d.O, d.C, HW, 1.0f, g, HW, x, HW, 1.0f, dw->data,
                        d.C);
            if (want_dx)
                ap_gemm(ctx, 1, 0, d.C, HW, d.O, 1.0f, w->data, d.C, g, HW, 0.0f, dx,
                        HW);
            continue;
        }
        if (want_dx) memset(dx, 0, sizeof(float) * (size_t)d.C * HW);
        for (int i0 = 0; i0 < d.Ho; i0 += d.rows) {
            int i1 = i0 + d.rows < d.Ho ? i0 + d.rows : d.Ho;
            int n = (i1 - i0) * d.Wo;
            const float *gc = g + (size_t)i0 * d.Wo;
            if (want_dw) {
                im2col(ctx, &d, x, i0, i1, col);
                ap_gemm(ctx, 0, 1, d.O, d.K, n, 1.0f, gc, HoWo, col, n, 1.0f,
                        dw->data, d.K);
            }
            if (want_dx) {
                ap_gemm(ctx, 1, 0, d.K, n, d.O, 1.0f, w->data, d.K, gc, HoWo, 0.0f,
                        col, n);
                col2im(ctx, &d, col, i0, i1, dx);
            }
        }
    }
    return AP_OK;
}
