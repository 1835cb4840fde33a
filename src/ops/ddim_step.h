/* ddim_step.h: the elementwise arithmetic of a sampling step, forward and
 * backward: the DDIM update of a latent and the classifier-free guidance
 * combination of the UNet's two outputs. The schedule (timesteps, alphas,
 * the step's scalars) is host-side logic and stays in sched/ddim.h, which
 * calls these ops.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Both ops work on activations only: every gradient output is overwritten
 * (=). Optional gradient outputs may be NULL. Tensors are contiguous
 * float32 of any shape, e.g. latents (B, 4, 64, 64); aliasing only where
 * stated. Each element is one float32 expression in diffusers' / autograd's
 * op order (ddim.h), so results agree bit for bit with torch on the CPU.
 */
#ifndef AP_OPS_DDIM_STEP_H
#define AP_OPS_DDIM_STEP_H

#include "core/ctx.h"
#include "core/tensor.h"

/* The float32 scalars of one DDIM update (sched/ddim.h, ap_ddim_coeffs). */
typedef struct ap_ddim_scalars {
    float sqrt_alpha_t;    /* alpha_t ** 0.5 */
    float sqrt_beta_t;     /* (1 - alpha_t) ** 0.5 */
    float sqrt_alpha_prev; /* alpha_prev ** 0.5 */
    float sqrt_dir;        /* (1 - alpha_prev - sigma**2) ** 0.5 */
    float sigma;           /* eta * variance ** 0.5; used only with noise */
    int clip;              /* 1: clamp x0 to [-clip_range, clip_range] */
    float clip_range;
    int vpred;             /* 1: the model output is v (prediction_type "v_prediction") */
} ap_ddim_scalars;

/* x_prev = sqrt_alpha_prev * x0 + sqrt_dir * e [+ sigma * noise], where
 * for epsilon prediction (eps is the model output):
 *   x0 = (x - sqrt_beta_t * eps) / sqrt_alpha_t [clamped when clip], e = eps
 * and for v prediction (vpred; eps holds the model output v):
 *   x0 = sqrt_alpha_t * x - sqrt_beta_t * v [clamped when clip],
 *   e = sqrt_alpha_t * v + sqrt_beta_t * x           (docs/ddim.md §4)
 * x_prev, x, eps, noise: the same shape, e.g. (B, C, H, W); noise optional
 * (NULL: no noise term). x_prev may alias x or eps. */
int ap_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x,
                           const ap_tensor *eps, const ap_tensor *noise,
                           const ap_ddim_scalars *c);

/* Given dx_prev, with g0 = dx_prev * sqrt_alpha_prev [0 where clamped] and
 * ge = dx_prev * sqrt_dir: epsilon prediction: dx = g0 / sqrt_alpha_t,
 * deps = ge - dx * sqrt_beta_t; v prediction: dx = g0 * sqrt_alpha_t +
 * ge * sqrt_beta_t, deps (= dv) = ge * sqrt_alpha_t - g0 * sqrt_beta_t (each
 * optional, =). With clip, x and eps (the forward's inputs) give the clamp mask and
 * are required; otherwise they may be NULL. All the same shape. dx or deps
 * may alias dx_prev (each element is read before it is written), not each
 * other. No gradient reaches the noise. */
int ap_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps,
                            const ap_tensor *dx_prev, const ap_tensor *x,
                            const ap_tensor *eps, const ap_ddim_scalars *c);

/* Classifier-free guidance as AlignProp's main.py writes it:
 * eps = eps_u + guidance * (eps_c - eps_u), in that order.
 * eps, eps_u, eps_c: the same shape, e.g. (B, C, H, W); eps may alias
 * eps_u or eps_c. */
int ap_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u,
                        const ap_tensor *eps_c, float guidance);

/* deps_c = guidance * deps, deps_u = deps - guidance * deps (each optional,
 * =), all the same shape. Either may alias deps (each element is read
 * before it is written), not each other. */
int ap_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c,
                         const ap_tensor *deps, float guidance);

#endif
