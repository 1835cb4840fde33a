/* sampler.h: the one classifier-free-guidance + DDIM sampling loop, shared
 * by `sample` (pipeline/sd.c) and the training chain (train/chain.c, which
 * also serves evaluation).
 *
 * Samples go through the UNet in groups of g (g = the whole batch for
 * `sample`, 1 for the chain: its tape and temporaries stay one sample's).
 * For step i = 0 .. S-1 and each group k0 .. k0+g-1:
 *   x2   (2g, C, h, w) = [x_i[k0..]; x_i[k0..]]      (ap_sampler_inputs)
 *   ctx2 (2g, L, D)    = [uncond x g; cond[k0..]]
 *   t2   (2g)          = timesteps[i]
 *   [eps_u; eps_c] = UNet(x2, t2, ctx2)             (eps2, (2g, C, h, w))
 *   eps = eps_u + guidance (eps_c - eps_u)          (ap_guidance_forward)
 *   x_{i+1}[k0..] = DDIM step i (x_i[k0..], eps)    (ap_ddim_step)
 * then a non-finite check of x_{i+1} (a count read back to the host) and
 * the caller's per-step callback. Every sample's latents are computed from
 * its own inputs alone (the UNet's GEMMs run per item), so they do not
 * depend on g or on the batch.
 */
#ifndef AP_PIPELINE_SAMPLER_H
#define AP_PIPELINE_SAMPLER_H

#include "core/ctx.h"
#include "core/tensor.h"
#include "models/unet.h"
#include "sched/ddim.h"

typedef struct ap_sampler {
    const ap_unet *unet;
    ap_unet_saved *sv;      /* the UNet call's descriptors (ap_unet_saved_init) */
    ap_arena *tmp;          /* UNet temporaries (ctx->tmp during its calls), planned
                               for batch 2 * group */
    const ap_ddim *sched;
    float guidance;
    int group;              /* g: samples per UNet call */
    /* one call's buffers, caller-owned */
    ap_tensor x2;           /* (2g, C, h, w) */
    ap_tensor eps2;         /* (2g, C, h, w) */
    ap_tensor ctx2;         /* (2g, L, D) */
    ap_tensor t2;           /* (2g) */
} ap_sampler;

/* Called after step i (1-based count done of total); non-zero stops the
 * loop with that code. */
typedef int (*ap_sampler_step_fn)(void *user, int done, int total);

/* Fill x2, ctx2, t2 for samples k0 .. k0 + g - 1 (g = the sampler's group)
 * at timestep t: x (b, C, h, w), uncond (1, L, D), cond (b, L, D). */
int ap_sampler_inputs(ap_ctx *ctx, const ap_sampler *sm, const ap_tensor *x,
                      const ap_tensor *uncond, const ap_tensor *cond, int k0, int t);

/* The loop over every step. lat: (S + 1, b, C, h, w) keeps every latent
 * (x_0 given in lat[0], x_i in lat[i]), or (1, b, C, h, w) updated in place
 * (x_0 in, x_S out). eps_keep: (S, b, C, h, w) receives every step's
 * combined eps (for a backward through a clamp), or NULL. b must be a
 * multiple of the group. what prefixes errors ("sample", "chain"). step:
 * NULL, or called after every step. The initial latents are checked too. */
int ap_sampler_run(ap_ctx *ctx, const ap_sampler *sm, const ap_tensor *lat,
                   const ap_tensor *eps_keep, const ap_tensor *uncond, const ap_tensor *cond,
                   const char *what, ap_sampler_step_fn step, void *user);

#endif
