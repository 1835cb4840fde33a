/* softmax.h: softmax over the last axis, forward and backward (CPU reference).
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 */
#ifndef AP_SOFTMAX_H
#define AP_SOFTMAX_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out (..., N) = exp(in - max) / sum exp(in - max) along the last axis, with
 * in (..., N). out may alias in. */
int ap_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din (..., N) = out * (dout - sum(dout * out)) per row, from the forward's
 * out. din may alias dout. */
int ap_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                        const ap_tensor *out);

#endif
