/* mha.h: the multi-head attention module of diffusers' Attention (UNet attn1
 * and attn2, VAE mid-block attention) and of CLIP / OpenCLIP encoder layers:
 *
 *   Q = proj_q(x), K = proj_k(src), V = proj_v(src)   (src = x for self-attention)
 *   O = softmax(scale·Q·Kᵀ [causal mask]) · V  per head (channel = head·d + j)
 *   out = proj_o(O)
 *
 * Each projection may carry LoRA (proj.h); frozen weights get no gradients.
 * Saved on the tape by forward: Q, K, V, O (B, ·, C), the softmax log-sum-exp
 * (B, heads, N) and the LoRA u's; the input x and src are the caller's and
 * must stay alive until backward. Backward temporaries (dO, dQ, dK, dV) come
 * from ctx->tmp and are released before it returns.
 */
#ifndef AP_NN_MHA_H
#define AP_NN_MHA_H

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "nn/proj.h"

typedef struct ap_mha {
    ap_proj q, k, v, o; /* q: (C, C), k/v: (C, C_kv), o: (C, C) */
    int heads;
    float scale; /* usually 1/sqrt(C/heads) */
    int causal;  /* CLIP text towers */
} ap_mha;

typedef struct ap_mha_saved {
    ap_tape_rec rec;             /* the forward's stamp (core/tape.h) */
    ap_tensor x, src;            /* inputs (caller-owned) */
    ap_tensor q, k, v, att, lse; /* (B,N,C) (B,M,C) (B,M,C) (B,N,C) (B,heads,N) */
    ap_proj_saved sq, sk, sv, so;
} ap_mha_saved;


/* out (B, N, C) = attention of x (B, N, C) over src (B, M, C_kv), or over x
 * when src is NULL. tape keeps what backward needs; NULL for inference (the
 * intermediates then come from tmp, which must then be given). */
int ap_mha_forward(ap_ctx *ctx, ap_tape *tape, const ap_mha *m, ap_mha_saved *sv,
                   const ap_tensor *out, const ap_tensor *x, const ap_tensor *src);

/* dout (B, N, C) -> dx (=, (B, N, C)) and, for cross-attention, dsrc (=, may be
 * NULL when src needs no gradient); LoRA grads +=. */
int ap_mha_backward(ap_ctx *ctx, ap_tape *tape, const ap_mha *m, const ap_mha_saved *sv,
                    const ap_tensor *dx, const ap_tensor *dsrc, const ap_tensor *dout);

#endif
