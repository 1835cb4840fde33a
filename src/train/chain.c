/* chain.c: reward backpropagation through the DDIM chain for one
 * micro-batch, checkpointed per step (chain.h).
 *
 * Accumulation: LoRA grads += (into unet->lora_grad); activation gradients
 * (dx, deps) are overwritten except dx of attached samples, to which the
 * UNet's input gradients of both CFG branches are added. */
#include "train/chain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/finite.h"
#include "core/killpoint.h"
#include "ops/ddim_step.h"
#include "ops/rows.h"
#include "pipeline/sampler.h"

static size_t lat_n(const ap_chain *ch) { return (size_t)(ch->C * ch->h * ch->w); }

/* The chain's own tensors (latents, UNet call buffers, gradients, images),
 * carved from one block of the context's device memory (ap_arena_init_on):
 * nothing here is a host malloc, so the same code runs on the CPU and CUDA
 * backends (docs/cuda.md §6). */
typedef struct {
    float **slot;
    size_t n;
    const char *what;
} chain_buf;

static int chain_buffers(ap_chain *ch, ap_ctx *ctx, const chain_buf *b, int nb) {
    size_t bytes = 0;
    for (int i = 0; i < nb; i++) bytes += ap_align64(b[i].n * sizeof(float));
    AP_TRY(ap_arena_init_on(ctx, &ch->bufs, bytes, "chain buffers (latents, UNet calls, gradients, images)"));
    for (int i = 0; i < nb; i++)
        if (b[i].n && !(*b[i].slot = ap_arena_floats(&ch->bufs, b[i].n, b[i].what))) return AP_ERR;
    return AP_OK;
}

/* a tensor of the chain on the chain's device */
static ap_tensor on(const ap_chain *ch, ap_tensor t) {
    t.device = ch->device;
    return t;
}

int ap_chain_init(ap_chain *ch, ap_ctx *ctx, const ap_unet *unet, const ap_vae *vae,
                  const ap_reward *reward,
                  const ap_ddim_config *sched, int steps, float guidance, int cap,
                  int64_t H, int64_t W, int64_t L, int64_t D) {
    memset(ch, 0, sizeof *ch);
    if (cap < 1) return ap_fail("chain: micro-batch capacity %d: expected >= 1", cap);
    if (!unet->lora_rank || !unet->lora_grad)
        return ap_fail("chain: the UNet has no LoRA to train (lora_rank 0)");
    if (!isfinite(guidance)) return ap_fail("chain: guidance scale %g: expected a finite number", guidance);
    int f = 1 << (vae->cfg.n_blocks - 1);
    if (H % f || W % f) return ap_fail("chain: image %lldx%lld: expected multiples of %d", (long long)H, (long long)W, f);
    ch->unet = unet, ch->vae = vae, ch->reward = reward;
    ch->guidance = guidance, ch->cap = cap;
    ch->C = unet->cfg.in_channels, ch->h = H / f, ch->w = W / f, ch->L = L, ch->D = D;
    ch->H = H, ch->W = W;
    if (unet->cfg.cross_dim != D)
        return ap_fail("chain: context width %lld does not match the UNet's cross_attention_dim %d",
                       (long long)D, unet->cfg.cross_dim);
    if (vae->cfg.latent_channels != ch->C)
        return ap_fail("chain: VAE latent_channels %d does not match the UNet's in_channels %lld",
                       vae->cfg.latent_channels, (long long)ch->C);
    AP_TRY(ap_ddim_init(&ch->sched, sched, steps));
    const int S = ch->sched.steps;
    const size_t n = lat_n(ch), c = (size_t)cap;
    ch->be = ctx->be, ch->device = ctx->device, ch->stream = ctx->stream;
    const chain_buf bufs[] = {
        {&ch->lat, (size_t)(S + 1) * c * n, "chain latents (steps + 1)"},
        {&ch->eps_store, ch->sched.clip_sample ? (size_t)S * c * n : 0, "chain eps per step"},
        {&ch->x2, 2 * n, "UNet input"},
        {&ch->eps2, 2 * n, "UNet output"},
        {&ch->d2, 2 * n, "UNet output gradient"},
        {&ch->dx2, 2 * n, "UNet input gradient"},
        {&ch->ctx2, 2 * (size_t)(L * D), "UNet context"},
        {&ch->cond, c * (size_t)(L * D), "prompt embeddings"},
        {&ch->uncond, (size_t)(L * D), "empty-prompt embedding"},
        {&ch->ts2, 2, "timesteps"},
        {&ch->dx, c * n, "latent gradient"},
        {&ch->deps, c * n, "eps gradient"},
        {&ch->image, c * 3 * (size_t)(H * W), "images"},
        {&ch->dimage, c * 3 * (size_t)(H * W), "image gradient"},
        {&ch->loss_b, c, "losses"},
    };
    int rc = chain_buffers(ch, ctx, bufs, (int)(sizeof bufs / sizeof bufs[0]));
    /* every UNet call is one sample's two CFG rows (forward and recompute) */
    ap_unet_plan up;
    if (!rc) rc = ap_unet_plan_measure(ctx, unet, 2, ch->h, ch->w, L, &up);
    if (!rc) rc = ap_ctx_reserve(ctx, up.scratch_bytes);
    ap_plan vp = {0}, rp = {0};
    if (!rc) rc = ap_vae_plan_measure(ctx, vae, cap, ch->h, ch->w, &vp);
    if (!rc) rc = ap_ctx_reserve(ctx, vp.scratch_bytes);
    if (!rc) rc = ap_reward_plan_measure(ctx, reward, cap, H, W, &rp);
    if (!rc) rc = ap_ctx_reserve(ctx, rp.scratch_bytes);
    /* The UNet's workspaces (sampling, recompute) and the VAE's (decode,
     * its backward) are never in use at the same time: a step runs all the
     * sampling, then the VAE and the reward, then the UNet recompute. One
     * block holds either: max(UNet tape + tmp, VAE tape + tmp) instead of
     * the sum (SD v1.5, one sample: 3.8 GB instead of 6.9). */
    const size_t ut = ap_align64(up.tape_bytes), um = ap_align64(up.tmp_bytes);
    const size_t vt = ap_align64(vp.tape_bytes), vm = ap_align64(vp.tmp_bytes);
    const size_t phase = ut + um > vt + vm ? ut + um : vt + vm;
    if (!rc) rc = ap_arena_init_on(ctx, &ch->phase, phase, "UNet / VAE workspaces (one phase at a time)");
    if (!rc) {
        ch->unet_mem = ap_arena_view(&ch->phase, 0, ut, "UNet tape (one sample, one step)");
        ch->unet_tmp = ap_arena_view(&ch->phase, ut, um, "UNet temporaries");
        ch->vae_mem = ap_arena_view(&ch->phase, 0, vt, "VAE tape");
        ch->vae_tmp = ap_arena_view(&ch->phase, vt, vm, "VAE decoder temporaries");
        if ((ut && !ch->unet_mem.base) || (um && !ch->unet_tmp.base) ||
            (vt && !ch->vae_mem.base) || (vm && !ch->vae_tmp.base))
            rc = ap_fail("chain: the phase block of %zu bytes does not hold its workspaces", phase);
    }
    const size_t rt = ap_align64(rp.tape_bytes), rm = ap_align64(rp.tmp_bytes);
    if (!rc) rc = ap_arena_init_on(ctx, &ch->reward_mem, rt, "reward tape");
    if (!rc) rc = ap_arena_init_on(ctx, &ch->reward_tmp, rm, "reward temporaries");
    if (!rc) rc = ap_unet_saved_init(&ch->unet_sv, unet);
    if (!rc) rc = ap_reward_saved_init(ctx, &ch->reward_sv, reward, cap);
    if (rc) {
        ap_chain_free(ch);
        return AP_ERR;
    }
    ch->unet_tape = ap_tape_on(&ch->unet_mem);
    ch->vae_tape = ap_tape_on(&ch->vae_mem);
    ch->reward_tape = ap_tape_on(&ch->reward_mem);
    ch->planned_bytes = ch->bufs.cap + phase + rt + rm + ap_reward_saved_bytes(&ch->reward_sv);
    return AP_OK;
}

void ap_chain_free(ap_chain *ch) {
    /* the backend that made the blocks frees them */
    ap_ctx owner = {.be = ch->be, .device = ch->device, .stream = ch->stream};
    ap_unet_saved_free(&ch->unet_sv);
    ap_reward_saved_free(&owner, &ch->reward_sv);
    ap_arena_free_on(&owner, &ch->bufs);
    ap_arena_free_on(&owner, &ch->reward_mem);
    ap_arena_free_on(&owner, &ch->reward_tmp);
    ap_arena_free_on(&owner, &ch->phase); /* the UNet's and VAE's arenas are views of it */
    memset(ch, 0, sizeof *ch);
}

/* The shared sampling loop over this chain's one-sample UNet buffers. */
static ap_sampler sampler(ap_chain *ch) {
    const int64_t C = ch->C, h = ch->h, w = ch->w;
    return (ap_sampler){.unet = ch->unet, .sv = &ch->unet_sv, .tmp = &ch->unet_tmp,
                        .sched = &ch->sched,
                        .guidance = ch->guidance, .group = 1,
                        .x2 = on(ch, ap_t4(ch->x2, 2, C, h, w)),
                        .eps2 = on(ch, ap_t4(ch->eps2, 2, C, h, w)),
                        .ctx2 = on(ch, ap_t3(ch->ctx2, 2, ch->L, ch->D)),
                        .t2 = on(ch, ap_t1(ch->ts2, 2))};
}

/* After sampling step done - 1: the "sample" kill point half-way through a
 * training step's forward (tests of the requeue path). */
static int on_step(void *user, int done, int total) {
    const ap_chain_io *io = user;
    if (io->dloss && done - 1 == total / 2) ap_killpoint("sample");
    return AP_OK;
}

static int chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io);

int ap_chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io) {
    ap_arena *prev = ctx->tmp; /* each phase sets its own temporaries */
    int rc = chain_run(ch, ctx, io);
    ctx->tmp = prev;
    return rc;
}

static int chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io) {
    const int b = io->b, S = ch->sched.steps;
    if (b < 1 || b > ch->cap)
        return ap_fail("chain: micro-batch of %d samples: expected 1..%d (the planned capacity)",
                       b, ch->cap);
    const int64_t C = ch->C, h = ch->h, w = ch->w;
    const ap_sampler sm = sampler(ch);
    /* latents x_0 .. x_S (S + 1, b, C, h, w); the combined eps of every step
     * when the step's backward needs it (clip_sample) */
    ap_tensor lat = on(ch, ap_tn(ch->lat, 5, (int64_t[]){S + 1, b, C, h, w}));
    ap_tensor eps_keep = on(ch, ap_tn(ch->eps_store, 5, (int64_t[]){S, b, C, h, w}));
    /* io's noise and prompt embeddings are host arrays: written into the
     * chain's tensors once */
    ap_tensor uncond = on(ch, ap_t3(ch->uncond, 1, ch->L, ch->D));
    ap_tensor cond = on(ch, ap_t3(ch->cond, b, ch->L, ch->D));
    AP_TRY(ap_tensor_write(ctx, &uncond, io->uncond));
    AP_TRY(ap_tensor_write(ctx, &cond, io->cond));

    /* forward: no tape, keep the latents. One sample at a time ([x_k; x_k]
     * with [uncond; cond_k] in one UNet call of batch 2), so a sample's
     * latents never depend on the batch around it and the temporaries are
     * one sample's whatever the capacity. */
    ap_tensor x0 = ap_row(&lat, 0);
    AP_TRY(ap_tensor_write(ctx, &x0, io->noise));
    if (ap_sampler_run(ctx, &sm, &lat, ch->eps_store ? &eps_keep : NULL, &uncond, &cond, "chain",
                       on_step, io)) {
        char m[1024];
        snprintf(m, sizeof m, "%s", ap_errmsg());
        return strstr(m, "non-finite")
                   ? ap_fail("%s (check the weights, guidance scale and learning rate)", m)
                   : AP_ERR;
    }
    ap_tensor xS = ap_row(&lat, S);
    ap_tensor ti = on(ch, ap_t4(ch->image, b, 3, ch->H, ch->W));
    ap_tape *vt = io->dloss ? &ch->vae_tape : NULL, *rt = io->dloss ? &ch->reward_tape : NULL;
    ap_tape_reset(&ch->vae_tape);
    ctx->tmp = &ch->vae_tmp;
    AP_TRY(ap_vae_forward(ctx, vt, ch->vae, &ch->vae_sv, &ti, &xS));
    AP_TRY(ap_check_finite_tensor(ctx, &ti, "chain: the decoded images"));
    if (io->images) AP_TRY(ap_tensor_read(ctx, io->images, &ti));
    ap_tape_reset(&ch->reward_tape);
    ctx->tmp = &ch->reward_tmp;
    AP_TRY(ap_reward_forward(ctx, rt, ch->reward, &ch->reward_sv, io->reward, io->loss, &ti,
                             io->prompts));
    for (int i = 0; io->parts && i < ap_reward_parts(ch->reward); i++)
        memcpy(io->parts + (size_t)i * b, ap_reward_part_values(&ch->reward_sv, i),
               (size_t)b * sizeof(float));
    int64_t bad = ap_first_nonfinite(io->loss, b); /* host scalars, already read back */
    if (bad >= 0)
        return ap_fail("chain: non-finite loss %g for sample %lld (%s reward)",
                       (double)io->loss[bad], (long long)bad, ap_reward_name(ch->reward));
    if (!io->dloss) return AP_OK;

    /* backward: reward -> image -> VAE -> x_S */
    ap_tensor tdi = on(ch, ap_t4(ch->dimage, b, 3, ch->H, ch->W));
    ap_tensor tdx = on(ch, ap_t4(ch->dx, b, C, h, w));
    ap_tensor tdeps = on(ch, ap_t4(ch->deps, b, C, h, w));
    AP_TRY(ap_reward_backward(ctx, rt, ch->reward, &ch->reward_sv, &tdi, io->dloss));
    ctx->tmp = &ch->vae_tmp;
    AP_TRY(ap_vae_backward(ctx, vt, ch->vae, &ch->vae_sv, &tdx, &tdi));
    ctx->tmp = &ch->unet_tmp;

    /* the earliest step any sample has attached: nothing before it matters */
    int first = S;
    for (int k = 0; k < b; k++)
        for (int i = 0; i < first; i++)
            if (io->attached[(size_t)k * S + i]) {
                first = i;
                break;
            }
    ap_tensor td2 = on(ch, ap_t4(ch->d2, 2, C, h, w)), tdx2 = on(ch, ap_t4(ch->dx2, 2, C, h, w));
    ap_tensor d2u = ap_rows(&td2, 0, 1), d2c = ap_rows(&td2, 1, 1);
    for (int i = S - 1; i >= first; i--) {
        ap_tensor xi = ap_row(&lat, i), ei = ch->eps_store ? ap_row(&eps_keep, i) : (ap_tensor){0};
        /* dx <- c_x dx (the latent path), deps = c_eps dx */
        AP_TRY(ap_ddim_step_backward(ctx, &ch->sched, i, &tdx, &tdeps, &tdx, &xi, &ei));
        if (i == (S + first) / 2) ap_killpoint("backward");
        /* recompute step i's UNet call with a tape, one attached sample at a
         * time ([x_k; x_k] with [uncond; cond_k]): the tape holds one sample's
         * two CFG rows whatever the micro-batch, and each sample's gradient
         * is computed alone (it does not depend on the batch composition) */
        for (int k = 0; k < b; k++) {
            if (!io->attached[(size_t)k * S + i]) continue;
            AP_TRY(ap_sampler_inputs(ctx, &sm, &xi, &uncond, &cond, k, ch->sched.timesteps[i]));
            ap_tape_reset(&ch->unet_tape);
            AP_TRY(ap_unet_forward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, &sm.eps2, &sm.x2,
                                   &sm.t2, &sm.ctx2));
            /* deps_u = (1 - g) deps, deps_c = g deps */
            ap_tensor dk = ap_rows(&tdeps, k, 1), xk = ap_rows(&tdx, k, 1);
            AP_TRY(ap_copy(ctx, &d2u, &dk));
            AP_TRY(ap_guidance_backward(ctx, &d2u, &d2c, &d2u, ch->guidance));
            AP_TRY(ap_unet_backward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, &tdx2, &td2));
            /* x_k fed both CFG rows: dx_k += dx_u + dx_c */
            AP_TRY(ap_sum_rows(ctx, &xk, &tdx2, 1));
        }
    }
    return AP_OK;
}
