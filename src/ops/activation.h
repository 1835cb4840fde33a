/* activation.h: pointwise activations, forward and backward.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * All tensors are contiguous float32; out and in may alias in forward.
 */
#ifndef AP_ACTIVATION_H
#define AP_ACTIVATION_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out = in * sigmoid(in). out: same shape as in. */
int ap_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din = dout * (s + in * s * (1 - s)), s = sigmoid(in). */
int ap_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in);

#endif
