/* ddim_step.c: argument checks of the DDIM update and guidance ops
 * (ddim_step.h); the bodies are in cpu/ddim_step.c.
 *
 * Accumulation rule: activation grads = (every output here).
 */
#include "ops/ddim_step.h"

#include "core/err.h"
#include "backend.h"

static int need(const char *op, const char *arg, const ap_tensor *t) {
    if (ap_present(t)) return AP_OK;
    return ap_fail("%s: %s: expected a tensor, found none", op, arg);
}

int ap_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x,
                           const ap_tensor *eps, const ap_tensor *noise,
                           const ap_ddim_scalars *c) {
    const char *op = "ddim_update_forward";
    AP_TRY(ap_expect_same(op, "x", x, "eps", eps));
    AP_TRY(ap_expect_same(op, "x", x, "x_prev", x_prev));
    if (ap_present(noise)) AP_TRY(ap_expect_same(op, "x", x, "noise", noise));
    if (!c) return ap_fail("%s: scalars: expected the step's scalars, found none", op);
    AP_TRY(ap_expect_on(ctx, "ddim_update_forward", "x_prev", x_prev, "x", x, "eps", eps, "noise", noise, NULL));
    return AP_DISPATCH(ctx, ddim_update_forward, x_prev, x, eps, noise, c);
}

int ap_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps,
                            const ap_tensor *dx_prev, const ap_tensor *x,
                            const ap_tensor *eps, const ap_ddim_scalars *c) {
    const char *op = "ddim_update_backward";
    AP_TRY(need(op, "dx_prev", dx_prev));
    if (ap_present(dx)) AP_TRY(ap_expect_same(op, "dx_prev", dx_prev, "dx", dx));
    if (ap_present(deps)) AP_TRY(ap_expect_same(op, "dx_prev", dx_prev, "deps", deps));
    if (!c) return ap_fail("%s: scalars: expected the step's scalars, found none", op);
    if (c->clip) {
        if (!ap_present(x) || !ap_present(eps))
            return ap_fail("%s: x, eps: expected the step's inputs when clip_sample is set "
                           "(they give the clamp mask), found none", op);
        AP_TRY(ap_expect_same(op, "dx_prev", dx_prev, "x", x));
        AP_TRY(ap_expect_same(op, "dx_prev", dx_prev, "eps", eps));
    }
    if (ap_present(dx) && ap_present(deps) && dx->data == deps->data)
        return ap_fail("%s: deps: must not alias dx", op);
    AP_TRY(ap_expect_on(ctx, "ddim_update_backward", "dx", dx, "deps", deps, "dx_prev", dx_prev, "x", x, "eps", eps, NULL));
    return AP_DISPATCH(ctx, ddim_update_backward, dx, deps, dx_prev, x, eps, c);
}

int ap_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u,
                        const ap_tensor *eps_c, float guidance) {
    const char *op = "guidance_forward";
    AP_TRY(ap_expect_same(op, "eps_u", eps_u, "eps_c", eps_c));
    AP_TRY(ap_expect_same(op, "eps_u", eps_u, "eps", eps));
    AP_TRY(ap_expect_on(ctx, "guidance_forward", "eps", eps, "eps_u", eps_u, "eps_c", eps_c, NULL));
    return AP_DISPATCH(ctx, guidance_forward, eps, eps_u, eps_c, guidance);
}

int ap_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c,
                         const ap_tensor *deps, float guidance) {
    const char *op = "guidance_backward";
    AP_TRY(need(op, "deps", deps));
    if (ap_present(deps_u)) AP_TRY(ap_expect_same(op, "deps", deps, "deps_u", deps_u));
    if (ap_present(deps_c)) AP_TRY(ap_expect_same(op, "deps", deps, "deps_c", deps_c));
    if (ap_present(deps_u) && ap_present(deps_c) && deps_u->data == deps_c->data)
        return ap_fail("%s: deps_c: must not alias deps_u", op);
    AP_TRY(ap_expect_on(ctx, "guidance_backward", "deps_u", deps_u, "deps_c", deps_c, "deps", deps, NULL));
    return AP_DISPATCH(ctx, guidance_backward, deps_u, deps_c, deps, guidance);
}
