/* cpu/ddim_step.c: DDIM update and guidance loops (CPU bodies of
 * ops/ddim_step.h), moved from sched/ddim.c unchanged: one float32
 * expression per element in diffusers' / autograd's order, one thread
 * (latents are small; the loops are memory-bound). */
#include "cpu/ddim_step.h"

#include "core/err.h"

int ap_cpu_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x,
                               const ap_tensor *eps, const ap_tensor *noise,
                               const ap_ddim_scalars *c) {
    const float *xs = x->data, *es = eps->data, *nz = ap_present(noise) ? noise->data : NULL;
    float *out = x_prev->data;
    const int64_t n = ap_numel(x);
    const float r = c->clip_range;
    for (int64_t k = 0; k < n; k++) {
        float e = es[k], x0;
        if (c->vpred) { /* e holds v; diffusers' op order (docs/ddim.md §4) */
            float v = e, xk = xs[k];
            x0 = c->sqrt_alpha_t * xk - c->sqrt_beta_t * v;
            e = c->sqrt_alpha_t * v + c->sqrt_beta_t * xk;
        } else {
            x0 = (xs[k] - c->sqrt_beta_t * e) / c->sqrt_alpha_t;
        }
        if (c->clip) x0 = x0 < -r ? -r : x0 > r ? r : x0; /* NaN passes, as torch */
        float xp = c->sqrt_alpha_prev * x0 + c->sqrt_dir * e;
        if (nz) xp = xp + c->sigma * nz[k];
        out[k] = xp;
    }
    return AP_OK;
}

int ap_cpu_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps,
                                const ap_tensor *dx_prev, const ap_tensor *x,
                                const ap_tensor *eps, const ap_ddim_scalars *c) {
    const float *g_ = dx_prev->data;
    const float *xs = c->clip ? x->data : NULL, *es = c->clip ? eps->data : NULL;
    float *ox = ap_present(dx) ? dx->data : NULL, *oe = ap_present(deps) ? deps->data : NULL;
    const int64_t n = ap_numel(dx_prev);
    const float r = c->clip_range;
    for (int64_t k = 0; k < n; k++) {
        float g = g_[k];
        float gx0 = g * c->sqrt_alpha_prev;
        if (c->clip) {
            float x0 = c->vpred ? c->sqrt_alpha_t * xs[k] - c->sqrt_beta_t * es[k]
                                : (xs[k] - c->sqrt_beta_t * es[k]) / c->sqrt_alpha_t;
            if (!(x0 >= -r && x0 <= r)) gx0 = 0.0f; /* clamp passes grad on [-r, r] */
        }
        if (c->vpred) {
            /* x feeds x0 and e, v feeds both too: two-term sums (order-free) */
            float ge = g * c->sqrt_dir;
            float gv = ge * c->sqrt_alpha_t - gx0 * c->sqrt_beta_t;
            float gx = gx0 * c->sqrt_alpha_t + ge * c->sqrt_beta_t;
            if (oe) oe[k] = gv;
            if (ox) ox[k] = gx;
            continue;
        }
        float q = gx0 / c->sqrt_alpha_t;
        if (oe) oe[k] = g * c->sqrt_dir - q * c->sqrt_beta_t;
        if (ox) ox[k] = q;
    }
    return AP_OK;
}

int ap_cpu_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u,
                            const ap_tensor *eps_c, float guidance) {
    const float *us = eps_u->data, *cs = eps_c->data;
    float *out = eps->data;
    const int64_t n = ap_numel(eps);
    for (int64_t k = 0; k < n; k++) {
        float u = us[k];
        out[k] = u + guidance * (cs[k] - u);
    }
    return AP_OK;
}

int ap_cpu_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c,
                             const ap_tensor *deps, float guidance) {
    const float *gs = deps->data;
    float *du = ap_present(deps_u) ? deps_u->data : NULL;
    float *dc = ap_present(deps_c) ? deps_c->data : NULL;
    const int64_t n = ap_numel(deps);
    for (int64_t k = 0; k < n; k++) {
        float g = gs[k], gc = guidance * g;
        if (dc) dc[k] = gc;
        if (du) du[k] = g - gc;
    }
    return AP_OK;
}
