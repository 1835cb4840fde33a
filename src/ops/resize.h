/* resize.h: spatial resampling of NCHW feature maps, forward and backward.
 *
 * - nearest 2x upsample (SD UNet Upsample2D: F.interpolate(scale_factor=2,
 *   mode="nearest") before its 3x3 conv);
 * - bilinear resize, align_corners=False, no antialias: torchvision 0.15
 *   tensor Resize as AlignProp's reward preprocessing uses it (512 -> 224),
 *   bit-for-bit with PyTorch 1.13's CPU upsample_bilinear2d;
 * - torchvision's int-size rule for the output size.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * These ops have no parameters; din is overwritten.
 */
#ifndef AP_RESIZE_H
#define AP_RESIZE_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* out[b, c, y, x] = in[b, c, y/2, x/2].
 * out: (B, C, 2H, 2W); in: (B, C, H, W). */
int ap_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din[b, c, i, j] = sum of dout over its 4 children (2i..2i+1, 2j..2j+1).
 * din: (B, C, H, W); dout: (B, C, 2H, 2W). */
int ap_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);

/* Bilinear resize, align_corners=False, no antialias, scale s = (float)in/out
 * per axis, src(d) = max(0, (d + 0.5)*s - 0.5), edge index clamped.
 * out: (B, C, Ho, Wo); in: (B, C, H, W); any sizes >= 1 (down or up).
 * Scratch: ap_resize_bilinear_scratch_bytes(Ho, Wo). */
int ap_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* Adjoint: scatter-add of dout with the forward's weights, PyTorch's order.
 * Deterministic for any thread count (threads split whole planes).
 * din: (B, C, H, W) (=); dout: (B, C, Ho, Wo).
 * Scratch: ap_resize_bilinear_scratch_bytes(Ho, Wo). */
int ap_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
/* Scratch bytes both bilinear directions take (per-axis index/weight tables). */
size_t ap_resize_bilinear_scratch_bytes(int64_t Ho, int64_t Wo);

/* torchvision Resize(size) with an int size: the shorter side becomes size,
 * the longer int(size * long / short) (truncated); H == W gives size x size. */
void ap_resize_shorter_side(int H, int W, int size, int *Ho, int *Wo);

#endif
