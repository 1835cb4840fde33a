/* norm.h: GroupNorm and LayerNorm, forward and backward (CPU reference).
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Both use the biased variance and y = (x - mean) / sqrt(var + eps) * gamma + beta
 * (PyTorch's F.group_norm / F.layer_norm). Forward saves mean and rstd =
 * 1 / sqrt(var + eps) per group / row for backward. Statistics take two passes
 * (mean, then squared deviations), summed in float over short blocks and in
 * double across blocks, so a group of 10 x 64 x 64 elements, or one whose mean
 * is 300x its spread, matches a float64 reference to a few ulp.
 *
 * Backward writes dgamma / dbeta deterministically: per-(batch, channel) or
 * per-chunk partial sums go to scratch and are reduced in a fixed order, so the
 * result does not depend on the number of threads.
 */
#ifndef AP_NORM_H
#define AP_NORM_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* GroupNorm over in (B, C, *) with any number of trailing spatial dims
 * (including none): C is split into `groups` groups of C / groups channels;
 * each (batch, group) is normalised over its channels and spatial positions.
 * out: same shape as in (may alias in). mean, rstd: (B, groups), written.
 * gamma, beta: (C) or NULL (no scale / no shift). */
int ap_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, int groups,
                          float eps);
/* din (B, C, *) = (or NULL), dgamma (C) += (or NULL), dbeta (C) += (or NULL),
 * from dout (B, C, *), the forward's in, mean, rstd (B, groups) and gamma (C)
 * (NULL when the forward had none). Takes ap_group_norm_scratch_bytes(B, C). */
int ap_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma, int groups);
/* Scratch taken by ap_group_norm_backward: per-(batch, channel) partial sums. */
size_t ap_group_norm_scratch_bytes(int64_t batch, int64_t channels);

/* LayerNorm over the last dim of in (..., C); rows = numel / C.
 * out: same shape as in (may alias in). mean, rstd: (rows), written.
 * gamma, beta: (C) or NULL. */
int ap_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, float eps);
/* din (..., C) = (or NULL), dgamma (C) += (or NULL), dbeta (C) += (or NULL),
 * from dout (..., C), in, mean, rstd (rows) and gamma (C) or NULL.
 * Takes ap_layer_norm_scratch_bytes(rows, C). */
int ap_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma);
/* Scratch taken by ap_layer_norm_backward: per-chunk dgamma / dbeta partials. */
size_t ap_layer_norm_scratch_bytes(int64_t rows, int64_t channels);

#endif
