/* activation.h: pointwise activations, forward and backward: SiLU, GELU (erf
 * and tanh forms), QuickGELU, and the GEGLU gate of the UNet's feed-forward.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * All tensors are contiguous float32; out and in may alias in forward (not in
 * GEGLU), din and dout may alias in backward (in GEGLU din may alias in).
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

/* GELU. tanh_approx = 0: out = 0.5 * in * (1 + erf(in / sqrt(2)))
 * (torch approximate='none'); 1: out = 0.5 * in * (1 + tanh(sqrt(2/pi) *
 * (in + 0.044715 * in^3))) (torch approximate='tanh'). out: same shape as in. */
int ap_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                    int tanh_approx);
/* din = dout * gelu'(in), for the same form as the forward. */
int ap_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                     const ap_tensor *in, int tanh_approx);

/* QuickGELU (CLIP): out = in * sigmoid(1.702 * in). */
int ap_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din = dout * (s + 1.702 * in * s * (1 - s)), s = sigmoid(1.702 * in). */
int ap_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                           const ap_tensor *in);

/* GEGLU gate (diffusers, after its projection Linear): with in (..., 2N) split
 * into hidden = in[..., :N] and gate = in[..., N:],
 * out (..., N) = hidden * gelu_erf(gate). */
int ap_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
/* din (..., 2N) =: [dout * gelu(gate), dout * hidden * gelu'(gate)]. */
int ap_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                      const ap_tensor *in);

#endif
