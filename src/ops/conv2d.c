/* conv2d.c: 2-D convolution as im2col + GEMM (CPU reference).
 *
 * Accumulation rule: parameter grads (dw, db) +=, activation grads (din) =.
 *
 * Forward on CPUs with AVX-512F: the packed GEMM below, with the columns
 * gathered from the image straight into its L1-resident B panels (no column
 * buffer; scratch holds the packed weights). Otherwise, and for backward,
 * per image b and chunk of output rows [i0, i1) (n = (i1 - i0) * Wo columns):
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
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "core/err.h"

/* ---- AVX-512 packed GEMM with fused operand packing (x86-64, GCC/Clang) ----
 *
 * C (M, N) row-major (+)= A (M, K) . B (K, N). A is packed once per call into
 * panels of MR rows (per KC block: Ap[panel][k][MR], zero rows past M); B is
 * packed by a callback into one KC x NR panel at a time on the stack (L1
 * resident), so the convolution's columns are gathered straight from the
 * image and never written to memory. Micro-kernel: MR x NR = 12 x 32 (24 zmm
 * accumulators). Threads take (column block, row group) tasks. Used when the
 * CPU has AVX-512F; otherwise (or with AP_CONV2D_BLAS=1 in the environment)
 * conv2d runs im2col + ap_gemm.
 */
#if defined(__GNUC__) && defined(__x86_64__)
#define PG_HAVE 1
#include <immintrin.h>

enum { PG_MR = 12, PG_NR = 32, PG_KC = 256, PG_NC = 512, PG_MCP = 32 };

/* Fills dst[k][j] (k < kc, j < PG_NR) with B[k0 + k][n0 + j], zero for j >= nr. */
typedef void (*pg_pack_b)(const void *arg, int k0, int kc, int n0, int nr, float *dst);

static int pg_mpad(int M) { return (M + PG_MR - 1) / PG_MR * PG_MR; }

/* Packs row-major A (M, K), row stride lda. */
static void pg_pack_a(const ap_ctx *ctx, const float *A, int lda, int M, int K,
                      float *Ap) {
    const int npanel = pg_mpad(M) / PG_MR, Mp = pg_mpad(M);
    const int nkb = (K + PG_KC - 1) / PG_KC;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) collapse(2)
    for (int kb = 0; kb < nkb; kb++)
        for (int ip = 0; ip < npanel; ip++) {
            int k0 = kb * PG_KC, kc = K - k0 < PG_KC ? K - k0 : PG_KC;
            float *dst = Ap + (size_t)Mp * k0 + (size_t)ip * PG_MR * kc;
            for (int k = 0; k < kc; k++)
                for (int r = 0; r < PG_MR; r++) {
                    int m = ip * PG_MR + r;
                    dst[k * PG_MR + r] = m < M ? A[(size_t)m * lda + k0 + k] : 0.0f;
                }
        }
}

#define PG_TARGET __attribute__((target("avx512f,fma")))

/* C[0:mr, 0:nr] (+)= Ap (kc x 12) . Bp (kc x 32). */
PG_TARGET static void pg_kernel(int kc, const float *Ap, const float *Bp, float *C,
                                int ldc, int accum, int mr, int nr) {
    __m512 c0[PG_MR], c1[PG_MR];
#pragma GCC unroll 12
    for (int r = 0; r < PG_MR; r++) c0[r] = _mm512_setzero_ps(), c1[r] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
#pragma GCC unroll 12
        for (int r = 0; r < PG_MR; r++) {
            __m512 a = _mm512_set1_ps(Ap[r]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
        Ap += PG_MR, Bp += PG_NR;
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#pragma GCC unroll 12
    for (int r = 0; r < PG_MR; r++) {
        if (r >= mr) break;
        float *cr = C + (size_t)r * ldc;
        if (accum) {
            c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
            c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, m0, c0[r]);
        _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
    }
}

/* C (M, N) = (accum ? C : 0) + A . B with Ap from pg_pack_a and B from pack. */
static void pg_gemm(const ap_ctx *ctx, int M, int N, int K, const float *Ap,
                    pg_pack_b pack, const void *arg, float *C, int ldc, int accum) {
    const int Mp = pg_mpad(M), npanel = Mp / PG_MR, nt = ctx->n_threads;
    const int ncb = (N + PG_NC - 1) / PG_NC;
    int mgroups = ncb >= nt ? 1 : (nt + ncb - 1) / ncb;
    if (mgroups > npanel) mgroups = npanel;
    const int per_group = (npanel + mgroups - 1) / mgroups;
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
    for (int cb = 0; cb < ncb; cb++)
        for (int g = 0; g < mgroups; g++) {
            _Alignas(64) float Bp[PG_KC * PG_NR];
            int p0 = g * per_group, p1 = p0 + per_group < npanel ? p0 + per_group : npanel;
            int nend = (cb + 1) * PG_NC < N ? (cb + 1) * PG_NC : N;
            /* Row blocks of at most PG_MCP panels keep A's KC slice and the
             * C block in L2; B panels are repacked per row block. */
            int nmb = (p1 - p0 + PG_MCP - 1) / PG_MCP;
            for (int mb = 0; mb < nmb; mb++) {
                int q0 = p0 + (int)((int64_t)(p1 - p0) * mb / nmb);
                int q1 = p0 + (int)((int64_t)(p1 - p0) * (mb + 1) / nmb);
                for (int k0 = 0; k0 < K; k0 += PG_KC) {
                    int kc = K - k0 < PG_KC ? K - k0 : PG_KC;
                    for (int n0 = cb * PG_NC; n0 < nend; n0 += PG_NR) {
                        int nr = nend - n0 < PG_NR ? nend - n0 : PG_NR;
                        pack(arg, k0, kc, n0, nr, Bp);
                        for (int ip = q0; ip < q1; ip++) {
                            int m0 = ip * PG_MR, mr = M - m0 < PG_MR ? M - m0 : PG_MR;
                            pg_kernel(kc, Ap + (size_t)Mp * k0 + (size_t)ip * PG_MR * kc,
                                      Bp, C + (size_t)m0 * ldc + n0, ldc, accum || k0 > 0,
                                      mr, nr);
                        }
                    }
                }
            }
        }
}
#else
#define PG_HAVE 0
#endif

typedef struct {
    int B, C, H, W;  /* input (B, C, H, W) */
    int O, kh, kw;   /* weight (O, C, kh, kw) */
    int s, p;        /* stride, pad */
    int Ho, Wo;      /* output (B, O, Ho, Wo) */
    int K;           /* C * kh * kw: GEMM depth, rows of col */
    int rows;        /* output rows per chunk */
    int direct;      /* 1x1 / s1 / p0: no im2col */
} conv_dims;

static size_t packed_a_floats(const conv_dims *d);

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
    size_t ncol = d.direct ? 0 : (size_t)d.K * (size_t)d.rows * (size_t)d.Wo;
    size_t nap = packed_a_floats(&d);
    return sizeof(float) * (ncol > nap ? ncol : nap);
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

#if PG_HAVE
/* B = im2col(x_b): dst[k][j] = col[k0 + k][n0 + j] for one panel of pixels. */
typedef struct {
    const conv_dims *d;
    const float *x; /* (C, H, W) of one image */
} pack_im2col_arg;

static void pack_im2col(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const pack_im2col_arg *a = arg;
    const conv_dims *d = a->d;
    const int s = d->s, p = d->p, H = d->H, W = d->W, Wo = d->Wo;
    int c = k0 / (d->kh * d->kw), u = (k0 / d->kw) % d->kh, v = k0 % d->kw;
    int i = n0 / Wo, j0 = n0 % Wo;
    if (j0 + nr <= Wo) { /* the panel lies in one output row */
        for (int k = 0; k < kc; k++, dst += PG_NR) {
            int y = i * s + u - p, jlo = 0, jhi = 0;
            if (y >= 0 && y < H) {
                int lo = p - v > 0 ? (p - v + s - 1) / s : 0;
                int hi = W - 1 + p - v >= 0 ? (W - 1 + p - v) / s + 1 : 0;
                jlo = lo - j0 > 0 ? lo - j0 : 0;
                jhi = hi - j0 < nr ? hi - j0 : nr;
                if (jhi < jlo) jhi = jlo;
                const float *row = a->x + ((size_t)c * H + y) * W;
                if (s == 1) {
                    if (jhi > jlo)
                        memcpy(dst + jlo, row + j0 + jlo + v - p,
                               sizeof(float) * (size_t)(jhi - jlo));
                } else {
                    for (int j = jlo; j < jhi; j++) dst[j] = row[(j0 + j) * s + v - p];
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
        y0[j] = n / Wo * s - p, x0[j] = n % Wo * s - p;
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

/* B row-major (K, N) with row stride ld: dst[k][j] = B[(k0 + k)*ld + n0 + j]. */
typedef struct {
    const float *b;
    int ld;
} pack_plain_arg;

static void pack_plain(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const pack_plain_arg *a = arg;
    const float *src = a->b + (size_t)k0 * a->ld + n0;
    for (int k = 0; k < kc; k++, dst += PG_NR, src += a->ld) {
        memcpy(dst, src, sizeof(float) * (size_t)nr);
        for (int j = nr; j < PG_NR; j++) dst[j] = 0.0f;
    }
}
#endif

/* The packed AVX-512 GEMM runs when the CPU has it and AP_CONV2D_BLAS is not
 * set to a non-empty value (tests use it to cover the im2col + BLAS path). */
static int use_pg(void) {
#if PG_HAVE
    const char *e = getenv("AP_CONV2D_BLAS");
    if (e && *e && *e != '0') return 0;
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* Floats of the forward's packed weights (O rounded up to 12, K). */
static size_t packed_a_floats(const conv_dims *d) {
#if PG_HAVE
    return (size_t)pg_mpad(d->O) * d->K;
#else
    (void)d;
    return 0;
#endif
}

int ap_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b, int stride, int pad) {
    static const char *op = "conv2d_forward";
    conv_dims d;
    AP_TRY(check_geometry(op, &d, in, w, stride, pad));
    AP_TRY(check_out(op, "out", &d, out, in, w));
    int bias = ap_present(b);
    if (bias && ap_expect1(op, "bias", b, d.O)) return fail_ctx(in, w, stride, pad);

    const int HW = d.H * d.W, HoWo = d.Ho * d.Wo, pg = use_pg();
    float *col = NULL, *Ap = NULL;
    if (pg) {
        Ap = ap_scratch(ctx, sizeof(float) * packed_a_floats(&d), "conv2d_forward packed weights");
        if (!Ap) return AP_ERR;
#if PG_HAVE
        pg_pack_a(ctx, w->data, d.K, d.O, d.K, Ap);
#endif
    } else if (!d.direct) {
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
#if PG_HAVE
        if (pg) {
            pack_im2col_arg ai = {&d, x};
            pack_plain_arg ap = {x, HW};
            if (d.direct)
                pg_gemm(ctx, d.O, HoWo, d.K, Ap, pack_plain, &ap, y, HoWo, bias);
            else
                pg_gemm(ctx, d.O, HoWo, d.K, Ap, pack_im2col, &ai, y, HoWo, bias);
            continue;
        }
#endif
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
    /* in is read only for dweight; without dweight a shape-only descriptor
     * (data NULL) is enough, so frozen layers need not keep their inputs. */
    static float shape_only_marker;
    ap_tensor in_shape;
    if (!ap_present(dw) && in && !in->data) {
        in_shape = *in;
        in_shape.data = &shape_only_marker;
        in = &in_shape;
    }
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
