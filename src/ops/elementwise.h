/* elementwise.h: cheap data-movement and pointwise ops of the UNet/VAE
 * graphs, forward and backward: add, mul, scale, axpy, channel concat,
 * per-(b, c) bias broadcast over H x W, and NCHW <-> (B, H*W, C) permutes.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Every op here works on activations, so every gradient output is
 * overwritten (=); ap_axpy is the one accumulating op (y += s*x), for
 * residual and skip paths. Optional gradient outputs may be NULL.
 * Tensors are contiguous float32; aliasing is allowed only where stated.
 */
#ifndef AP_ELEMENTWISE_H
#define AP_ELEMENTWISE_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out = a + b, all the same shape. out may alias a or b. */
int ap_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
/* da = dout, db = dout (each optional; either may alias dout: then no copy). */
int ap_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout);

/* out = a * b, all the same shape. out may alias a or b. */
int ap_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
/* da = dout * b, db = dout * a (each optional). da and db may alias dout,
 * a or b (each element is read before it is written), not each other. */
int ap_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);

/* out = s * a. out may alias a. */
int ap_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
/* da = s * dout. da may alias dout. */
int ap_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);

/* y += s * x (same shape): residual/skip accumulation. x must not alias y. */
int ap_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);

/* out = cat([a, b], dim=1).
 * out: (B, C1 + C2, H, W); a: (B, C1, H, W); b: (B, C2, H, W). */
int ap_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                               const ap_tensor *b);
/* da = dout[:, :C1], db = dout[:, C1:] (each optional; shapes give C1, C2).
 * da: (B, C1, H, W); db: (B, C2, H, W); dout: (B, C1 + C2, H, W). */
int ap_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                const ap_tensor *dout);

/* out = in + bias[:, :, None, None] (ResnetBlock2D's h + temb).
 * out, in: (B, C, H, W); bias: (B, C). out may alias in. */
int ap_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                const ap_tensor *bias);
/* din = dout (optional; may alias dout: then no copy);
 * dbias[b, c] = sum over H, W of dout (optional, =, summed in double).
 * din, dout: (B, C, H, W); dbias: (B, C). */
int ap_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias,
                                 const ap_tensor *dout);

/* out[b, h*W + w, c] = in[b, c, h, w]. out: (B, H*W, C); in: (B, C, H, W). */
int ap_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din: (B, C, H, W) = permute of dout: (B, H*W, C). */
int ap_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
/* out[b, c, h, w] = in[b, h*W + w, c]. out: (B, C, H, W); in: (B, H*W, C). */
int ap_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din: (B, H*W, C) = permute of dout: (B, C, H, W). */
int ap_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);

#endif
