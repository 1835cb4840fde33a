/* attention.h: fused multi-head scaled-dot-product attention, forward and
 * backward (FlashAttention-2 style: online softmax over key tiles; the
 * backward recomputes the probabilities from the saved log-sum-exp).
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Attention has no parameters: dq, dk, dv are all written with "=".
 *
 * Layout: q, out (B, Lq, H*D) and k, v (B, Lk, H*D) exactly as the q/k/v
 * Linear projections produce them; channel c = h*D + d (head-major, as
 * diffusers head_to_batch_dim and CLIP's view/transpose split heads). No
 * reshapes are needed: heads are read with row stride H*D.
 *
 *   S = scale * Q_h K_h^T (+ causal mask),  P = softmax(S) over keys,
 *   O_h = P V_h,  lse[b, h, i] = log(sum_j exp(S[i, j])).
 *
 * causal: query i attends keys j <= i (CLIP text), which requires Lq == Lk.
 *
 * Memory: the (Lq, Lk) score matrix is never stored. Each thread holds one
 * score tile of AP_ATTN_BQ x AP_ATTN_BK floats (two in backward: P and dP)
 * plus three row vectors: 263,680 bytes a thread, whatever L is. Exact
 * scratch: ap_attention_scratch_bytes(). Examples with 2 threads:
 *   SD self-attention B=2, L=4096, H=8, D=40:   527,360 bytes (forward+backward)
 *   CLIP text B=2, L=77, H=12, D=64, causal:    527,360 bytes
 * (PyTorch's explicit path materialises (B*H, Lq, Lk) scores and
 * probabilities: 1 GiB each for the first example.) When B*H is smaller than
 * the thread count the backward splits keys across threads and adds one
 * private (Lq, D) dq buffer per work item. Saved for backward: lse only,
 * B*H*Lq floats (256 KiB for the SD example).
 */
#ifndef AP_ATTENTION_H
#define AP_ATTENTION_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* Tile sizes. On the 2-core Sapphire Rapids dev box every combination of
 * BQ in {64, 128, 256} and BK in {128, 256, 512} ran within 10% of the others
 * (SD self-attention, 2 threads); this one keeps scratch at 256 KiB a thread. */
#define AP_ATTN_BQ 128 /* query rows per tile */
#define AP_ATTN_BK 256 /* keys per tile */

/* Scratch bytes (64-byte aligned blocks) that forward and backward need for
 * these sizes and thread count; plan with ap_ctx_reserve(). Covers both. */
size_t ap_attention_scratch_bytes(int64_t B, int64_t Lq, int64_t Lk, int64_t H,
                                  int64_t D, int n_threads);

/* out = softmax(scale * q k^T [+ causal mask]) v per head.
 * out: (B, Lq, H*D); lse: (B, H, Lq), saved for backward, may be NULL when no
 * backward follows; q: (B, Lq, H*D); k, v: (B, Lk, H*D). */
int ap_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse,
                         const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                         int n_heads, float scale, int causal);

/* Gradients of the forward above given dout (B, Lq, H*D) and the forward's
 * q, k, v, out and lse. dq (B, Lq, H*D), dk, dv (B, Lk, H*D) are written
 * ("="); any of them may be NULL (not wanted). */
int ap_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk,
                          const ap_tensor *dv, const ap_tensor *dout,
                          const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                          const ap_tensor *out, const ap_tensor *lse, int n_heads,
                          float scale, int causal);

#endif
