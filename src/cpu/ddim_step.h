/* cpu/ddim_step.h: CPU bodies of the sampling-step ops (ops/ddim_step.h).
 * They trust their arguments (the public ops checked them). */
#ifndef AP_CPU_DDIM_STEP_H
#define AP_CPU_DDIM_STEP_H

#include "ops/ddim_step.h"

int ap_cpu_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x,
                               const ap_tensor *eps, const ap_tensor *noise,
                               const ap_ddim_scalars *c);
int ap_cpu_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps,
                                const ap_tensor *dx_prev, const ap_tensor *x,
                                const ap_tensor *eps, const ap_ddim_scalars *c);
int ap_cpu_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u,
                            const ap_tensor *eps_c, float guidance);
int ap_cpu_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c,
                             const ap_tensor *deps, float guidance);

#endif
