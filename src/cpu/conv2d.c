/* conv2d.c: 2-D convolution as im2col + GEMM (CPU reference).
 *
 * Accumulation rule: parameter grads (dw, db) +=, activation grads (din) =.
 *
 * On the AVX2 and AVX-512 kernel variants (core/isa.h; AP_CONV2D_BLAS=1
 * forces the fallback) everything runs on the packed GEMM below, whose B panels are
 * gathered from the image straight into L1 (no column buffer):
 *   forward: out_b (O, Ho*Wo)  = w (O, CKK) . im2col(in_b)
 *   dw:      dw (O, CKK)      += dout_b (O, pixels) . im2col(in_b)^T
 *            (dout packed in pixel chunks; the panel is gathered per pixel)
 *   din, stride 1 and pad <= k - 1: a forward conv of dout with the
 *            (O,C)-transposed, spatially flipped weights, pads k-1-pad:
 *            din_b (C, H*W) = w' (C, O*kh*kw) . im2col'(dout_b)
 *   3x3, stride 1, pad 1 (forward, and so din) with C, O >= 64 and >= 256
 *            output tiles: Winograd F(2x2, 3x3), 16 packed GEMMs over the
 *            transform points (see wg_run; AP_CONV2D_DIRECT=1 turns it off,
 *            AP_CONV2D_WINOGRAD=1 forces it for every 3x3/s1/p1 shape)
 * Otherwise (generic variant, or din of strided convs), per image b and chunk of
 * output rows [i0, i1) (n = (i1 - i0) * Wo columns):
 *   col (C*kh*kw, n)   = im2col(in_b)              row r = (c, u, v)
 *   forward:  out_b[:, i0*Wo : i1*Wo]  = w (O, CKK) . col  (+ bias, pre-filled)
 *   backward: dw (O, CKK)            += dout_b[:, chunk] . col^T
 *             col                     = w^T . dout_b[:, chunk];  din_b += col2im(col)
 * col2im adds every column entry back to the input pixel it was read from,
 * so overlapping windows (kernel > stride) are summed correctly. The column
 * buffer is reused for the gradient columns after dw consumed it.
 * 1x1 kernels with stride 1 and pad 0 skip im2col: col is in_b itself.
 * Threads: packed GEMM over (column block, row group) tasks; im2col over col
 * rows, col2im over input channels, db over O; BLAS GEMMs split by ap_gemm.
 */
#include "cpu.h"
#include "ops/conv2d.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "core/err.h"
#include "core/isa.h"
#include "conv2d_internal.h"
#include "packed_gemm.h"
#include "widen.h"


static size_t packed_a_floats(const conv_dims *d);
static size_t fwd_floats(const conv_dims *d, int pg);
static size_t din_floats(const conv_dims *d, int pg);
static size_t dw_pg_floats(const conv_dims *d);

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
                      int kw, int stride, int ph, int pw) {
    d->B = B, d->C = C, d->H = H, d->W = W;
    d->O = O, d->kh = kh, d->kw = kw, d->s = stride, d->ph = ph, d->pw = pw;
    d->Ho = (H + 2 * ph - kh) / stride + 1;
    d->Wo = (W + 2 * pw - kw) / stride + 1;
    d->K = C * kh * kw;
    d->direct = kh == 1 && kw == 1 && stride == 1 && ph == 0 && pw == 0;
    d->isa = AP_ISA_GENERIC;
    d->wdt = AP_F32;
    d->rows = d->direct ? d->Ho : chunk_rows(d->K, d->Ho, d->Wo);
}

/* d from a call ops/conv2d.c validated. */
static void dims_of(conv_dims *d, const ap_ctx *ctx, const ap_tensor *in, const ap_tensor *w,
                    int stride, int pad) {
    dims_init(d, (int)in->shape[0], (int)in->shape[1], (int)in->shape[2], (int)in->shape[3],
              (int)w->shape[0], (int)w->shape[2], (int)w->shape[3], stride, pad, pad);
    d->isa = ctx->isa;
    d->wdt = w->dtype;
}

size_t ap_conv2d_scratch_bytes(int B, int C, int H, int W, int O, int kh, int kw,
                               int stride, int pad) {
    if (B < 1 || C < 1 || H < 1 || W < 1 || O < 1 || kh < 1 || kw < 1 ||
        stride < 1 || pad < 0 || H + 2 * pad < kh || W + 2 * pad < kw)
        return 0;
    conv_dims d;
    dims_init(&d, B, C, H, W, O, kh, kw, stride, pad, pad);
    size_t ncol = d.direct ? 0 : (size_t)d.K * (size_t)d.rows * (size_t)d.Wo;
    /* Either path may run (run-time CPU check, AP_CONV2D_BLAS,
     * AP_CONV2D_DIRECT): the largest. Winograd as it will be chosen: for
     * every 3x3/s1/p1 shape only while AP_CONV2D_WINOGRAD is set (else its
     * transformed weights would inflate the plan of big-channel layers that
     * never run it, e.g. 2560 -> 1280 at 8x8: 210 MB). */
    const char *e = getenv("AP_CONV2D_WINOGRAD"); /* no context here (item 6: measured plans) */
    const int wg = e && *e && *e != '0' ? PG_WINO_ALL : PG_WINO;
    size_t n = ncol, cand[5] = {packed_a_floats(&d), PG_HAVE ? din_floats(&d, PG_DIRECT) : 0,
                                dw_pg_floats(&d), fwd_floats(&d, wg),
                                PG_HAVE ? din_floats(&d, wg) : 0};
    for (int k = 0; k < 5; k++)
        if (cand[k] > n) n = cand[k];
    return sizeof(float) * n;
}

/* col[r, (i - i0)*Wo + j] = in_b[c, i*s + u - ph, j*s + v - pw] (0 outside),
 * r = (c*kh + u)*kw + v, for output rows i in [i0, i1). */
static void im2col(const ap_ctx *ctx, const conv_dims *d, const float *x, int i0,
                   int i1, float *col) {
    const int Wo = d->Wo, s = d->s, ph = d->ph, pw = d->pw, W = d->W, H = d->H;
    const int n = (i1 - i0) * Wo;
    /* Output columns j whose input column x = j*s + v - pw lies in [0, W). */
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d->K > 1)
    for (int r = 0; r < d->K; r++) {
        int v = r % d->kw, u = (r / d->kw) % d->kh, c = r / (d->kw * d->kh);
        int jlo = pw - v > 0 ? (pw - v + s - 1) / s : 0;
        int jhi = (W - 1 + pw - v) / s + 1; /* exclusive */
        if (W - 1 + pw - v < 0) jhi = 0;
        if (jhi > Wo) jhi = Wo;
        if (jlo > jhi) jlo = jhi;
        const float *xc = x + (size_t)c * H * W;
        float *dst = col + (size_t)r * n;
        for (int i = i0; i < i1; i++, dst += Wo) {
            int y = i * s + u - ph;
            if (y < 0 || y >= H) {
                memset(dst, 0, sizeof(float) * (size_t)Wo);
                continue;
            }
            const float *src = xc + (size_t)y * W; /* src[j*s + v - pw] */
            for (int j = 0; j < jlo; j++) dst[j] = 0.0f;
            if (s == 1) {
                if (jhi > jlo)
                    memcpy(dst + jlo, src + jlo + v - pw,
                           sizeof(float) * (size_t)(jhi - jlo));
            } else {
                for (int j = jlo; j < jhi; j++) dst[j] = src[j * s + v - pw];
            }
            for (int j = jhi; j < Wo; j++) dst[j] = 0.0f;
        }
    }
}

/* dx_b[c, i*s + u - ph, j*s + v - pw] += col[r, (i - i0)*Wo + j] (inside only). */
static void col2im(const ap_ctx *ctx, const conv_dims *d, const float *col, int i0,
                   int i1, float *dx) {
    const int Wo = d->Wo, s = d->s, ph = d->ph, pw = d->pw, W = d->W, H = d->H;
    const int n = (i1 - i0) * Wo, kk = d->kh * d->kw;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d->C > 1)
    for (int c = 0; c < d->C; c++) {
        float *xc = dx + (size_t)c * H * W;
        for (int uv = 0; uv < kk; uv++) {
            int u = uv / d->kw, v = uv % d->kw;
            int jlo = pw - v > 0 ? (pw - v + s - 1) / s : 0;
            int jhi = (W - 1 + pw - v) / s + 1;
            if (W - 1 + pw - v < 0) jhi = 0;
            if (jhi > Wo) jhi = Wo;
            const float *src = col + (size_t)(c * kk + uv) * n;
            for (int i = i0; i < i1; i++, src += Wo) {
                int y = i * s + u - ph;
                if (y < 0 || y >= H) continue;
                float *dst = xc + (size_t)y * W; /* dst[j*s + v - pw] */
                if (s == 1 && jhi > jlo) {
                    float *dr = dst + jlo + v - pw;
                    const float *sr = src + jlo;
                    for (int j = 0; j < jhi - jlo; j++) dr[j] += sr[j];
                } else if (s > 1) {
                    for (int j = jlo; j < jhi; j++) dst[j * s + v - pw] += src[j];
                }
            }
        }
    }
}

#if PG_HAVE
/* B = im2col(x_b): dst[k][j] = col[k0 + k][n0 + j] for one panel of pixels. */
typedef struct {
    const conv_dims *d;
    const float *x; /* (C, H, W) of one image */
} pack_im2col_arg;

/* A panel's pixels n0 .. n0 + nr as runs along output rows: run g is output
 * row i[g], columns j0[g].., panel lanes [l0[g], l1[g]). Returns the count. */
typedef struct {
    int i[PG_NR + 1], j0[PG_NR + 1], l0[PG_NR + 1], l1[PG_NR + 1];
} pg_segs;

AP_ISA_INLINE int pg_segs_of(int n0, int nr, int Wo, pg_segs *sg) {
    int nseg = 0;
    for (int l = 0; l < nr; nseg++) {
        int n = n0 + l, jj = n % Wo, len = Wo - jj < nr - l ? Wo - jj : nr - l;
        sg->i[nseg] = n / Wo, sg->j0[nseg] = jj, sg->l0[nseg] = l, sg->l1[nseg] = l + len;
        l += len;
    }
    return nseg;
}

/* Run g at tap (u, v) of one channel xc of a stride-1 conv: panel lanes
 * [*a0, *a1) read inside the image, lane l from src[l] (the input column
 * j0 + (l - l0) + v - pw of row i + u - ph); NULL when that row is padding. */
AP_ISA_INLINE const float *pg_seg_src(const conv_dims *d, const pg_segs *sg, int g,
                                      const float *xc, int u, int v, int *a0, int *a1) {
    const int y = sg->i[g] + u - d->ph, jj = sg->j0[g], l0 = sg->l0[g];
    if (y < 0 || y >= d->H) return NULL;
    /* Output columns [lo, hi) read an input column inside [0, W). */
    const int lo = d->pw - v > 0 ? d->pw - v : 0;
    const int hi = d->W + d->pw - v < d->Wo ? d->W + d->pw - v : d->Wo;
    *a0 = l0 + (lo - jj > 0 ? lo - jj : 0);
    *a1 = sg->l1[g] < l0 + hi - jj ? sg->l1[g] : l0 + hi - jj;
    return xc + (size_t)y * d->W + (jj - l0 + v - d->pw);
}

/* Stride 1: the panel's 32 pixels are runs along output rows; each run reads
 * a contiguous stretch of an input row, so a row of dst is two vectors merged
 * from one masked load per run (masked lanes, padding included, stay 0). */
AP_TARGET_AVX512 static void pack_im2col_s1(const pack_im2col_arg *a, int k0, int kc,
                                            int n0, int nr, float *dst) {
    const conv_dims *d = a->d;
    const size_t HW = (size_t)d->H * d->W;
    pg_segs sg;
    const int nseg = pg_segs_of(n0, nr, d->Wo, &sg);
    int c = k0 / (d->kh * d->kw), u = (k0 / d->kw) % d->kh, v = k0 % d->kw;
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        const float *xc = a->x + (size_t)c * HW;
        __m512 r0 = _mm512_setzero_ps(), r1 = _mm512_setzero_ps();
        for (int g = 0; g < nseg; g++) {
            int a0, a1;
            const float *src = pg_seg_src(d, &sg, g, xc, u, v, &a0, &a1);
            if (!src || a1 <= a0) continue;
            uint32_t m = (uint32_t)((1ull << a1) - (1ull << a0));
            r0 = _mm512_mask_loadu_ps(r0, (__mmask16)m, src);
            r1 = _mm512_mask_loadu_ps(r1, (__mmask16)(m >> 16), src + 16);
            /* x does not fit L2 and channels are H*W apart: fetch the row
             * the same tap of channel c + 2 will read. */
            if (c + 2 < d->C) {
                _mm_prefetch((const char *)(src + 2 * HW), _MM_HINT_T0);
                _mm_prefetch((const char *)(src + 2 * HW + 31), _MM_HINT_T0);
            }
        }
        _mm512_store_ps(dst, r0);
        _mm512_store_ps(dst + 16, r1);
        if (++v == d->kw) v = 0, u++;
        if (u == d->kh) u = 0, c++;
    }
}

/* The same panel in plain C for the other variants: zero the row, copy each
 * run's in-image stretch. */
AP_ISA_INLINE void pack_im2col_s1_plain_body(const pack_im2col_arg *a, int k0, int kc, int n0,
                                             int nr, float *dst) {
    const conv_dims *d = a->d;
    pg_segs sg;
    const int nseg = pg_segs_of(n0, nr, d->Wo, &sg);
    int c = k0 / (d->kh * d->kw), u = (k0 / d->kw) % d->kh, v = k0 % d->kw;
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        const float *xc = a->x + (size_t)c * d->H * d->W;
        for (int j = 0; j < PG_NR; j++) dst[j] = 0.0f;
        for (int g = 0; g < nseg; g++) {
            int a0, a1;
            const float *src = pg_seg_src(d, &sg, g, xc, u, v, &a0, &a1);
            if (!src) continue;
            for (int l = a0; l < a1; l++) dst[l] = src[l];
        }
        if (++v == d->kw) v = 0, u++;
        if (u == d->kh) u = 0, c++;
    }
}
AP_ISA_KERNEL(pack_im2col_s1_plain, (const pack_im2col_arg *a, int k0, int kc, int n0, int nr,
                                     float *dst), (a, k0, kc, n0, nr, dst));

static void pack_im2col(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const pack_im2col_arg *a = arg;
    const conv_dims *d = a->d;
    if (d->s == 1) {
        if (d->isa == AP_ISA_AVX512)
            pack_im2col_s1(a, k0, kc, n0, nr, dst);
        else
            ap_isa_pick(d, pack_im2col_s1_plain)(a, k0, kc, n0, nr, dst);
        return;
    }
    const int s = d->s, ph = d->ph, pw = d->pw, H = d->H, W = d->W, Wo = d->Wo;
    int c = k0 / (d->kh * d->kw), u = (k0 / d->kw) % d->kh, v = k0 % d->kw;
    int i = n0 / Wo, j0 = n0 % Wo;
    if (j0 + nr <= Wo) { /* the panel lies in one output row */
        for (int k = 0; k < kc; k++, dst += PG_NR) {
            int y = i * s + u - ph, jlo = 0, jhi = 0;
            if (y >= 0 && y < H) {
                int lo = pw - v > 0 ? (pw - v + s - 1) / s : 0;
                int hi = W - 1 + pw - v >= 0 ? (W - 1 + pw - v) / s + 1 : 0;
                jlo = lo - j0 > 0 ? lo - j0 : 0;
                jhi = hi - j0 < nr ? hi - j0 : nr;
                if (jhi < jlo) jhi = jlo;
                const float *row = a->x + ((size_t)c * H + y) * W;
                if (s == 1) {
                    if (jhi > jlo)
                        memcpy(dst + jlo, row + j0 + jlo + v - pw,
                               sizeof(float) * (size_t)(jhi - jlo));
                } else {
                    for (int j = jlo; j < jhi; j++) dst[j] = row[(j0 + j) * s + v - pw];
                }
            }
            for (int j = 0; j < jlo; j++) dst[j] = 0.0f;
            for (int j = jhi; j < PG_NR; j++) dst[j] = 0.0f;
            if (++v == d->kw) v = 0, u++;
            if (u == d->kh) u = 0, c++;
        }
        return;
    }
    int y0[PG_NR], x0[PG_NR]; /* top-left input pixel of each output pixel */
    for (int j = 0; j < nr; j++) {
        int n = n0 + j;
        y0[j] = n / Wo * s - ph, x0[j] = n % Wo * s - pw;
    }
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        const float *xc = a->x + (size_t)c * H * W;
        for (int j = 0; j < nr; j++) {
            int y = y0[j] + u, xx = x0[j] + v;
            dst[j] = y >= 0 && y < H && xx >= 0 && xx < W ? xc[(size_t)y * W + xx] : 0.0f;
        }
        for (int j = nr; j < PG_NR; j++) dst[j] = 0.0f;
        if (++v == d->kw) v = 0, u++;
        if (u == d->kh) u = 0, c++;
    }
}

/* B = im2col(x_b)^T for dweight: dst[k][j] = col[n0 + j][pix0 + k0 + k], the
 * input value weight tap r = n0 + j = (c, u, v) meets at output pixel
 * pix0 + k0 + k (0 outside). Each row of dst is two 16-lane gathers: a lane's
 * offset c*H*W + u*W + v is fixed for the panel, the pixel adds y*W + x;
 * lanes whose input pixel lies in the padding are masked to 0. */
typedef struct {
    const conv_dims *d;
    const float *x; /* (C, H, W) of one image */
    int pix0;       /* first output pixel of this GEMM call */
} pack_dwcol_arg;

AP_TARGET_AVX512 static void pack_dwcol_avx512(const void *arg, int k0, int kc, int n0,
                                               int nr, float *dst) {
    const pack_dwcol_arg *a = arg;
    const conv_dims *d = a->d;
    const int s = d->s, H = d->H, W = d->W, Wo = d->Wo, kh = d->kh, kw = d->kw;
    _Alignas(64) int off[PG_NR], uu[PG_NR], vv[PG_NR];
    for (int j = 0; j < PG_NR; j++) {
        int r = j < nr ? n0 + j : n0;
        int v = r % kw, u = (r / kw) % kh, c = r / (kw * kh);
        off[j] = (c * H + u) * W + v, uu[j] = u, vv[j] = v;
    }
    const __m512i off0 = _mm512_load_si512(off), off1 = _mm512_load_si512(off + 16);
    const __m512i u0 = _mm512_load_si512(uu), u1 = _mm512_load_si512(uu + 16);
    const __m512i v0 = _mm512_load_si512(vv), v1 = _mm512_load_si512(vv + 16);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i vH = _mm512_set1_epi32(H), vW = _mm512_set1_epi32(W);
    const __mmask16 all0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 all1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    int p0 = a->pix0 + k0, i = p0 / Wo, jj = p0 % Wo;
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        int yk = i * s - d->ph, xk = jj * s - d->pw;
        __mmask16 m0 = all0, m1 = all1;
        if (yk < 0 || yk + kh > H || xk < 0 || xk + kw > W) {
            __m512i Y = _mm512_set1_epi32(yk), X = _mm512_set1_epi32(xk);
            __m512i y0 = _mm512_add_epi32(Y, u0), y1 = _mm512_add_epi32(Y, u1);
            __m512i x0 = _mm512_add_epi32(X, v0), x1 = _mm512_add_epi32(X, v1);
            m0 &= _mm512_cmpge_epi32_mask(y0, zero) & _mm512_cmplt_epi32_mask(y0, vH) &
                  _mm512_cmpge_epi32_mask(x0, zero) & _mm512_cmplt_epi32_mask(x0, vW);
            m1 &= _mm512_cmpge_epi32_mask(y1, zero) & _mm512_cmplt_epi32_mask(y1, vH) &
                  _mm512_cmpge_epi32_mask(x1, zero) & _mm512_cmplt_epi32_mask(x1, vW);
        }
        __m512i base = _mm512_set1_epi32(yk * W + xk);
        __m512 g0 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0,
                                             _mm512_add_epi32(off0, base), a->x, 4);
        __m512 g1 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1,
                                             _mm512_add_epi32(off1, base), a->x, 4);
        _mm512_store_ps(dst, g0);
        _mm512_store_ps(dst + 16, g1);
        if (++jj == Wo) jj = 0, i++;
    }
}

/* The same panel in plain C (AVX2 has no masked gathers): lane j reads
 * x[off[j] + y*W + x] when (y + u_j, x + v_j) lies inside the image. */
AP_ISA_INLINE void pack_dwcol_plain_body(const void *arg, int k0, int kc, int n0, int nr,
                                         float *dst) {
    const pack_dwcol_arg *a = arg;
    const conv_dims *d = a->d;
    const int s = d->s, H = d->H, W = d->W, Wo = d->Wo, kh = d->kh, kw = d->kw;
    int off[PG_NR], uu[PG_NR], vv[PG_NR];
    for (int j = 0; j < PG_NR; j++) {
        int r = j < nr ? n0 + j : n0;
        int v = r % kw, u = (r / kw) % kh, c = r / (kw * kh);
        off[j] = (c * H + u) * W + v, uu[j] = u, vv[j] = v;
    }
    int p0 = a->pix0 + k0, i = p0 / Wo, jj = p0 % Wo;
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        const int yk = i * s - d->ph, xk = jj * s - d->pw, base = yk * W + xk;
        if (yk < 0 || yk + kh > H || xk < 0 || xk + kw > W) {
            for (int j = 0; j < nr; j++) {
                const int y = yk + uu[j], x = xk + vv[j];
                dst[j] = y >= 0 && y < H && x >= 0 && x < W ? a->x[off[j] + base] : 0.0f;
            }
        } else {
            for (int j = 0; j < nr; j++) dst[j] = a->x[off[j] + base];
        }
        for (int j = nr; j < PG_NR; j++) dst[j] = 0.0f;
        if (++jj == Wo) jj = 0, i++;
    }
}
AP_ISA_KERNEL(pack_dwcol_plain, (const void *arg, int k0, int kc, int n0, int nr, float *dst),
              (arg, k0, kc, n0, nr, dst));

static void pack_dwcol(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const conv_dims *d = ((const pack_dwcol_arg *)arg)->d;
    if (d->isa == AP_ISA_AVX512)
        pack_dwcol_avx512(arg, k0, kc, n0, nr, dst);
    else
        ap_isa_pick(d, pack_dwcol_plain)(arg, k0, kc, n0, nr, dst);
}

#endif



/* The path of a context (ap_ctx.conv_path, set once from AP_CONV2D_*): the
 * packed GEMM runs on the AVX2 and AVX-512 variants unless the path is
 * im2col + BLAS; AP_CONV_DIRECT keeps it on im2col, AP_CONV_WINOGRAD sends
 * every eligible shape to Winograd (tests: small shapes). */
static int use_pg(const ap_ctx *ctx) {
#if PG_HAVE
    if (ctx->conv_path == AP_CONV_BLAS || !ap_pg_available(ctx)) return PG_OFF;
    if (ctx->conv_path == AP_CONV_DIRECT) return PG_DIRECT;
    return ctx->conv_path == AP_CONV_WINOGRAD ? PG_WINO_ALL : PG_WINO;
#else
    (void)ctx;
    return PG_OFF;
#endif
}

const char *ap_conv2d_variant(const ap_ctx *ctx) {
    const int avx512 = ctx->isa == AP_ISA_AVX512;
    switch (use_pg(ctx)) {
    case PG_DIRECT:
        return avx512 ? "packed AVX-512 GEMM, im2col gathered (AP_CONV2D_DIRECT)"
                      : "packed AVX2 GEMM, im2col gathered (AP_CONV2D_DIRECT)";
    case PG_WINO:
        return avx512 ? "packed AVX-512 GEMM, Winograd F(2x2,3x3) where it pays"
                      : "packed AVX2 GEMM, Winograd F(2x2,3x3) where it pays";
    case PG_WINO_ALL:
        return avx512 ? "packed AVX-512 GEMM, Winograd for every 3x3 (AP_CONV2D_WINOGRAD)"
                      : "packed AVX2 GEMM, Winograd for every 3x3 (AP_CONV2D_WINOGRAD)";
    default: return "im2col + BLAS";
    }
}

/* Winograd F(2x2, 3x3) runs for 3x3/s1/p1 convs in mode PG_WINO_ALL, and in
 * PG_WINO where it pays: C, O >= 64, H, W >= 8 and >= 128 tiles per image
 * (256 over a CFG batch of 2, as measured; per image so that the choice, and
 * so the rounding, never depends on the batch size). Measured forward, 2 threads, Winograd vs im2col: 320ch 2x64x64
 * 35 vs 65 ms, 640ch 2x32x32 43 vs 63, 64ch 1x64x64 1.05 vs 1.44, 128ch
 * 1x32x32 0.97 vs 1.20; losing: 32ch 1x32x32 0.18 vs 0.11, 1280ch 2x16x16
 * (128 tiles) 82 vs 74, 1280ch 2x8x8 57 vs 32 (the transformed weights,
 * 16/9 of w, are written and streamed for too few tiles), C = 4: 3.2 vs 1.0. */
static int wg_eligible(const conv_dims *d, int pg) {
#if PG_HAVE
    if (pg < PG_WINO || d->kh != 3 || d->kw != 3 || d->s != 1 || d->ph != 1 || d->pw != 1)
        return 0;
    const int64_t ntile = (int64_t)d->B * wg_tiles_h(d) * wg_tiles_w(d);
    if (ntile > INT_MAX) return 0;
    /* Tiles per image, not over the batch: Winograd and im2col round
     * differently, and an image must not change with the batch around it
     * (sample: image k depends on its prompt and seed only). */
    const int64_t per_image = (int64_t)wg_tiles_h(d) * wg_tiles_w(d);
    return pg == PG_WINO_ALL ||
           (d->C >= 64 && d->O >= 64 && d->H >= 8 && d->W >= 8 && per_image >= 128);
#else
    (void)d, (void)pg;
    return 0;
#endif
}

/* Floats of the forward's packed weights (O rounded up to 12, K). */
static size_t packed_a_floats(const conv_dims *d) {
#if PG_HAVE
    return (size_t)ap_pg_mpad(d->O) * d->K;
#else
    (void)d;
    return 0;
#endif
}

/* din of a stride-1 conv whose pads satisfy p <= k - 1 is itself a forward
 * conv: din = conv(dout, w'), w'[c, o, u, v] = w[o, c, kh-1-u, kw-1-v],
 * pads kh-1-p and kw-1-p, output H x W. Fills t with that conv's dims. */
static int din_as_conv(const conv_dims *d, conv_dims *t) {
    if (d->s != 1 || d->ph > d->kh - 1 || d->pw > d->kw - 1) return 0;
    dims_init(t, d->B, d->O, d->Ho, d->Wo, d->C, d->kh, d->kw, 1, d->kh - 1 - d->ph,
              d->kw - 1 - d->pw);
    t->isa = d->isa;
    return 1;
}

static size_t fwd_floats(const conv_dims *d, int pg);

/* A bf16 / f16 weight widened to f32 (O, K) for the BLAS paths, rounded up
 * to 16 floats. */
static size_t wide_floats(const conv_dims *d) {
    return ((size_t)d->O * d->K + 15) & ~(size_t)15;
}

/* din-as-conv scratch (0 if din is not a conv): w' (C, O*kh*kw), rounded up
 * to 16 floats, then that conv's own scratch. */
static size_t din_wt_floats(const conv_dims *d) {
    return ((size_t)d->C * d->O * d->kh * d->kw + 15) & ~(size_t)15;
}

static size_t din_floats(const conv_dims *d, int pg) {
    conv_dims t;
    if (!din_as_conv(d, &t)) return 0;
    return din_wt_floats(d) + fwd_floats(&t, pg);
}

#if PG_HAVE
/* Output pixels per packed dweight GEMM call: the packed dout slice
 * (O rounded up to 12, pixels) stays within AP_CONV2D_COL_FLOATS. */
static int dw_chunk_pixels(const conv_dims *d) {
    const int HoWo = d->Ho * d->Wo;
    size_t P = AP_CONV2D_COL_FLOATS / (size_t)ap_pg_mpad(d->O);
    if (P < PG_KC) P = PG_KC;
    if (P >= (size_t)HoWo) return HoWo;
    int n = (int)((HoWo + P - 1) / P);
    return (HoWo + n - 1) / n;
}
#endif

static size_t dw_pg_floats(const conv_dims *d) {
#if PG_HAVE
    return (size_t)ap_pg_mpad(d->O) * dw_chunk_pixels(d);
#else
    (void)d;
    return 0;
#endif
}

/* Scratch floats of conv_fwd_run for d: the packed weights, or the columns
 * (none for 1x1/s1/p0 on BLAS). */
static size_t fwd_floats(const conv_dims *d, int pg) {
#if PG_HAVE
    if (wg_eligible(d, pg)) return ap_wg_floats(d);
#endif
    if (pg) return packed_a_floats(d);
    return d->direct ? 0 : (size_t)d->K * d->rows * d->Wo;
}

/* out (B, O, Ho, Wo) = conv(x (B, C, H, W), w (O, K) row-major) (+ bias (O),
 * may be NULL), on the packed GEMM (pg) or im2col + BLAS; scr holds
 * fwd_floats(d, pg) floats. w is of dtype d->wdt: the packed paths widen it
 * while packing; im2col + BLAS wants it f32 (the caller widens it first). */
static void conv_fwd_run(ap_ctx *ctx, const conv_dims *d, const float *xs,
                         const void *w, const float *bias, float *out, int pg,
                         float *scr) {
    const int HW = d->H * d->W, HoWo = d->Ho * d->Wo;
#if PG_HAVE
    if (wg_eligible(d, pg)) {
        ap_wg_run(ctx, d, xs, w, bias, out, scr);
        return;
    }
    if (pg) ap_pg_pack_a_w(ctx, w, d->wdt, d->K, d->O, d->K, scr);
#else
    (void)pg;
#endif
    for (int bi = 0; bi < d->B; bi++) {
        const float *x = xs + (size_t)bi * d->C * HW;
        float *y = out + (size_t)bi * d->O * HoWo;
#if PG_HAVE
        if (pg) { /* the packed GEMM starts its sums from the bias */
            pack_im2col_arg ai = {d, x};
            ap_pg_rows_arg ap = {x, HW};
            if (d->direct)
                ap_pg_gemm(ctx, d->O, HoWo, d->K, scr, ap_pg_pack_rows, &ap, y, HoWo, 0, bias);
            else
                ap_pg_gemm(ctx, d->O, HoWo, d->K, scr, pack_im2col, &ai, y, HoWo, 0, bias);
            continue;
        }
#endif
        if (bias) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d->O > 1)
            for (int o = 0; o < d->O; o++) {
                float *yo = y + (size_t)o * HoWo;
                for (int k = 0; k < HoWo; k++) yo[k] = bias[o];
            }
        }
        float beta = bias ? 1.0f : 0.0f;
        if (d->direct) {
            ap_gemm(ctx, 0, 0, d->O, HW, d->C, 1.0f, w, d->C, x, HW, beta, y, HW);
            continue;
        }
        for (int i0 = 0; i0 < d->Ho; i0 += d->rows) {
            int i1 = i0 + d->rows < d->Ho ? i0 + d->rows : d->Ho;
            int n = (i1 - i0) * d->Wo;
            im2col(ctx, d, x, i0, i1, scr);
            ap_gemm(ctx, 0, 0, d->O, n, d->K, 1.0f, w, d->K, scr, n, beta,
                    y + (size_t)i0 * d->Wo, HoWo);
        }
    }
}

size_t ap_cpu_conv2d_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                     const ap_tensor *w, const ap_tensor *b, int stride,
                                     int pad) {
    conv_dims d;
    dims_of(&d, ctx, in, w, stride, pad);
    const int pg = use_pg(ctx);
    return (fwd_floats(&d, pg) + (!pg && d.wdt != AP_F32 ? wide_floats(&d) : 0)) * sizeof(float);
}

int ap_cpu_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b, int stride, int pad) {
    conv_dims d;
    dims_of(&d, ctx, in, w, stride, pad);
    int bias = ap_present(b);

    const int pg = use_pg(ctx);
    /* im2col + BLAS reads a bf16 / f16 weight widened into scratch first */
    const size_t nw = !pg && d.wdt != AP_F32 ? wide_floats(&d) : 0;
    size_t n = fwd_floats(&d, pg) + nw;
    float *scr = NULL;
    if (n) {
        scr = ap_scratch(ctx, n * sizeof(float),
                         pg ? "conv2d_forward packed weights" : "conv2d_forward columns");
        if (!scr) return AP_ERR;
    }
    const void *wd = w->data;
    if (nw) {
        ap_widen(ctx, scr, w->data, d.wdt, (size_t)d.O * d.K);
        wd = scr, scr += nw, d.wdt = AP_F32;
    }
    conv_fwd_run(ctx, &d, in->data, wd, bias ? b->data : NULL, out->data, pg, scr);
    return AP_OK;
}

/* Scratch floats of a backward that wants din (want_dx) and/or dweight
 * (want_dw); one block serves whichever runs: they run one after another. */
static size_t bwd_floats(const conv_dims *d, int pg, int want_dx, int want_dw) {
    conv_dims t;
    const int pg_dw = pg && want_dw, conv_dx = pg && want_dx && din_as_conv(d, &t);
    const int fb_dw = want_dw && !pg_dw, fb_dx = want_dx && !conv_dx;
    size_t nscr = 0;
    if (pg_dw) nscr = dw_pg_floats(d);
    if (conv_dx && din_floats(d, pg) > nscr) nscr = din_floats(d, pg);
    if ((fb_dw || fb_dx) && !d->direct && (size_t)d->K * d->rows * d->Wo > nscr)
        nscr = (size_t)d->K * d->rows * d->Wo;
    return nscr;
}

/* Scratch floats a backward adds to widen a 2-byte weight (its GEMM + col2im
 * path reads w as f32). */
static size_t bwd_wide_floats(const conv_dims *d, int pg, int want_dx) {
    conv_dims t;
    const int conv_dx = pg && want_dx && din_as_conv(d, &t);
    return want_dx && !conv_dx && d->wdt != AP_F32 ? wide_floats(d) : 0;
}

size_t ap_cpu_conv2d_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                                      const ap_tensor *db, const ap_tensor *dout,
                                      const ap_tensor *in, const ap_tensor *w, int stride,
                                      int pad) {
    const int want_dx = ap_present(din), want_dw = ap_present(dw);
    if (!want_dx && !want_dw) return 0;
    conv_dims d;
    dims_of(&d, ctx, in, w, stride, pad);
    const int pg = use_pg(ctx);
    return (bwd_floats(&d, pg, want_dx, want_dw) + bwd_wide_floats(&d, pg, want_dx)) *
           sizeof(float);
}

int ap_cpu_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w, int stride,
                       int pad) {
    /* in (its data) is read only for dweight: ops/conv2d.c lets a frozen
     * layer pass a shape-only descriptor */
    conv_dims d;
    dims_of(&d, ctx, in, w, stride, pad);
    int want_dx = ap_present(din), want_dw = ap_present(dw), want_db = ap_present(db);

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

    /* Where the CPU has the packed GEMM: dw on it, and din of stride-1 convs
     * with pad <= k - 1 as a forward conv (din_as_conv). The rest, and all
     * on the BLAS path, is im2col + GEMM for dw and GEMM + col2im for din
     * (measured: on BLAS, din as im2col + GEMM was ~8% slower than GEMM +
     * col2im). One scratch block serves whichever runs: they run one after
     * another. */
    conv_dims t;
    const int pg = use_pg(ctx);
    const int pg_dw = pg && want_dw, conv_dx = pg && want_dx && din_as_conv(&d, &t);
    const int fb_dw = want_dw && !pg_dw, fb_dx = want_dx && !conv_dx;
    const size_t nscr = bwd_floats(&d, pg, want_dx, want_dw);
    /* GEMM + col2im reads a bf16 / f16 weight widened into scratch first
     * (ops/conv2d.c refuses dw for such a weight) */
    const size_t nw = bwd_wide_floats(&d, pg, want_dx);
    float *scr = NULL;
    const float *wf = d.wdt == AP_F32 ? w->data : NULL; /* w as f32, where read */
    if (nscr + nw) {
        scr = ap_scratch(ctx, (nscr + nw) * sizeof(float), "conv2d_backward scratch");
        if (!scr) return AP_ERR;
    }
    if (nw) {
        ap_widen(ctx, scr, w->data, d.wdt, (size_t)d.O * d.K);
        wf = scr, scr += nw;
    }
#if PG_HAVE
    if (pg_dw) {
        /* dw (O, K) += dout_b (O, pixels) . im2col(in_b)^T (pixels, K). */
        const int P = dw_chunk_pixels(&d);
        for (int bi = 0; bi < d.B; bi++) {
            const float *g = dout->data + (size_t)bi * d.O * HoWo;
            for (int p0 = 0; p0 < HoWo; p0 += P) {
                int np = HoWo - p0 < P ? HoWo - p0 : P;
                pack_dwcol_arg a = {&d, in->data + (size_t)bi * d.C * HW, p0};
                ap_pg_pack_a(ctx, g + p0, HoWo, d.O, np, scr);
                ap_pg_gemm(ctx, d.O, d.K, np, scr, pack_dwcol, &a, dw->data, d.K, 1, NULL);
            }
        }
    }
#endif
    if (conv_dx) {
        /* din (B, C, H, W) = conv(dout, w' (C, O*kh*kw)), see din_as_conv. */
        const int kk = d.kh * d.kw;
        float *wt = scr;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (d.C > 1)
        for (int c = 0; c < d.C; c++)
            for (int o = 0; o < d.O; o++) {
                const size_t src = ((size_t)o * d.C + c) * kk;
                float *dst = wt + (size_t)c * t.K + (size_t)o * kk;
                for (int uv = 0; uv < kk; uv++)
                    dst[kk - 1 - uv] = ap_widen_at(w->data, d.wdt, src + uv);
            }
        conv_fwd_run(ctx, &t, dout->data, wt, NULL, din->data, pg,
                     scr + din_wt_floats(&d));
    }
    if (!fb_dw && !fb_dx) return AP_OK;

    float *col = scr;
    for (int bi = 0; bi < d.B; bi++) {
        const float *x = fb_dw ? in->data + (size_t)bi * d.C * HW : NULL;
        const float *g = dout->data + (size_t)bi * d.O * HoWo;
        float *dx = fb_dx ? din->data + (size_t)bi * d.C * HW : NULL;
        if (d.direct) {
            if (fb_dw)
                ap_gemm(ctx, 0, 1, d.O, d.C, HW, 1.0f, g, HW, x, HW, 1.0f, dw->data,
                        d.C);
            if (fb_dx)
                ap_gemm(ctx, 1, 0, d.C, HW, d.O, 1.0f, wf, d.C, g, HW, 0.0f, dx,
                        HW);
            continue;
        }
        if (fb_dx) memset(dx, 0, sizeof(float) * (size_t)d.C * HW);
        for (int i0 = 0; i0 < d.Ho; i0 += d.rows) {
            int i1 = i0 + d.rows < d.Ho ? i0 + d.rows : d.Ho;
            int n = (i1 - i0) * d.Wo;
            const float *gc = g + (size_t)i0 * d.Wo;
            if (fb_dw) {
                im2col(ctx, &d, x, i0, i1, col);
                ap_gemm(ctx, 0, 1, d.O, d.K, n, 1.0f, gc, HoWo, col, n, 1.0f,
                        dw->data, d.K);
            }
            if (fb_dx) {
                ap_gemm(ctx, 1, 0, d.K, n, d.O, 1.0f, wf, d.K, gc, HoWo, 0.0f,
                        col, n);
                col2im(ctx, &d, col, i0, i1, dx);
            }
        }
    }
    return AP_OK;
}
