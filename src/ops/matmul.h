/* matmul.h: tensor matrix products, the GEMMs that layers above ops/ need
 * (LoRA branches, the CLIP/HPS projections) without raw pointers.
 *
 * Each tensor is viewed as a matrix: its leading dims collapsed into rows,
 * its last dim the columns, contiguous. op(t) is t or its transpose.
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * These ops take beta: the caller says whether out is overwritten (beta 0)
 * or accumulated into (beta 1), which is how a layer's backward writes its
 * activation grads (=) and parameter grads (+=) with the same op. No
 * backward of its own: a layer's backward is a few more matmuls.
 */
#ifndef AP_OPS_MATMUL_H
#define AP_OPS_MATMUL_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out (M, N) = alpha * op(a) (M, K) . op(b) (K, N) + beta * out, one GEMM
 * (ap_gemm): a is (M, K), or (K, M) with ta; b is (K, N), or (N, K) with tb;
 * each of out, a, b may have more leading dims, collapsed into rows
 * (e.g. a (B, L, K) is (B*L, K)). out must not alias a or b. */
int ap_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
              int ta, int tb, float alpha, float beta);

/* The same product with one GEMM per index of a's first dim
 * (ap_gemm_items), so an item's rows (an image's, a prompt's) never depend
 * on the batch around them: a (items, ..., K) with 3+ dims, or (M, K) as one
 * item; out has a's leading dims and last dim N; b (K, N), or (N, K) with
 * tb. out = alpha * a . op(b) + beta * out. out must not alias a or b. */
int ap_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
                    int tb, float alpha, float beta);

#endif
