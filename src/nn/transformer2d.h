/* transformer2d.h: diffusers 0.17.1 Transformer2DModel as the SD 1.x/2.x UNet
 * uses it (continuous input, one BasicTransformerBlock, docs/unet.md §6):
 *
 *   g  = GroupNorm(groups, C, eps 1e-6)(x)                       x (B, C, H, W)
 *   h0 = tokens(proj_in(g))  1x1 conv, then NCHW -> (B, N, C)    N = H·W
 *        (use_linear_projection: tokens first, then a Linear)
 *   h1 = h0 + attn1(LN1(h0))            self-attention
 *   h2 = h1 + attn2(LN2(h1), context)   cross-attention, context (B, M, ctx_dim)
 *   h3 = h2 + ff.net.2(GEGLU(ff.net.0.proj(LN3(h2))))           inner 4C
 *   out = proj_out(h3 back to NCHW) + x
 *
 * LayerNorms have eps 1e-5. LoRA (AlignProp's LoRAAttnProcessor) may sit on
 * to_q, to_k, to_v and to_out.0 of both attentions; it is declared in a second
 * parameter list (ap_transformer2d_declare_lora) with the names save_attn_procs
 * writes. Every base weight is frozen: backward gives dx (=) and LoRA grads
 * (+=); the context gets no gradient.
 *
 * Saved on the tape: GroupNorm statistics, h0, LN1(h0), h1, LN2(h1), h2, the
 * three LayerNorms' statistics, ff.net.0.proj's output (B, N, 8C) and the two
 * attentions' saved tensors. x and context are the caller's and must stay
 * alive and unchanged until backward.
 */
#ifndef AP_NN_TRANSFORMER2D_H
#define AP_NN_TRANSFORMER2D_H

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "io/weights.h"
#include "nn/mha.h"

typedef struct ap_transformer2d {
    int C, heads, groups, ctx_dim;
    int linear_proj;                  /* use_linear_projection */
    ap_tensor norm_w, norm_b;         /* (C) GroupNorm */
    ap_tensor proj_in_w, proj_in_b;   /* (C, C, 1, 1) or (C, C) when linear; (C) */
    ap_tensor ln1_w, ln1_b;           /* (C) */
    ap_tensor ln2_w, ln2_b;           /* (C) */
    ap_tensor ln3_w, ln3_b;           /* (C) */
    ap_mha attn1, attn2;              /* q/k/v (C, C) or k/v (C, ctx_dim); o (C, C) + bias */
    ap_tensor ff1_w, ff1_b;           /* (8C, C), (8C) ff.net.0.proj */
    ap_tensor ff2_w, ff2_b;           /* (C, 4C), (C) ff.net.2 */
    ap_tensor proj_out_w, proj_out_b; /* like proj_in */
    ap_lora lora[8];                  /* attn1 q, k, v, out; attn2 q, k, v, out */
} ap_transformer2d;

typedef struct ap_transformer2d_saved {
    ap_tape_rec rec;                 /* the forward's stamp (core/tape.h) */
    ap_tensor x;                     /* (B, C, H, W) caller-owned input */
    ap_tensor gn_mean, gn_rstd;      /* (B, groups) */
    ap_tensor h0, n1, h1, n2, h2;    /* (B, N, C) */
    ap_tensor mean[3], rstd[3];      /* (B*N) LayerNorm statistics */
    ap_tensor f1;                    /* (B, N, 8C) */
    ap_mha_saved a1, a2;
} ap_transformer2d_saved;

/* Declare the base parameters under prefix ("down_blocks.0.attentions.1") in
 * state_dict order. heads divides C; groups divides C. */
int ap_transformer2d_declare(ap_transformer2d *t, ap_params *p, const char *prefix, int C,
                             int heads, int ctx_dim, int groups, int linear_proj);
/* Declare the 16 LoRA matrices (rank r) in a second list with AlignProp's names
 * "<prefix>.transformer_blocks.0.attn1.processor.to_q_lora.down.weight" ...
 * and switch LoRA on in the four projections of both attentions (scale 1).
 * The gradient tensors lora[i].ddown/dup are the caller's to point somewhere. */
int ap_transformer2d_declare_lora(ap_transformer2d *t, ap_params *lp, const char *prefix,
                                  int rank);


/* out (B, C, H, W) from x (B, C, H, W) and context (B, M, ctx_dim). tape NULL:
 * inference (intermediates in tmp, released). out must not alias x. */
int ap_transformer2d_forward(ap_ctx *ctx, ap_tape *tape, const ap_transformer2d *t,
                             ap_transformer2d_saved *sv,
                             const ap_tensor *out, const ap_tensor *x,
                             const ap_tensor *context);

/* dx (=, (B, C, H, W)) and LoRA grads (+=) from dout (B, C, H, W). */
int ap_transformer2d_backward(ap_ctx *ctx, ap_tape *tape, const ap_transformer2d *t,
                              const ap_transformer2d_saved *sv, const ap_tensor *dx,
                              const ap_tensor *dout);

#endif
