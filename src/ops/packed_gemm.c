/* packed_gemm.c: the AVX-512 packed GEMM (see packed_gemm.h). */
#include "packed_gemm.h"

#if PG_HAVE
#include <stddef.h>
#include <stdint.h>

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


/* C[0:mr, 0:nr] = (accum ? C : bias ? bias[row] : 0) + Ap (kc x 12) . Bp (kc x 32). */
PG_TARGET static void pg_kernel(int kc, const float *Ap, const float *Bp, float *C,
                                int ldc, int accum, const float *bias, int mr, int nr) {
    __m512 c0[PG_MR], c1[PG_MR];
    /* C rows are a whole row stride apart (often 16 KiB): start fetching
     * them now so the epilogue does not wait on L2/L3. */
    for (int r = 0; r < mr; r++) {
        _mm_prefetch((const char *)(C + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + (size_t)r * ldc + 31), _MM_HINT_T0);
    }
#pragma GCC unroll 12
    for (int r = 0; r < PG_MR; r++) {
        c0[r] = bias && r < mr ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
        c1[r] = c0[r];
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
        _mm_prefetch((const char *)(Ap + 8 * PG_MR), _MM_HINT_T0);
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

void ap_pg_gemm(const ap_ctx *ctx, int M, int N, int K, const float *Ap, ap_pg_pack_b pack,
                const void *arg, float *C, int ldc, int accum, const float *bias) {
    const int Mp = ap_pg_mpad(M), npanel = Mp / PG_MR, nt = ctx->n_threads;
    /* Column blocks of about PG_NC (whole NR panels), their count a multiple
     * of the threads where there are enough panels: N = 2880 in 6 blocks of
     * 512 left one of two threads 17% more work than the other. */
    int ncb = (N + PG_NC - 1) / PG_NC, npan = (N + PG_NR - 1) / PG_NR;
    ncb = (ncb + nt - 1) / nt * nt;
    if (ncb > npan) ncb = npan;
    const int ncw = (npan + ncb - 1) / ncb * PG_NR;
    ncb = (N + ncw - 1) / ncw;
    int mgroups = ncb >= nt ? 1 : (nt + ncb - 1) / ncb;
    if (mgroups > npanel) mgroups = npanel;
    const int per_group = (npanel + mgroups - 1) / mgroups;
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
    for (int cb = 0; cb < ncb; cb++)
        for (int g = 0; g < mgroups; g++) {
            _Alignas(64) float Bp[PG_KC * PG_NR];
            int p0 = g * per_group, p1 = p0 + per_group < npanel ? p0 + per_group : npanel;
            int nend = (cb + 1) * ncw < N ? (cb + 1) * ncw : N;
            /* Row blocks of at most PG_MCP panels keep A's KC slice and the
             * C block in L2; B panels are repacked per row block. */
            int nmb = (p1 - p0 + PG_MCP - 1) / PG_MCP;
            for (int mb = 0; mb < nmb; mb++) {
                int q0 = p0 + (int)((int64_t)(p1 - p0) * mb / nmb);
                int q1 = p0 + (int)((int64_t)(p1 - p0) * (mb + 1) / nmb);
                for (int k0 = 0; k0 < K; k0 += PG_KC) {
                    int kc = K - k0 < PG_KC ? K - k0 : PG_KC;
                    for (int n0 = cb * ncw; n0 < nend; n0 += PG_NR) {
                        int nr = nend - n0 < PG_NR ? nend - n0 : PG_NR;
                        pack(arg, k0, kc, n0, nr, Bp);
                        for (int ip = q0; ip < q1; ip++) {
                            int m0 = ip * PG_MR, mr = M - m0 < PG_MR ? M - m0 : PG_MR;
                            pg_kernel(kc, Ap + (size_t)Mp * k0 + (size_t)ip * PG_MR * kc,
                                      Bp, C + (size_t)m0 * ldc + n0, ldc, accum || k0 > 0,
                                      bias && k0 == 0 ? bias + m0 : NULL, mr, nr);
                        }
                    }
                }
            }
        }
}
#else
typedef int ap_packed_gemm_unavailable; /* ISO C: no empty translation unit */
#endif
