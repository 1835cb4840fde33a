/* resnet.h: diffusers ResnetBlock2D (time_embedding_norm "default", pre-norm,
 * output scale 1, dropout 0), shared by the UNet (with a time embedding) and
 * the VAE decoder (without):
 *
 *   h  = conv1(SiLU(norm1(x)))                     norm: GroupNorm(groups, eps)
 *   h += time_emb_proj(temb_act)[:, :, None, None]  temb_act = SiLU(emb), UNet only
 *   h  = conv2(SiLU(norm2(h)))
 *   out = shortcut(x) + h                          shortcut: 1x1 conv when cin != cout
 *
 * Weights are frozen: backward gives dx only (=). Saved on the tape: norm1(x),
 * h before norm2, norm2(h) (3 activations) and the GroupNorm statistics; conv
 * inputs are not kept since no conv weight needs a gradient.
 */
#ifndef AP_NN_RESNET_H
#define AP_NN_RESNET_H

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "io/weights.h"

typedef struct ap_resnet {
    int cin, cout, temb_dim, groups;
    float eps;
    ap_tensor norm1_w, norm1_b; /* (cin) */
    ap_tensor conv1_w, conv1_b; /* (cout, cin, 3, 3), (cout) */
    ap_tensor temb_w, temb_b;   /* (cout, temb_dim), (cout); absent when temb_dim == 0 */
    ap_tensor norm2_w, norm2_b; /* (cout) */
    ap_tensor conv2_w, conv2_b; /* (cout, cout, 3, 3), (cout) */
    ap_tensor short_w, short_b; /* (cout, cin, 1, 1), (cout); absent when cin == cout */
} ap_resnet;

typedef struct ap_resnet_saved {
    ap_tape_rec rec;         /* the forward's stamp (core/tape.h) */
    ap_tensor x;             /* (B, cin, H, W) caller-owned input */
    ap_tensor n1, h1, n2;    /* (B, cin, H, W), (B, cout, H, W) x2 */
    ap_tensor mean1, rstd1;  /* (B, groups) */
    ap_tensor mean2, rstd2;  /* (B, groups) */
} ap_resnet_saved;

/* Declare the block's parameters under prefix ("down_blocks.0.resnets.1") with
 * diffusers' key names; they are bound when the list is allocated. */
int ap_resnet_declare(ap_resnet *r, ap_params *p, const char *prefix, int cin, int cout,
                      int temb_dim, int groups, float eps);


/* out (B, cout, H, W) from x (B, cin, H, W) and temb_act (B, temb_dim) (NULL
 * when temb_dim == 0). tape NULL: inference (intermediates in ctx->tmp). */
int ap_resnet_forward(ap_ctx *ctx, ap_tape *tape, const ap_resnet *r, ap_resnet_saved *sv,
                      const ap_tensor *out, const ap_tensor *x, const ap_tensor *temb_act);

/* dx (=) from dout (B, cout, H, W). */
int ap_resnet_backward(ap_ctx *ctx, ap_tape *tape, const ap_resnet *r,
                       const ap_resnet_saved *sv, const ap_tensor *dx, const ap_tensor *dout);

#endif
