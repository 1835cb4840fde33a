/* sampler.c: the CFG + DDIM sampling loop (sampler.h), on ops only. */
#include "pipeline/sampler.h"

#include <stdio.h>

#include "core/err.h"
#include "ops/ddim_step.h"
#include "ops/rows.h"

#define MAX_GROUP 4096

int ap_sampler_inputs(ap_ctx *ctx, const ap_sampler *sm, const ap_tensor *x,
                      const ap_tensor *uncond, const ap_tensor *cond, int k0, int t) {
    const int g = sm->group;
    if (g < 1 || g > MAX_GROUP)
        return ap_fail("sampler: group: expected 1..%d samples per UNet call, found %d",
                       MAX_GROUP, g);
    int idx[2 * MAX_GROUP], zero[MAX_GROUP];
    for (int j = 0; j < g; j++) idx[j] = idx[g + j] = k0 + j, zero[j] = 0;
    /* [x_k; x_k]: the same latent in the unconditional and conditional rows */
    AP_TRY(ap_gather_rows(ctx, &sm->x2, x, idx, 2 * g));
    ap_tensor cu = ap_rows(&sm->ctx2, 0, g), cc = ap_rows(&sm->ctx2, g, g);
    AP_TRY(ap_gather_rows(ctx, &cu, uncond, zero, g));
    AP_TRY(ap_gather_rows(ctx, &cc, cond, idx, g));
    return ap_fill(ctx, &sm->t2, (float)t);
}

/* One step for samples k0 .. k0 + g - 1: x_out = DDIM(i, x_in, CFG(UNet)). */
static int group_step(ap_ctx *ctx, const ap_sampler *sm, int i, const ap_tensor *x_in,
                      const ap_tensor *x_out, const ap_tensor *eps_keep,
                      const ap_tensor *uncond, const ap_tensor *cond, int k0) {
    const int g = sm->group;
    AP_TRY(ap_sampler_inputs(ctx, sm, x_in, uncond, cond, k0, sm->sched->timesteps[i]));
    ap_arena *prev = ctx->tmp;
    ctx->tmp = sm->tmp;
    int rc = ap_unet_forward(ctx, NULL, sm->unet, sm->sv, &sm->eps2, &sm->x2, &sm->t2, &sm->ctx2);
    ctx->tmp = prev;
    AP_TRY(rc);
    /* eps_u = eps2[0..g), eps_c = eps2[g..2g): combined into eps2[0..g) */
    ap_tensor eu = ap_rows(&sm->eps2, 0, g), ec = ap_rows(&sm->eps2, g, g);
    AP_TRY(ap_guidance_forward(ctx, &eu, &eu, &ec, sm->guidance));
    if (eps_keep) {
        ap_tensor keep = ap_rows(eps_keep, k0, g);
        AP_TRY(ap_copy(ctx, &keep, &eu));
    }
    ap_tensor xi = ap_rows(x_in, k0, g), xo = ap_rows(x_out, k0, g);
    return ap_ddim_step(ctx, sm->sched, i, &xo, &xi, &eu, NULL);
}

int ap_sampler_run(ap_ctx *ctx, const ap_sampler *sm, const ap_tensor *lat,
                   const ap_tensor *eps_keep, const ap_tensor *uncond, const ap_tensor *cond,
                   const char *what, ap_sampler_step_fn step, void *user) {
    const int S = sm->sched->steps, g = sm->group;
    AP_TRY(ap_expect(what, "latents", lat, 5, (int64_t[]){-1, -1, -1, -1, -1}));
    const int keep_all = lat->shape[0] != 1;
    if (keep_all && lat->shape[0] != S + 1)
        return ap_fail("%s: latents: expected 1 or steps + 1 = %d slots, found %lld", what, S + 1,
                       (long long)lat->shape[0]);
    const int64_t b = lat->shape[1];
    if (g < 1 || b % g)
        return ap_fail("%s: %lld samples: expected a multiple of the UNet group %d", what,
                       (long long)b, g);
    ap_tensor x = ap_row(lat, 0);
    AP_TRY(ap_check_finite_tensor(ctx, &x, what));
    for (int i = 0; i < S; i++) {
        ap_tensor xi = ap_row(lat, keep_all ? i : 0), xo = ap_row(lat, keep_all ? i + 1 : 0);
        ap_tensor ek = eps_keep ? ap_row(eps_keep, i) : (ap_tensor){0};
        for (int64_t k0 = 0; k0 < b; k0 += g)
            AP_TRY(group_step(ctx, sm, i, &xi, &xo, eps_keep ? &ek : NULL, uncond, cond, (int)k0));
        char msg[128];
        snprintf(msg, sizeof msg, "%s: DDIM step %d of %d (t = %d): latents", what, i + 1, S,
                 sm->sched->timesteps[i]);
        AP_TRY(ap_check_finite_tensor(ctx, &xo, msg));
        if (step) AP_TRY(step(user, i + 1, S));
    }
    return AP_OK;
}
