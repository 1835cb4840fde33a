/* blas.c: threaded GEMM over single-threaded CBLAS. */
#include "blas.h"

#include <cblas.h>

#include "../core/ctx.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void ap_blas_single_thread(void) {
#ifdef AP_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
}

void ap_gemm_serial(int ta, int tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta,
                    float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

void ap_gemm(const ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc) {
    int nt = ctx ? ctx->n_threads : 1;
    double flops = 2.0 * M * N * K;
    if (nt <= 1 || flops < 2e6) {
        ap_gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N into nt contiguous chunks (multiples of 16). */
    int split_m = M >= N;
    int len = split_m ? M : N;
    if (nt > len) nt = len;
    int chunk = (len + nt - 1) / nt;
    chunk = (chunk + 15) & ~15;
    int nchunks = (len + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int c = 0; c < nchunks; c++) {
        int lo = c * chunk;
        int n = len - lo < chunk ? len - lo : chunk;
        if (split_m) {
            const float *Ac = ta ? A + lo : A + (size_t)lo * lda;
            ap_gemm_serial(ta, tb, n, N, K, alpha, Ac, lda, B, ldb, beta,
                           C + (size_t)lo * ldc, ldc);
        } else {
            const float *Bc = tb ? B + (size_t)lo * ldb : B + lo;
            ap_gemm_serial(ta, tb, M, n, K, alpha, A, lda, Bc, ldb, beta, C + lo,
                           ldc);
        }
    }
}
