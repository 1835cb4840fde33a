/* chain.c: reward backpropagation through the DDIM chain for one
 * micro-batch, checkpointed per step (chain.h).
 *
 * Accumulation: LoRA grads += (into unet->lora_grad); activation gradients
 * (dx, deps) are overwritten except dx of attached samples, to which the
 * UNet's input gradients of both CFG branches are added. */
#include "train/chain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/killpoint.h"

static size_t lat_n(const ap_chain *ch) { return (size_t)(ch->C * ch->h * ch->w); }

static float *falloc(size_t n, const char *what, size_t *total) {
    *total += n * sizeof(float);
    return ap_malloc(n * sizeof(float), what);
}

int ap_chain_init(ap_chain *ch, ap_ctx *ctx, ap_unet *unet, ap_vae *vae, ap_reward *reward,
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
    size_t tot = 0;
    int rc = AP_OK;
    ch->lat = falloc((size_t)(S + 1) * c * n, "chain latents (steps + 1)", &tot);
    if (ch->sched.clip_sample) ch->eps_store = falloc((size_t)S * c * n, "chain eps per step", &tot);
    ch->x2 = falloc(2 * n, "UNet input", &tot);
    ch->eps2 = falloc(2 * n, "UNet output", &tot);
    ch->d2 = falloc(2 * n, "UNet output gradient", &tot);
    ch->dx2 = falloc(2 * n, "UNet input gradient", &tot);
    ch->ctx2 = falloc(2 * (size_t)(L * D), "UNet context", &tot);
    ch->ts2 = falloc(2, "timesteps", &tot);
    ch->dx = falloc(c * n, "latent gradient", &tot);
    ch->deps = falloc(c * n, "eps gradient", &tot);
    ch->image = falloc(c * 3 * (size_t)(H * W), "images", &tot);
    ch->dimage = falloc(c * 3 * (size_t)(H * W), "image gradient", &tot);
    ch->loss_b = falloc(c, "losses", &tot);
    if (!ch->lat || (ch->sched.clip_sample && !ch->eps_store) || !ch->x2 || !ch->eps2 || !ch->d2 ||
        !ch->dx2 || !ch->ctx2 || !ch->ts2 || !ch->dx || !ch->deps || !ch->image || !ch->dimage ||
        !ch->loss_b)
        rc = AP_ERR;
    /* every UNet call is one sample's two CFG rows (forward and recompute) */
    ap_unet_plan up;
    if (!rc) rc = ap_unet_plan_sizes(unet, 2, ch->h, ch->w, L, ctx->n_threads, &up);
    if (!rc) rc = ap_arena_init(&ch->unet_tape, up.tape_bytes, "UNet tape (one sample, one step)");
    if (!rc) rc = ap_arena_init(&ch->unet_tmp, up.tmp_bytes, "UNet temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, up.scratch_bytes);
    size_t vt = ap_vae_tape_bytes(vae, cap, ch->h, ch->w);
    if (!rc) rc = ap_vae_plan(vae, ctx, cap, ch->h, ch->w);
    if (!rc) rc = ap_arena_init(&ch->vae_tape, vt, "VAE tape");
    if (!rc) rc = ap_reward_plan(reward, ctx, cap, H, W);
    if (rc) {
        ap_chain_free(ch);
        return AP_ERR;
    }
    ch->planned_bytes = tot + up.tape_bytes + up.tmp_bytes + vt;
    return AP_OK;
}

void ap_chain_free(ap_chain *ch) {
    free(ch->lat), free(ch->eps_store), free(ch->x2), free(ch->eps2), free(ch->d2), free(ch->dx2);
    free(ch->ctx2), free(ch->ts2), free(ch->dx), free(ch->deps), free(ch->image), free(ch->dimage);
    free(ch->loss_b);
    ap_arena_free(&ch->unet_tape);
    ap_arena_free(&ch->unet_tmp);
    ap_arena_free(&ch->vae_tape);
    memset(ch, 0, sizeof *ch);
}

static int check_finite(const float *x, int64_t n, const char *what, int step) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return ap_fail("chain: non-finite value %g in %s at element %lld%s%d (check the "
                           "weights, guidance scale and learning rate)", (double)x[i], what,
                           (long long)i, step >= 0 ? " after DDIM step " : ", step ", step);
    }
    return AP_OK;
}

/* One UNet call on [x_k; x_k] for the samples listed in idx (na of them):
 * inputs gathered into x2 / ctx2 / ts2. */
static void gather(ap_chain *ch, const ap_chain_io *io, const float *lat, const int *idx, int na,
                   int t) {
    const size_t n = lat_n(ch), LD = (size_t)(ch->L * ch->D);
    for (int j = 0; j < na; j++) {
        int k = idx[j];
        memcpy(ch->x2 + (size_t)j * n, lat + (size_t)k * n, n * sizeof(float));
        memcpy(ch->x2 + (size_t)(na + j) * n, lat + (size_t)k * n, n * sizeof(float));
        memcpy(ch->ctx2 + (size_t)j * LD, io->uncond, LD * sizeof(float));
        memcpy(ch->ctx2 + (size_t)(na + j) * LD, io->cond + (size_t)k * LD, LD * sizeof(float));
    }
    for (int j = 0; j < 2 * na; j++) ch->ts2[j] = (float)t;
}

int ap_chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io) {
    const int b = io->b, S = ch->sched.steps;
    if (b < 1 || b > ch->cap)
        return ap_fail("chain: micro-batch of %d samples: expected 1..%d (the planned capacity)",
                       b, ch->cap);
    const size_t n = lat_n(ch);
    const int64_t C = ch->C, h = ch->h, w = ch->w, bn = (int64_t)b * (int64_t)n;
    float *lat = ch->lat;
    int idx_all[4096], *idx = idx_all;
    if (b > 4096) return ap_fail("chain: micro-batch above 4096");
    for (int k = 0; k < b; k++) idx[k] = k;

    /* forward: no tape, keep the latents */
    memcpy(lat, io->noise, (size_t)bn * sizeof(float));
    AP_TRY(check_finite(lat, bn, "the initial latents", -1));
    /* one sample at a time: [x_k; x_k] with [uncond; cond_k] in one UNet call
     * of batch 2, so a sample's latents never depend on the batch around it
     * and the temporaries are one sample's whatever the capacity */
    for (int i = 0; i < S; i++) {
        float *xi = lat + (size_t)i * (size_t)b * n, *xo = xi + (size_t)b * n;
        for (int k = 0; k < b; k++) {
            idx[0] = k;
            gather(ch, io, xi, idx, 1, ch->sched.timesteps[i]);
            ap_tensor tx = ap_t4(ch->x2, 2, C, h, w), te = ap_t4(ch->eps2, 2, C, h, w);
            ap_tensor tt = ap_t1(ch->ts2, 2), tc = ap_t3(ch->ctx2, 2, ch->L, ch->D);
            AP_TRY(ap_unet_forward(ctx, ch->unet, NULL, &ch->unet_tmp, &te, &tx, &tt, &tc));
            ap_tensor teu = ap_t4(ch->eps2, 1, C, h, w), tec = ap_t4(ch->eps2 + n, 1, C, h, w);
            AP_TRY(ap_guidance_forward(ctx, &teu, &teu, &tec, ch->guidance));
            if (ch->eps_store)
                memcpy(ch->eps_store + ((size_t)i * (size_t)b + (size_t)k) * n, ch->eps2, n * sizeof(float));
            ap_tensor txo = ap_t4(xo + (size_t)k * n, 1, C, h, w), txi = ap_t4(xi + (size_t)k * n, 1, C, h, w);
            AP_TRY(ap_ddim_step(ctx, &ch->sched, i, &txo, &txi, &teu, NULL));
        }
        AP_TRY(check_finite(xo, bn, "the latents", i));
        if (io->dloss && i == S / 2) ap_killpoint("sample");
    }
    float *xS = lat + (size_t)S * (size_t)b * n;
    const int64_t HW = ch->H * ch->W;
    ap_tensor tl = ap_t4(xS, b, C, h, w), ti = ap_t4(ch->image, b, 3, ch->H, ch->W);
    ap_arena_reset(&ch->vae_tape);
    AP_TRY(ap_vae_forward(ctx, ch->vae, io->dloss ? &ch->vae_tape : NULL, &ti, &tl));
    AP_TRY(check_finite(ch->image, (int64_t)b * 3 * HW, "the decoded images", -1));
    if (io->images) memcpy(io->images, ch->image, (size_t)b * 3 * (size_t)HW * sizeof(float));
    AP_TRY(ap_reward_forward(ch->reward, ctx, &ti, io->prompts, io->reward, io->loss,
                             io->dloss != NULL));
    for (int k = 0; k < b; k++)
        if (!isfinite(io->loss[k]))
            return ap_fail("chain: non-finite loss %g for sample %d (%s reward)", (double)io->loss[k],
                           k, ap_reward_name(ch->reward));
    if (!io->dloss) return AP_OK;

    /* backward: reward -> image -> VAE -> x_S */
    ap_tensor tdi = ap_t4(ch->dimage, b, 3, ch->H, ch->W), tdx = ap_t4(ch->dx, b, C, h, w);
    AP_TRY(ap_reward_backward(ch->reward, ctx, &tdi, io->dloss));
    AP_TRY(ap_vae_backward(ctx, ch->vae, &tdx, &tdi));

    /* the earliest step any sample has attached: nothing before it matters */
    int first = S;
    for (int k = 0; k < b; k++)
        for (int i = 0; i < first; i++)
            if (io->attached[(size_t)k * S + i]) {
                first = i;
                break;
            }
    for (int i = S - 1; i >= first; i--) {
        const float *xi = lat + (size_t)i * (size_t)b * n;
        const float *ei = ch->eps_store ? ch->eps_store + (size_t)i * (size_t)b * n : NULL;
        /* dx <- c_x dx (the latent path), deps = c_eps dx */
        ap_tensor tdxb = ap_t4(ch->dx, b, C, h, w), tdeb = ap_t4(ch->deps, b, C, h, w);
        ap_tensor txb = ap_t4((float *)xi, b, C, h, w), teb = ap_t4((float *)ei, b, C, h, w);
        AP_TRY(ap_ddim_step_backward(ctx, &ch->sched, i, &tdxb, &tdeb, &tdxb, &txb, &teb));
        if (i == (S + first) / 2) ap_killpoint("backward");
        /* recompute step i's UNet call with a tape, one attached sample at a
         * time ([x_k; x_k] with [uncond; cond_k]): the tape holds one sample's
         * two CFG rows whatever the micro-batch, and each sample's gradient
         * is computed alone (it does not depend on the batch composition) */
        for (int k = 0; k < b; k++) {
            if (!io->attached[(size_t)k * S + i]) continue;
            idx[0] = k;
            gather(ch, io, xi, idx, 1, ch->sched.timesteps[i]);
            ap_tensor tx = ap_t4(ch->x2, 2, C, h, w), te = ap_t4(ch->eps2, 2, C, h, w);
            ap_tensor tt = ap_t1(ch->ts2, 2), tc = ap_t3(ch->ctx2, 2, ch->L, ch->D);
            ap_arena_reset(&ch->unet_tape);
            AP_TRY(ap_unet_forward(ctx, ch->unet, &ch->unet_tape, &ch->unet_tmp, &te, &tx, &tt, &tc));
            memcpy(ch->d2, ch->deps + (size_t)k * n, n * sizeof(float));
            /* deps_u = (1 - g) deps, deps_c = g deps */
            ap_tensor tdu = ap_t4(ch->d2, 1, C, h, w), tdc = ap_t4(ch->d2 + n, 1, C, h, w);
            AP_TRY(ap_guidance_backward(ctx, &tdu, &tdc, &tdu, ch->guidance));
            ap_tensor td = ap_t4(ch->d2, 2, C, h, w), tdx2 = ap_t4(ch->dx2, 2, C, h, w);
            AP_TRY(ap_unet_backward(ctx, ch->unet, &ch->unet_tmp, &tdx2, &td));
            float *d = ch->dx + (size_t)k * n;
            const float *gu = ch->dx2, *gc = ch->dx2 + n;
            for (size_t e = 0; e < n; e++) d[e] += gu[e] + gc[e];
        }
    }
    return AP_OK;
}
