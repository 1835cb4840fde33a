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

/* Rows (or columns) per task of a split GEMM: a function of the length only,
 * multiples of 16, at least 128 (single-thread OpenBLAS on SD shapes, e.g.
 * (4096, 320, 320): 64-row calls ran at 53 GF/s, 128-row ones at 74, whole
 * 55) and at most about 32 tasks per GEMM. */
static int chunk_of(int len) {
    int chunk = (len + 31) / 32;
    chunk = (chunk + 15) & ~15;
    return chunk < 128 ? 128 : chunk;
}

void ap_gemm(const ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc) {
    int nt = ctx ? ctx->n_threads : 1;
    double flops = 2.0 * M * N * K;
    if (flops < 2e6) {
        ap_gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N into chunks whose size depends on the shape
     * only (chunk_of), never
     * on nt: OpenBLAS picks its kernels (and so its summation order) by the
     * sub-problem's shape, and chunks that moved with the thread count made
     * --threads 2 differ from --threads 1 in the last bit. nt only deals the
     * chunks out; one thread computes the same chunks in turn. */
    int split_m = M >= N;
    int len = split_m ? M : N;
    int chunk = chunk_of(len);
    int nchunks = (len + chunk - 1) / chunk;
    if (nt > nchunks) nt = nchunks;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
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

void ap_gemm_items(const ap_ctx *ctx, int items, int tb, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta, float *C,
                   int ldc) {
    if (items <= 1) {
        ap_gemm(ctx, 0, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M <= 0 || N <= 0) return;
    int nt = ctx ? ctx->n_threads : 1;
    /* Chunks of one item as ap_gemm would cut them (shape only), over all items. */
    double flops = 2.0 * M * N * K;
    int split_m = M >= N, len = split_m ? M : N, chunk = len;
    if (flops >= 2e6) chunk = chunk_of(len);
    int per = (len + chunk - 1) / chunk;
    int64_t total = (int64_t)items * per;
    if (nt > total) nt = (int)total;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && flops * items >= 2e6)
    for (int64_t q = 0; q < total; q++) {
        int it = (int)(q / per), c = (int)(q % per);
        const float *Ai = A + (size_t)it * M * lda;
        float *Ci = C + (size_t)it * M * ldc;
        int lo = c * chunk, n = len - lo < chunk ? len - lo : chunk;
        if (split_m)
            ap_gemm_serial(0, tb, n, N, K, alpha, Ai + (size_t)lo * lda, lda, B, ldb, beta,
                           Ci + (size_t)lo * ldc, ldc);
        else
            ap_gemm_serial(0, tb, M, n, K, alpha, Ai, lda, tb ? B + (size_t)lo * ldb : B + lo,
                           ldb, beta, Ci + lo, ldc);
    }
}
