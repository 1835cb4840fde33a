/* encoder.h: the pre-LN transformer encoder layer of every CLIP-family tower
 * (transformers CLIPEncoderLayer: SD's text encoder, the CLIP ViT-L/14 image
 * tower; OpenCLIP ResidualAttentionBlock: both HPSv2 towers):
 *
 *   h1  = x + attn(LN1(x))                   attn: mha.h, q/k/v/o with biases
 *   out = h1 + fc2(act(fc1(LN2(h1))))        act: QuickGELU (OpenAI CLIP) or
 *                                            GELU erf form (OpenCLIP ViT-H-14)
 *
 * Attention may be causal (text towers). OpenCLIP keeps q/k/v packed in one
 * `attn.in_proj_weight` (3C, C) / `in_proj_bias` (3C); rows 0..C-1 are q,
 * C..2C-1 k, 2C..3C-1 v, so the three projections are contiguous row slices.
 *
 * Weights are frozen: backward gives the input gradient only (dx, =).
 * Saved on the tape by a forward with a tape: LN1(x), h1, fc1's output (the
 * activation's input), the LayerNorm statistics and the attention module's
 * Q, K, V, O and log-sum-exp. The input x is the caller's and must stay alive
 * until backward.
 */
#ifndef AP_NN_ENCODER_H
#define AP_NN_ENCODER_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "io/weights.h"
#include "nn/mha.h"

typedef enum { AP_ACT_QUICK_GELU = 0, AP_ACT_GELU = 1 } ap_enc_act;
/* Checkpoint naming: transformers CLIP (self_attn.q_proj, layer_norm1, mlp.fc1)
 * or OpenCLIP (attn.in_proj_weight, ln_1, mlp.c_fc). */
typedef enum { AP_ENC_KEYS_HF = 0, AP_ENC_KEYS_OPENCLIP = 1 } ap_enc_keys;

typedef struct ap_enc_layer {
    int C, F, heads, causal;
    float eps;
    ap_enc_act act;
    ap_enc_keys keys;
    ap_tensor ln1_w, ln1_b;             /* (C) */
    ap_tensor q_w, q_b, k_w, k_b, v_w, v_b; /* (C, C), (C): HF only */
    ap_tensor in_w, in_b;               /* (3C, C), (3C): OpenCLIP only */
    ap_tensor o_w, o_b;                 /* (C, C), (C) */
    ap_tensor ln2_w, ln2_b;             /* (C) */
    ap_tensor fc1_w, fc1_b;             /* (F, C), (F) */
    ap_tensor fc2_w, fc2_b;             /* (C, F), (C) */
} ap_enc_layer;

typedef struct ap_enc_saved {
    ap_tape_rec rec;        /* the forward's stamp (core/tape.h) */
    ap_tensor x;            /* (B, N, C) caller-owned input */
    ap_tensor a1;           /* (B, N, C) LN1(x), the attention's input */
    ap_tensor mean1, rstd1; /* (B*N) */
    ap_mha_saved attn;
    ap_tensor h1;           /* (B, N, C) x + attention */
    ap_tensor mean2, rstd2; /* (B*N) */
    ap_tensor z;            /* (B, N, F) fc1 output */
} ap_enc_saved;

/* Declare the layer's parameters under prefix (e.g. "text_model.encoder.layers.3"
 * or "visual.transformer.resblocks.0"; "" for bare names) in the checkpoint's
 * own order. The layer struct must not move until ap_params_alloc. */
int ap_enc_declare(ap_enc_layer *l, ap_params *p, const char *prefix, ap_enc_keys keys,
                   int C, int F, int heads, ap_enc_act act, int causal, float eps);


/* out (B, N, C) = layer(x (B, N, C)). tape: keeps what backward needs (then
 * out must not alias x); NULL for inference (out may alias x). ctx->tmp is
 * always needed and is back at its entry level on return. */
int ap_enc_forward(ap_ctx *ctx, ap_tape *tape, const ap_enc_layer *l, ap_enc_saved *sv,
                   const ap_tensor *out, const ap_tensor *x);

/* dx (B, N, C) (=) from dout (B, N, C); dx must not alias dout. */
int ap_enc_backward(ap_ctx *ctx, ap_tape *tape, const ap_enc_layer *l,
                    const ap_enc_saved *sv, const ap_tensor *dx, const ap_tensor *dout);

#endif
