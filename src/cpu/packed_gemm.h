/* packed_gemm.h: the packed GEMM (AVX2 and AVX-512) with operand packing by
 * callback, the engine of conv2d (im2col panels gathered straight into L1,
 * Winograd's 16 point GEMMs) and of ap_gemm where it runs. Internal to src/ops.
 *
 * C (M, N) row-major (+)= A (M, K) . B (K, N). A is packed once per call into
 * panels of MR rows (per KC block: Ap[panel][k][MR], zero rows past M); B is
 * packed by a callback into one KC x NR panel at a time on the stack (L1
 * resident), so the convolution's columns are gathered straight from the
 * image and never written to memory. Threads take (column block, row group)
 * tasks. The packed layout (MR x NR = 12 x 32 tiles) is the same for every
 * kernel variant (core/isa.h); the micro-kernel, written once for any vector
 * width, runs a tile as 12 x 32 (24 zmm accumulators) on AVX-512 and as four
 * 6 x 16 sub-tiles (12 ymm accumulators) on AVX2, with the same rounding
 * (bias, then the k products in order by FMA, then + C), so both variants
 * give the same bits. The generic variant (or AP_CONV2D_BLAS=1) makes conv2d
 * run im2col + ap_gemm instead.
 */
#ifndef AP_PACKED_GEMM_H
#define AP_PACKED_GEMM_H

#include "core/ctx.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define PG_HAVE 1
#include <immintrin.h>

enum { PG_MR = 12, PG_NR = 32, PG_KC = 256, PG_NC = 512, PG_MCP = 32 };

/* 1 when the kernel variant in use has a packed GEMM (AVX2 or AVX-512). */
int ap_pg_available(const ap_ctx *ctx);

/* Fills dst[k][j] (k < kc, j < PG_NR) with B[k0 + k][n0 + j], zero for j >= nr. */
typedef void (*ap_pg_pack_b)(const void *arg, int k0, int kc, int n0, int nr, float *dst);

/* B row-major (K, N) with row stride ld: the pack_b of a plain matrix,
 * dst[k][j] = b[(k0 + k) * ld + n0 + j]. */
typedef struct {
    const float *b;
    int ld;
} ap_pg_rows_arg;
void ap_pg_pack_rows(const void *arg, int k0, int kc, int n0, int nr, float *dst);

/* Rows of A rounded up to whole MR panels. */
static inline int ap_pg_mpad(int M) { return (M + PG_MR - 1) / PG_MR * PG_MR; }

/* Packs row-major A (M, K), row stride lda, into Ap (ap_pg_mpad(M) * K floats). */
void ap_pg_pack_a(const ap_ctx *ctx, const float *A, int lda, int M, int K, float *Ap);
/* The same for A of dtype dt (a bf16 / f16 weight: widened while packing;
 * AP_F32 is ap_pg_pack_a). */
void ap_pg_pack_a_w(const ap_ctx *ctx, const void *A, ap_dtype dt, int lda, int M, int K,
                    float *Ap);

/* C (M, N) = (accum ? C : bias ? bias[row] : 0) + A . B with Ap from
 * ap_pg_pack_a and B from pack; bias (M) may be NULL. */
void ap_pg_gemm(const ap_ctx *ctx, int M, int N, int K, const float *Ap, ap_pg_pack_b pack,
                const void *arg, float *C, int ldc, int accum, const float *bias);
/* Fills dst[k][r] (k < kc, r < PG_MR) with A[m0 + r][k0 + k], zero for r >= mr. */
typedef void (*ap_pg_pack_a_cb)(const void *arg, int m0, int mr, int k0, int kc, float *dst);

/* The same GEMM with A packed by a callback as well, a block of rows at a time
 * into a buffer on the stack (no workspace): C = (accum ? C : 0) + A . B. */
void ap_pg_gemm_cb(const ap_ctx *ctx, int M, int N, int K, ap_pg_pack_a_cb pack_a,
                   const void *arg_a, ap_pg_pack_b pack_b, const void *arg_b, float *C,
                   int ldc, int accum);
#else
#define PG_HAVE 0
#endif

#endif
