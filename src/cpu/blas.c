/* blas.c: threaded GEMM over single-threaded CBLAS. */
#include "blas.h"

#include <cblas.h>

#include "../core/ctx.h"
#include "../core/isa.h"
#include "packed_gemm.h"
#include "widen.h"

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

/* ---- the packed GEMM path (AVX-512 variant) ------------------------------
 * On AVX-512, with beta 0 or 1 and N, K not tiny (pg_wanted), ap_gemm and
 * ap_gemm_items run the packed GEMM (packed_gemm.h), both operands packed by
 * callbacks (alpha folded into A's panels). An element of C is then (beta C) +
 * the k products in order by FMA, whatever M, N, the row's place in the call
 * and the thread count: the same for one item as for a batch. Measured (SD
 * linear 4096x320 -> 1280, 2 threads, AMD EPYC Zen 5): OpenBLAS (Haswell
 * kernel) 14.0 ms, packed AVX-512 9.1 ms. */
typedef struct {
    const float *a;
    int ld, trans;
    float alpha;
} pg_a_arg;

static void pg_pack_a_any(const void *arg, int m0, int mr, int k0, int kc, float *dst) {
    const pg_a_arg *a = arg;
    if (a->trans) { /* op(A)[m][k] = A[k][m]: rows of A give PG_MR-wide runs */
        for (int k = 0; k < kc; k++) {
            const float *src = a->a + (size_t)(k0 + k) * a->ld + m0;
            float *d = dst + (size_t)k * PG_MR;
            for (int r = 0; r < mr; r++) d[r] = a->alpha * src[r];
            for (int r = mr; r < PG_MR; r++) d[r] = 0.0f;
        }
        return;
    }
    for (int r = 0; r < PG_MR; r++) {
        if (r >= mr) {
            for (int k = 0; k < kc; k++) dst[(size_t)k * PG_MR + r] = 0.0f;
            continue;
        }
        const float *src = a->a + (size_t)(m0 + r) * a->ld + k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * PG_MR + r] = a->alpha * src[k];
    }
}

/* op(B) = B^T, B (N, K) with row stride ld: dst[k][j] = b[(n0 + j) * ld + k0 + k]
 * (a plain B is ap_pg_pack_rows). */
static void pg_pack_b_trans(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const ap_pg_rows_arg *b = arg;
    for (int j = 0; j < nr; j++) {
        const float *src = b->b + (size_t)(n0 + j) * b->ld + k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * PG_NR + j] = src[k];
    }
    for (int k = 0; k < kc; k++)
        for (int j = nr; j < PG_NR; j++) dst[(size_t)k * PG_NR + j] = 0.0f;
}

/* 1 when this GEMM runs on the packed path: decided by N and K only, never by
 * M, so that a row (an image's, a prompt's) takes the same path whatever the
 * batch around it (sample: batch 1 and 2 give the same bits). */
static int pg_wanted(const ap_ctx *ctx, int N, int K, float beta) {
    /* AVX-512 only: on AVX2 the 6x16 sub-tiles ran SD's linear (K = 320) 10-15%
     * slower than OpenBLAS's Haswell kernel (conv keeps the packed GEMM there:
     * its im2col gather into L1 is what pays). */
    return (ctx ? ctx->isa : ap_cpu_isa()) == AP_ISA_AVX512 && (beta == 0.0f || beta == 1.0f) && N >= 16 &&
           K >= 16 && N * K >= 4096;
}

/* B of a 2-byte dtype (a bf16/f16 weight), widened while packing. */
typedef struct {
    const void *b;
    ap_dtype dt;
    int ld;
    ap_isa isa;
} pg_typed_arg;

/* As ap_pg_pack_rows: dst[k][j] = B[k0 + k][n0 + j] widened. */
static void pg_pack_rows_typed(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const pg_typed_arg *b = arg;
    for (int k = 0; k < kc; k++, dst += PG_NR) {
        ap_widen_row(b->isa, dst, ap_elem_ptr(b->b, b->dt, (size_t)(k0 + k) * b->ld + n0),
                     b->dt, (size_t)nr);
        for (int j = nr; j < PG_NR; j++) dst[j] = 0.0f;
    }
}

/* As pg_pack_b_trans: a row of B (N, K) widened on the stack, then scattered. */
static void pg_pack_b_trans_typed(const void *arg, int k0, int kc, int n0, int nr, float *dst) {
    const pg_typed_arg *b = arg;
    float row[PG_KC];
    for (int j = 0; j < nr; j++) {
        ap_widen_row(b->isa, row, ap_elem_ptr(b->b, b->dt, (size_t)(n0 + j) * b->ld + k0),
                     b->dt, (size_t)kc);
        for (int k = 0; k < kc; k++) dst[(size_t)k * PG_NR + j] = row[k];
    }
    for (int k = 0; k < kc; k++)
        for (int j = nr; j < PG_NR; j++) dst[(size_t)k * PG_NR + j] = 0.0f;
}

/* B of dtype bdt (float32 when AP_F32). */
static void gemm_packed(const ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
                        const float *A, int lda, const void *B, ap_dtype bdt, int ldb,
                        float beta, float *C, int ldc) {
    ap_ctx one = {.n_threads = 1, .isa = ap_cpu_isa()}; /* ctx NULL: one thread */
    if (!ctx) ctx = &one;
    pg_a_arg a = {A, lda, ta, alpha};
    if (bdt != AP_F32) {
        pg_typed_arg b = {B, bdt, ldb, ctx->isa};
        ap_pg_gemm_cb(ctx, M, N, K, pg_pack_a_any, &a,
                      tb ? pg_pack_b_trans_typed : pg_pack_rows_typed, &b, C, ldc,
                      beta == 1.0f);
        return;
    }
    ap_pg_rows_arg b = {B, ldb};
    ap_pg_gemm_cb(ctx, M, N, K, pg_pack_a_any, &a, tb ? pg_pack_b_trans : ap_pg_pack_rows,
                  &b, C, ldc, beta == 1.0f);
}

void ap_gemm(const ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (pg_wanted(ctx, N, K, beta)) {
        gemm_packed(ctx, ta, tb, M, N, K, alpha, A, lda, B, AP_F32, ldb, beta, C, ldc);
        return;
    }
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
    /* On the packed path a row's result does not depend on the rows around it:
     * all items as one GEMM. */
    if (pg_wanted(ctx, N, K, beta)) {
        gemm_packed(ctx, 0, tb, M * items, N, K, alpha, A, lda, B, AP_F32, ldb, beta, C,
                    ldc);
        return;
    }
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

/* ---- B a bf16 / f16 weight ------------------------------------------------ */

/* B widened into ctx's scratch: the elements op(B) reads (rows of B, the last
 * one only up to its used columns), at the same ldb, so the BLAS call is the
 * float32 one with the same arguments. */
static const float *widen_b(ap_ctx *ctx, int tb, int N, int K, const void *B, ap_dtype bdt,
                            int ldb) {
    const int rows = tb ? N : K, cols = tb ? K : N;
    const size_t n = (size_t)(rows - 1) * ldb + cols;
    float *w = ap_scratch(ctx, n * sizeof(float), "gemm: weight widened to f32");
    if (w) ap_widen(ctx, w, B, bdt, n);
    return w;
}

size_t ap_gemm_w_scratch(const ap_ctx *ctx, int tb, int M, int N, int K, ap_dtype bdt, int ldb,
                         float beta) {
    if (bdt == AP_F32 || M <= 0 || N <= 0 || pg_wanted(ctx, N, K, beta)) return 0;
    const int rows = tb ? N : K, cols = tb ? K : N;
    return ((size_t)(rows - 1) * ldb + cols) * sizeof(float);
}

int ap_gemm_w(ap_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A,
              int lda, const void *B, ap_dtype bdt, int ldb, float beta, float *C, int ldc) {
    if (bdt == AP_F32) {
        ap_gemm(ctx, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return 0;
    }
    if (M <= 0 || N <= 0) return 0;
    if (pg_wanted(ctx, N, K, beta)) {
        gemm_packed(ctx, ta, tb, M, N, K, alpha, A, lda, B, bdt, ldb, beta, C, ldc);
        return 0;
    }
    const float *w = widen_b(ctx, tb, N, K, B, bdt, ldb);
    if (!w) return -1;
    ap_gemm(ctx, ta, tb, M, N, K, alpha, A, lda, w, ldb, beta, C, ldc);
    return 0;
}

int ap_gemm_items_w(ap_ctx *ctx, int items, int tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const void *B, ap_dtype bdt, int ldb, float beta,
                    float *C, int ldc) {
    if (bdt == AP_F32) {
        ap_gemm_items(ctx, items, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return 0;
    }
    if (M <= 0 || N <= 0) return 0;
    if (pg_wanted(ctx, N, K, beta)) {
        gemm_packed(ctx, 0, tb, items > 1 ? M * items : M, N, K, alpha, A, lda, B, bdt, ldb,
                    beta, C, ldc);
        return 0;
    }
    const float *w = widen_b(ctx, tb, N, K, B, bdt, ldb);
    if (!w) return -1;
    ap_gemm_items(ctx, items, tb, M, N, K, alpha, A, lda, w, ldb, beta, C, ldc);
    return 0;
}
