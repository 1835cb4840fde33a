/* packed_gemm.c: the packed GEMM for AVX2 and AVX-512 (see packed_gemm.h). */
#include "packed_gemm.h"

#if PG_HAVE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/isa.h"
#include "widen.h"

void ap_pg_pack_a(const ap_ctx *ctx, const float *A, int lda, int M, int K, float *Ap) {
    const int npanel = ap_pg_mpad(M) / PG_MR, Mp = ap_pg_mpad(M);
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

void ap_pg_pack_a_w(const ap_ctx *ctx, const void *A, ap_dtype dt, int lda, int M, int K,
                    float *Ap) {
    if (dt == AP_F32) {
        ap_pg_pack_a(ctx, A, lda, M, K, Ap);
        return;
    }
    const int npanel = ap_pg_mpad(M) / PG_MR, Mp = ap_pg_mpad(M);
    const int nkb = (K + PG_KC - 1) / PG_KC;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) collapse(2)
    for (int kb = 0; kb < nkb; kb++)
        for (int ip = 0; ip < npanel; ip++) {
            int k0 = kb * PG_KC, kc = K - k0 < PG_KC ? K - k0 : PG_KC;
            float *dst = Ap + (size_t)Mp * k0 + (size_t)ip * PG_MR * kc;
            float row[PG_KC];
            for (int r = 0; r < PG_MR; r++) {
                int m = ip * PG_MR + r;
                if (m < M)
                    ap_widen_row(ctx->isa, row, ap_elem_ptr(A, dt, (size_t)m * lda + k0), dt,
                                 (size_t)kc);
                for (int k = 0; k < kc; k++) dst[k * PG_MR + r] = m < M ? row[k] : 0.0f;
            }
        }
}

void ap_pg_pack_rows(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const ap_pg_rows_arg *a = arg;
    const float *src = a->b + (size_t)k0 * a->ld + n0;
    for (int k = 0; k < kc; k++, dst += PG_NR, src += a->ld) {
        memcpy(dst, src, sizeof(float) * (size_t)nr);
        for (int j = nr; j < PG_NR; j++) dst[j] = 0.0f;
    }
}

/* ---- micro-kernel: one source for every vector width ---------------------
 *
 * PG_TILE(NAME, TARGET, VT, W, R, BCAST, FMA) defines NAME(kc, Ap, Bp, C, ldc,
 * accum, bias, mr, nr) for the instruction set TARGET: C[0:mr, 0:nr] (mr <= R,
 * nr <= 2W) = (accum ? C : bias ? bias[row] : 0) + A . B over packed panels (A
 * rows PG_MR apart, B rows PG_NR apart), with R x 2 accumulators of the vector
 * type VT (W floats). Each C element is bias, then the k products in order by
 * FMA, then + C: the same rounding for every width. */
#define PG_TILE(NAME, TARGET, VT, W, R, BCAST, FMA)                                     \
    TARGET AP_ISA_INLINE void NAME(int kc, const float *Ap, const float *Bp, float *C,  \
                                   int ldc, int accum, const float *bias, int mr, int nr) { \
        VT c0[R], c1[R];                                                                \
        /* C rows are a whole row stride apart (often 16 KiB): start fetching \
         * them now so the epilogue does not wait on L2/L3. */                          \
        for (int r = 0; r < mr; r++) {                                                  \
            _mm_prefetch((const char *)(C + (size_t)r * ldc), _MM_HINT_T0);             \
            _mm_prefetch((const char *)(C + (size_t)r * ldc + 2 * W - 1), _MM_HINT_T0); \
        }                                                                               \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                          \
            c0[r] = BCAST(bias && r < mr ? bias[r] : 0.0f);                             \
            c1[r] = c0[r];                                                              \
        }                                                                               \
        for (int k = 0; k < kc; k++) {                                                  \
            const VT b0 = *(const VT *)Bp, b1 = *(const VT *)(Bp + W);                  \
            _mm_prefetch((const char *)(Ap + 8 * PG_MR), _MM_HINT_T0);                  \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                      \
                const VT a = BCAST(Ap[r]);                                              \
                c0[r] = FMA(a, b0, c0[r]);                                              \
                c1[r] = FMA(a, b1, c1[r]);                                              \
            }                                                                           \
            Ap += PG_MR, Bp += PG_NR;                                                   \
        }                                                                               \
        /* Unrolled with constant r so the accumulators stay in registers. */ \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                          \
            if (r >= mr) break;                                                         \
            float *cr = C + (size_t)r * ldc;                                            \
            if (nr == 2 * W) {                                                          \
                VT u0, u1;                                                              \
                if (accum) {                                                            \
                    memcpy(&u0, cr, sizeof u0), memcpy(&u1, cr + W, sizeof u1);         \
                    c0[r] += u0, c1[r] += u1;                                           \
                }                                                                       \
                memcpy(cr, &c0[r], sizeof u0), memcpy(cr + W, &c1[r], sizeof u1);       \
            } else {                                                                    \
                float t[2 * W];                                                         \
                memcpy(t, &c0[r], sizeof c0[r]), memcpy(t + W, &c1[r], sizeof c1[r]);   \
                for (int j = 0; j < nr; j++) cr[j] = accum ? cr[j] + t[j] : t[j];       \
            }                                                                           \
        }                                                                               \
    }

PG_TILE(pg_tile16, AP_TARGET_AVX512, __m512, 16, 12, _mm512_set1_ps, _mm512_fmadd_ps)
PG_TILE(pg_tile8, AP_TARGET_AVX2, __m256, 8, 6, _mm256_set1_ps, _mm256_fmadd_ps)

/* One 12 x 32 tile of C (mr x nr of it inside C). */
typedef void (*pg_kernel_fn)(int kc, const float *Ap, const float *Bp, float *C, int ldc,
                             int accum, const float *bias, int mr, int nr);

AP_TARGET_AVX512 static void pg_kernel_avx512(int kc, const float *Ap, const float *Bp,
                                              float *C, int ldc, int accum,
                                              const float *bias, int mr, int nr) {
    pg_tile16(kc, Ap, Bp, C, ldc, accum, bias, mr, nr);
}

/* AVX2: the tile as 6 x 16 sub-tiles (rows h*6.., columns v*16..). */
AP_TARGET_AVX2 static void pg_kernel_avx2(int kc, const float *Ap, const float *Bp, float *C,
                                          int ldc, int accum, const float *bias, int mr,
                                          int nr) {
    for (int v = 0; v < 2 && 16 * v < nr; v++)
        for (int h = 0; h < 2 && 6 * h < mr; h++) {
            const int m = mr - 6 * h < 6 ? mr - 6 * h : 6, n = nr - 16 * v < 16 ? nr - 16 * v : 16;
            pg_tile8(kc, Ap + 6 * h, Bp + 16 * v, C + (size_t)6 * h * ldc + 16 * v, ldc, accum,
                     bias ? bias + 6 * h : NULL, m, n);
        }
}

static pg_kernel_fn pg_kernel_for(ap_isa isa) {
    return isa == AP_ISA_AVX512 ? pg_kernel_avx512 : isa == AP_ISA_AVX2 ? pg_kernel_avx2 : NULL;
}

int ap_pg_available(const ap_ctx *ctx) { return pg_kernel_for(ctx->isa) != NULL; }

/* Column blocks of about PG_NC (whole NR panels), their count a multiple of
 * the threads where there are enough panels: N = 2880 in 6 blocks of 512 left
 * one of two threads 17% more work than the other. Row groups split the
 * panels further when there are fewer column blocks than threads. */
typedef struct {
    int ncb, ncw, mgroups, per_group, npanel;
} pg_split;

static pg_split pg_split_of(int M, int N, int nt) {
    pg_split s;
    s.npanel = ap_pg_mpad(M) / PG_MR;
    int ncb = (N + PG_NC - 1) / PG_NC, npan = (N + PG_NR - 1) / PG_NR;
    ncb = (ncb + nt - 1) / nt * nt;
    if (ncb > npan) ncb = npan;
    s.ncw = (npan + ncb - 1) / ncb * PG_NR;
    s.ncb = (N + s.ncw - 1) / s.ncw;
    s.mgroups = s.ncb >= nt ? 1 : (nt + s.ncb - 1) / s.ncb;
    if (s.mgroups > s.npanel) s.mgroups = s.npanel;
    s.per_group = (s.npanel + s.mgroups - 1) / s.mgroups;
    return s;
}

/* Panels of A packed per row block on the stack when A comes by callback:
 * 16 panels x KC = 192 KiB. */
enum { PG_MCB = 16 };

/* Both entry points: A pre-packed (Ap, all of it, layout of ap_pg_pack_a) or
 * packed by pack_a a row block at a time. */
static void pg_run(const ap_ctx *ctx, int M, int N, int K, const float *Ap,
                   ap_pg_pack_a_cb pack_a, const void *arg_a, ap_pg_pack_b pack_b,
                   const void *arg_b, float *C, int ldc, int accum, const float *bias) {
    const int Mp = ap_pg_mpad(M), nt = ctx->n_threads;
    const pg_kernel_fn pg_kernel = pg_kernel_for(ctx->isa);
    const pg_split sp = pg_split_of(M, N, nt);
    const int npanel = sp.npanel, ncw = sp.ncw;
    /* Row blocks of at most mcp panels keep A's KC slice and the C block in
     * L2; B panels are repacked per row block. */
    const int mcp = Ap ? PG_MCP : PG_MCB;
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
    for (int cb = 0; cb < sp.ncb; cb++)
        for (int g = 0; g < sp.mgroups; g++) {
            _Alignas(64) float Bp[PG_KC * PG_NR];
            _Alignas(64) float Ab[Ap ? 1 : PG_MCB * PG_MR * PG_KC];
            int p0 = g * sp.per_group, p1 = p0 + sp.per_group < npanel ? p0 + sp.per_group : npanel;
            int nend = (cb + 1) * ncw < N ? (cb + 1) * ncw : N;
            int nmb = (p1 - p0 + mcp - 1) / mcp;
            for (int mb = 0; mb < nmb; mb++) {
                int q0 = p0 + (int)((int64_t)(p1 - p0) * mb / nmb);
                int q1 = p0 + (int)((int64_t)(p1 - p0) * (mb + 1) / nmb);
                for (int k0 = 0; k0 < K; k0 += PG_KC) {
                    int kc = K - k0 < PG_KC ? K - k0 : PG_KC;
                    /* panel ip of this KC slice: in Ap, or packed into Ab */
                    const float *A0 = Ap ? Ap + (size_t)Mp * k0 + (size_t)q0 * PG_MR * kc : Ab;
                    if (!Ap)
                        for (int ip = q0; ip < q1; ip++) {
                            int m0 = ip * PG_MR, mr = M - m0 < PG_MR ? M - m0 : PG_MR;
                            pack_a(arg_a, m0, mr, k0, kc, Ab + (size_t)(ip - q0) * PG_MR * kc);
                        }
                    for (int n0 = cb * ncw; n0 < nend; n0 += PG_NR) {
                        int nr = nend - n0 < PG_NR ? nend - n0 : PG_NR;
                        pack_b(arg_b, k0, kc, n0, nr, Bp);
                        for (int ip = q0; ip < q1; ip++) {
                            int m0 = ip * PG_MR, mr = M - m0 < PG_MR ? M - m0 : PG_MR;
                            pg_kernel(kc, A0 + (size_t)(ip - q0) * PG_MR * kc, Bp,
                                      C + (size_t)m0 * ldc + n0, ldc, accum || k0 > 0,
                                      bias && k0 == 0 ? bias + m0 : NULL, mr, nr);
                        }
                    }
                }
            }
        }
}

void ap_pg_gemm(const ap_ctx *ctx, int M, int N, int K, const float *Ap, ap_pg_pack_b pack,
                const void *arg, float *C, int ldc, int accum, const float *bias) {
    pg_run(ctx, M, N, K, Ap, NULL, NULL, pack, arg, C, ldc, accum, bias);
}

void ap_pg_gemm_cb(const ap_ctx *ctx, int M, int N, int K, ap_pg_pack_a_cb pack_a,
                   const void *arg_a, ap_pg_pack_b pack_b, const void *arg_b, float *C,
                   int ldc, int accum) {
    pg_run(ctx, M, N, K, NULL, pack_a, arg_a, pack_b, arg_b, C, ldc, accum, NULL);
}
#else
typedef int ap_packed_gemm_unavailable; /* ISO C: no empty translation unit */
#endif
