/* image.h: pixel ops of the rewards, forward and backward: AlignProp's
 * image/2 + 0.5 clamp and torchvision's Normalize (CLIP preprocessing),
 * and the demo reward's colourfulness.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Both ops work on activations: outputs are overwritten (=). Images are
 * contiguous float32 (B, C, H, W).
 */
#ifndef AP_OPS_IMAGE_H
#define AP_OPS_IMAGE_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out = clamp(x / 2 + 0.5, 0, 1): a decoded image in [-1, 1] to pixels in
 * [0, 1] (NaN stays NaN, as torch.clamp). Any shape; out may alias x. */
int ap_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
/* dx = dout / 2 where 0 <= x / 2 + 0.5 <= 1 (bounds inclusive, as
 * PyTorch's clamp), else 0. x is the forward's input; dx may alias dout. */
int ap_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                              const ap_tensor *x);

/* out[b, c] = (x[b, c] - mean[c]) / std[c] (torchvision Normalize).
 * out, x (B, C, H, W); mean, std: C host floats (constants). out may alias x. */
int ap_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                 const float *mean, const float *std);
/* dx[b, c] = dout[b, c] / std[c]. dx, dout (B, C, H, W); dx may alias dout. */
int ap_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                  const float *std);

/* out (B) = colourfulness (Hasler & Suesstrunk 2003) of each image (B, 3,
 * H, W) mapped to [0, 1] by x/2 + 0.5 (no clamp): sigma_rgyb + 0.3 mu_rgyb
 * over rg = r - g, yb = (r + g)/2 - b, in double, rounded once. The demo
 * reward (train/reward.h). */
int ap_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
/* dimage (B, 3, H, W) (=) = dout[b] * d colourfulness / d image[b]
 * (statistics recomputed from image, the forward's input). dout (B). */
int ap_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout,
                              const ap_tensor *image);

#endif
