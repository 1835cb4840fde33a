/* blas.h: the one place that includes CBLAS (OpenBLAS on Debian).
 *
 * ap_gemm is the GEMM every op uses: row-major C = alpha*op(A)*op(B) + beta*C.
 * On the AVX-512 kernel variant, with beta 0 or 1 and N, K >= 16
 * (N*K >= 4096), it runs the packed GEMM (packed_gemm.h); otherwise it is
 * split across ctx->n_threads OpenMP threads along M or N, each thread calling
 * single-threaded BLAS. Inside an existing parallel region call
 * ap_gemm_serial (always BLAS) instead. ap_gemm_w / ap_gemm_items_w take B
 * (the weight) in bf16 or f16 as well.
 */
#ifndef AP_BLAS_H
#define AP_BLAS_H

#include <stddef.h>

#include "core/tensor.h"

struct ap_ctx;

/* Make the BLAS library itself single-threaded (ops own the threading). */
void ap_blas_single_thread(void);

/* Row-major GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * ta/tb: 0 = as stored, 1 = transposed. lda/ldb/ldc are row strides. */
void ap_gemm(const struct ap_ctx *ctx, int ta, int tb, int M, int N, int K,
             float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);
/* The same GEMM for `items` independent row blocks (A not transposed): item i
 * is C[i*M .. (i+1)*M) = alpha * A[i*M .. (i+1)*M) * op(B) + beta * C, with
 * its rows split as if it were alone. OpenBLAS's result for a row depends on
 * the row's place in the call, so this makes an item's output (an image's,
 * a prompt's) independent of the batch around it and of the thread count. */
void ap_gemm_items(const struct ap_ctx *ctx, int items, int tb, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);
/* The same two GEMMs with B a frozen weight of dtype bdt (AP_F32, AP_BF16,
 * AP_F16; B points at bdt elements, ldb counts elements). AP_F32 calls
 * ap_gemm / ap_gemm_items unchanged. Otherwise, on the packed path the B
 * packers widen B to float32 while packing (no copy of B); on the BLAS path B
 * (the ldb-strided block op(B) reads) is widened into ctx's scratch first, so
 * the caller must not hold scratch across the call. Either way the result is
 * bit for bit the float32 GEMM on the widened B (widening is exact).
 * AP_ERR only when scratch cannot grow. */
/* The scratch bytes ap_gemm_w / ap_gemm_items_w take to widen B (0 when B
 * is f32 or the packed path widens it while packing). */
size_t ap_gemm_w_scratch(const struct ap_ctx *ctx, int tb, int M, int N, int K, ap_dtype bdt,
                         int ldb, float beta);
int ap_gemm_w(struct ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
              const float *A, int lda, const void *B, ap_dtype bdt, int ldb, float beta,
              float *C, int ldc);
int ap_gemm_items_w(struct ap_ctx *ctx, int items, int tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const void *B, ap_dtype bdt, int ldb,
                    float beta, float *C, int ldc);
void ap_gemm_serial(int ta, int tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta,
                    float *C, int ldc);

#endif
