/* timestep.h: sinusoidal timestep embedding (diffusers 0.17.1
 * get_timestep_embedding), forward and backward with respect to t.
 *
 * SD v1.5's UNet uses dim 320, flip_sin_to_cos = 1, downscale_freq_shift = 0,
 * scale 1, max_period 10000 (docs/unet.md §4).
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * No parameters; dt is overwritten.
 */
#ifndef AP_TIMESTEP_H
#define AP_TIMESTEP_H

#include "core/ctx.h"
#include "core/tensor.h"

/* half = dim / 2; for k < half, in float32 as PyTorch 1.13 CPU computes it:
 *   f_k = exp(-ln(max_period) * k / (half - downscale_freq_shift)),
 *   a_k = (t_b * f_k) * scale,
 *   out[b] = [sin(a), cos(a)], or [cos(a), sin(a)] when flip_sin_to_cos,
 *   then one zero column when dim is odd.
 * out: (B, dim); t: (B) float timesteps. */
int ap_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t,
                                  int flip_sin_to_cos, float downscale_freq_shift,
                                  float scale, int max_period);
/* dt[b] = sum_k scale * f_k * (dsin_k * cos(a_k) - dcos_k * sin(a_k)) (=),
 * summed in double. dt: (B); dout: (B, dim); t: (B); same parameters as forward. */
int ap_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout,
                                   const ap_tensor *t, int flip_sin_to_cos,
                                   float downscale_freq_shift, float scale, int max_period);

#endif
