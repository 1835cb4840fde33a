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
#include "ops/elementwise.h"
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

static int chain_buffers(ap_ctx *ctx, ap_arena *a, const char *what, const chain_buf *b, int nb) {
    size_t bytes = 0;
    for (int i = 0; i < nb; i++) bytes += ap_align64(b[i].n * sizeof(float));
    AP_TRY(ap_arena_init_on(ctx, a, bytes, what));
    for (int i = 0; i < nb; i++)
        if (b[i].n && !(*b[i].slot = ap_arena_floats(a, b[i].n, b[i].what))) return AP_ERR;
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
    int rc = chain_buffers(ctx, &ch->bufs, "chain buffers (latents, UNet calls, gradients, images)",
                           bufs, (int)(sizeof bufs / sizeof bufs[0]));
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

int ap_chain_set_base(ap_chain *ch, ap_ctx *ctx) {
    if (ch->has_base) return AP_OK;
    if (ch->sched.vpred)
        return ap_fail("chain: kl_coeff: the regulariser toward the base model compares noise "
                       "predictions; this model predicts v (prediction_type v_prediction): "
                       "expected kl_coeff 0 (docs/draft.md §2)");
    const size_t n = lat_n(ch);
    const chain_buf bufs[] = {{&ch->kb2, 2 * n, "base-model predictions"}, {&ch->kl1, 1, "KL term"}};
    AP_TRY(chain_buffers(ctx, &ch->base_bufs, "chain: the regulariser's buffers", bufs, 2));
    AP_TRY(ap_unet_base_view(&ch->base, ch->unet));
    ch->has_base = 1;
    ch->planned_bytes += ch->base_bufs.cap;
    return AP_OK;
}

int ap_chain_set_lv(ap_chain *ch, ap_ctx *ctx) {
    if (ch->has_lv) return AP_OK;
    const size_t n = lat_n(ch), c = (size_t)ch->cap;
    const chain_buf bufs[] = {
        {&ch->lv_x, c * n, "DRaFT-LV re-noised latents"},
        {&ch->lv_eps, c * n, "DRaFT-LV noise predictions"},
        {&ch->lv_xo, c * n, "DRaFT-LV denoised latents"},
        {&ch->lv_e, c * n, "DRaFT-LV noise draw"},
    };
    AP_TRY(chain_buffers(ctx, &ch->lv_bufs, "chain: DRaFT-LV's buffers", bufs, 4));
    /* host arrays, as io's losses and rewards */
    ch->lv_loss = ap_malloc(c * sizeof(float), "DRaFT-LV losses");
    ch->lv_reward = ap_malloc(c * sizeof(float), "DRaFT-LV rewards");
    ch->lv_dloss = ap_malloc(c * sizeof(float), "DRaFT-LV loss gradients");
    if (!ch->lv_loss || !ch->lv_reward || !ch->lv_dloss) return AP_ERR;
    ch->has_lv = 1;
    ch->planned_bytes += ch->lv_bufs.cap;
    return AP_OK;
}

void ap_chain_free(ap_chain *ch) {
    /* the backend that made the blocks frees them */
    ap_ctx owner = {.be = ch->be, .device = ch->device, .stream = ch->stream};
    if (ch->has_base) ap_unet_base_view_free(&ch->base);
    ap_arena_free_on(&owner, &ch->base_bufs);
    ap_arena_free_on(&owner, &ch->lv_bufs);
    free(ch->lv_loss), free(ch->lv_reward), free(ch->lv_dloss);
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

/* DRaFT-LV's gradient (chain.h, docs/draft.md §1): for each draw j,
 * x' = sqrt(a_t) x_S + sqrt(1 - a_t) e_j, the last step from x' (no tape),
 * VAE and reward with tapes, then back to eps and one taped UNet recompute
 * per sample; x' gets no gradient (x_S is a constant). */
static int lv_backward(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io, const ap_sampler *sm,
                       const ap_tensor *xS, const ap_tensor *uncond, const ap_tensor *cond) {
    const int b = io->b, S = ch->sched.steps, i = S - 1, t = ch->sched.timesteps[i];
    const int64_t C = ch->C, h = ch->h, w = ch->w;
    const float at = ch->sched.alphas_cumprod[t];
    const float sa = sqrtf(at), sb = sqrtf(1.0f - at); /* alphas_cumprod[t] ** 0.5, (1 - .) ** 0.5 */
    ap_tensor tx = on(ch, ap_t4(ch->lv_x, b, C, h, w)), te = on(ch, ap_t4(ch->lv_eps, b, C, h, w));
    ap_tensor txo = on(ch, ap_t4(ch->lv_xo, b, C, h, w)), tn = on(ch, ap_t4(ch->lv_e, b, C, h, w));
    ap_tensor ti = on(ch, ap_t4(ch->image, b, 3, ch->H, ch->W));
    ap_tensor tdi = on(ch, ap_t4(ch->dimage, b, 3, ch->H, ch->W));
    ap_tensor tdx = on(ch, ap_t4(ch->dx, b, C, h, w)), tdeps = on(ch, ap_t4(ch->deps, b, C, h, w));
    ap_tensor td2 = on(ch, ap_t4(ch->d2, 2, C, h, w));
    ap_tensor d2u = ap_rows(&td2, 0, 1), d2c = ap_rows(&td2, 1, 1);
    ap_tensor eu = ap_rows(&sm->eps2, 0, 1), ec = ap_rows(&sm->eps2, 1, 1);
    float *dl = ch->lv_dloss;
    for (int k = 0; k < b; k++) dl[k] = io->dloss[k] / (float)io->lv_n; /* the mean over draws */
    for (int j = 0; j < io->lv_n; j++) {
        /* x' = sqrt(a_t) x_S + sqrt(1 - a_t) e_j */
        AP_TRY(ap_tensor_write(ctx, &tn, io->lv_noise + (size_t)j * (size_t)b * (size_t)(C * h * w)));
        AP_TRY(ap_scale_forward(ctx, &tx, xS, sa));
        AP_TRY(ap_axpy(ctx, &tx, sb, &tn));
        /* the last step from x', one sample at a time (no tape) */
        ctx->tmp = &ch->unet_tmp;
        for (int k = 0; k < b; k++) {
            ap_tensor ek = ap_rows(&te, k, 1), xk = ap_rows(&tx, k, 1), ok = ap_rows(&txo, k, 1);
            AP_TRY(ap_sampler_inputs(ctx, sm, &tx, uncond, cond, k, t));
            AP_TRY(ap_unet_forward(ctx, NULL, ch->unet, &ch->unet_sv, &sm->eps2, &sm->x2, &sm->t2,
                                   &sm->ctx2));
            AP_TRY(ap_guidance_forward(ctx, &ek, &eu, &ec, ch->guidance));
            AP_TRY(ap_ddim_step(ctx, &ch->sched, i, &ok, &xk, &ek, NULL));
        }
        /* decode and reward with tapes, back to x^ */
        ap_tape_reset(&ch->vae_tape);
        ctx->tmp = &ch->vae_tmp;
        AP_TRY(ap_vae_forward(ctx, &ch->vae_tape, ch->vae, &ch->vae_sv, &ti, &txo));
        AP_TRY(ap_check_finite_tensor(ctx, &ti, "chain: DRaFT-LV's decoded images"));
        ap_tape_reset(&ch->reward_tape);
        ctx->tmp = &ch->reward_tmp;
        AP_TRY(ap_reward_forward(ctx, &ch->reward_tape, ch->reward, &ch->reward_sv, ch->lv_reward,
                                 ch->lv_loss, &ti, io->prompts));
        int64_t bad = ap_first_nonfinite(ch->lv_loss, b); /* host scalars */
        if (bad >= 0)
            return ap_fail("chain: DRaFT-LV draw %d: non-finite loss %g for sample %lld", j,
                           (double)ch->lv_loss[bad], (long long)bad);
        AP_TRY(ap_reward_backward(ctx, &ch->reward_tape, ch->reward, &ch->reward_sv, &tdi, dl));
        ctx->tmp = &ch->vae_tmp;
        AP_TRY(ap_vae_backward(ctx, &ch->vae_tape, ch->vae, &ch->vae_sv, &tdx, &tdi));
        /* deps = c_eps dx^ (x' is a constant: its gradient is not wanted) */
        ctx->tmp = &ch->unet_tmp;
        AP_TRY(ap_ddim_step_backward(ctx, &ch->sched, i, NULL, &tdeps, &tdx, &tx, &te));
        for (int k = 0; k < b; k++) {
            AP_TRY(ap_sampler_inputs(ctx, sm, &tx, uncond, cond, k, t));
            ap_tape_reset(&ch->unet_tape);
            AP_TRY(ap_unet_forward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, &sm->eps2, &sm->x2,
                                   &sm->t2, &sm->ctx2));
            ap_tensor dk = ap_rows(&tdeps, k, 1);
            AP_TRY(ap_copy(ctx, &d2u, &dk));
            AP_TRY(ap_guidance_backward(ctx, &d2u, &d2c, &d2u, ch->guidance));
            AP_TRY(ap_unet_backward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, NULL, &td2));
        }
    }
    return AP_OK;
}

/* kb_u = CFG of the base model (no LoRA, no tape) on the sampler's inputs;
 * kb2 (2, C, h, w) receives [eps_u; eps_c] first. */
static int base_prediction(ap_chain *ch, ap_ctx *ctx, const ap_sampler *sm, const ap_tensor *kb2,
                           const ap_tensor *kbu, const ap_tensor *kbc) {
    AP_TRY(ap_unet_forward(ctx, NULL, &ch->base, &ch->unet_sv, kb2, &sm->x2, &sm->t2, &sm->ctx2));
    return ap_guidance_forward(ctx, kbu, kbu, kbc, ch->guidance);
}

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
    if (io->dkl && (!ch->has_base || !io->dloss || !io->kl))
        return ap_fail("chain: dkl (the regulariser toward the base model) needs "
                       "ap_chain_set_base, dloss and kl");
    if (io->lv_n < 0 || (io->lv_n > 0 && (!ch->has_lv || !io->lv_noise || io->dkl)))
        return ap_fail("chain: DRaFT-LV with %d draws: expected >= 0, after ap_chain_set_lv, "
                       "with lv_noise and without dkl", io->lv_n);
    const int lv = io->dloss && io->lv_n > 0;
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
    /* DRaFT-LV differentiates its draws' decodes, not x_S's */
    ap_tape *vt = io->dloss && !lv ? &ch->vae_tape : NULL;
    ap_tape *rt = io->dloss && !lv ? &ch->reward_tape : NULL;
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
    if (lv) return lv_backward(ch, ctx, io, &sm, &xS, &uncond, &cond);

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
    /* the regulariser: base predictions (kb_u, kb_c), |difference|^2 (kl1) */
    const int64_t n = C * h * w;
    ap_tensor kb2 = on(ch, ap_t4(ch->kb2, 2, C, h, w)), kl1 = on(ch, ap_t1(ch->kl1, 1));
    ap_tensor kbu = ap_rows(&kb2, 0, 1), kbc = ap_rows(&kb2, 1, 1);
    ap_tensor kdiff = ap_reshape(&kbc, 2, (int64_t[]){1, n});
    for (int k = 0; io->dkl && k < b; k++) io->kl[k] = 0;
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
            if (io->dkl) /* the base model's combined prediction, no tape: kb_u */
                AP_TRY(base_prediction(ch, ctx, &sm, &kb2, &kbu, &kbc));
            ap_tape_reset(&ch->unet_tape);
            AP_TRY(ap_unet_forward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, &sm.eps2, &sm.x2,
                                   &sm.t2, &sm.ctx2));
            /* deps_u = (1 - g) deps, deps_c = g deps */
            ap_tensor dk = ap_rows(&tdeps, k, 1), xk = ap_rows(&tdx, k, 1);
            AP_TRY(ap_copy(ctx, &d2u, &dk));
            if (io->dkl) {
                /* d = CFG(eps) - CFG(eps_base) in kb_c; KL_k += |d|^2 / (A_k n);
                 * deps += dkl_k 2 d / (A_k n) (docs/draft.md §2) */
                ap_tensor eu = ap_rows(&sm.eps2, 0, 1), ec = ap_rows(&sm.eps2, 1, 1);
                AP_TRY(ap_guidance_forward(ctx, &kbc, &eu, &ec, ch->guidance));
                AP_TRY(ap_axpy(ctx, &kbc, -1.0f, &kbu));
                AP_TRY(ap_row_dot_forward(ctx, &kl1, &kdiff, &kdiff));
                float sq;
                AP_TRY(ap_tensor_read(ctx, &sq, &kl1));
                int na = 0; /* A_k: the attached steps of sample k */
                for (int j = 0; j < S; j++) na += io->attached[(size_t)k * S + j] != 0;
                const double norm = (double)na * (double)n;
                io->kl[k] += (float)((double)sq / norm);
                AP_TRY(ap_axpy(ctx, &d2u, (float)(2.0 * io->dkl[k] / norm), &kbc));
            }
            AP_TRY(ap_guidance_backward(ctx, &d2u, &d2c, &d2u, ch->guidance));
            AP_TRY(ap_unet_backward(ctx, &ch->unet_tape, ch->unet, &ch->unet_sv, &tdx2, &td2));
            /* x_k fed both CFG rows: dx_k += dx_u + dx_c */
            AP_TRY(ap_sum_rows(ctx, &xk, &tdx2, 1));
        }
    }
    return AP_OK;
}
