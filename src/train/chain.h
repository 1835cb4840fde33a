/* chain.h: AlignProp's reward backpropagation through the whole sampling
 * chain for one micro-batch, with per-step gradient checkpointing.
 *
 * Forward (no tape): x_0 = initial noise; for i = 0..S-1, sample by sample
 *   [eps_u; eps_c] = UNet([x_i; x_i], t_i, [uncond; cond])   (one call, batch 2)
 *   eps = eps_u + g (eps_c - eps_u);  x_{i+1} = DDIM step(i, x_i, eps)
 * keeping only the latents x_0..x_S; image = VAE.decode(x_S) (taped, block
 * checkpointed); reward forward (taped); loss_b.
 * Backward from dloss_b: reward -> image -> VAE -> dx_S; then for i = S-1
 * down to the earliest attached step: dx_i = c_x dx_{i+1} (ddim backward)
 * and, for each sample whose step i is attached, the UNet call of step i is
 * recomputed with a tape on that sample alone ([x_k; x_k], batch 2: the tape
 * is one sample's whatever the micro-batch) and back-propagated with
 * deps_u = (1 - g) c_eps dx_{i+1}, deps_c = g c_eps dx_{i+1}: LoRA grads +=
 * (both calls), dx_i += J_u^T deps_u + J_c^T deps_c. A detached step passes
 * the gradient along the latent only (docs/ddim.md §7). With v-prediction
 * (SD 2.x 768) eps is the model output v and c_x, c_eps are the v step's
 * (ddim.md §4, §7); nothing else changes. Memory beyond the S + 1
 * latents does not grow with the number of attached steps.
 *
 * Regulariser toward the base model (DRaFT+, docs/draft.md §2; on after
 * ap_chain_set_base, per sample when io->dkl): at every attached step i of
 * sample k the recompute also runs the UNet without LoRA (ch->base, no
 * tape) on the same inputs; with d = CFG(eps) - CFG(eps_base),
 *   KL_k = sum_{attached i} |d_i|^2 / (A_k C h w)      (A_k: attached steps of k)
 * and dKL_k/deps = 2 d / (A_k C h w) is added to the step's deps scaled by
 * io->dkl[k]; the base prediction is a constant (no gradient through it).
 *
 * DRaFT-LV (docs/draft.md §1; after ap_chain_set_lv, when io->lv_n > 0):
 * the forward samples x_S as above (its reward and loss are io's); the
 * gradient is instead the mean over n draws j of the gradient of
 *   x'_j = sqrt(a_t) sg(x_S) + sqrt(1 - a_t) e_j     (t = timesteps[S-1], e_j = io->lv_noise[j])
 *   x^_j = DDIM step S-1 (x'_j, CFG(UNet(x'_j)));  loss_b(VAE(x^_j))
 * each through its last-step UNet call only (dloss / n per draw; io->attached
 * is not read). Memory: one sample's UNet tape as above, the VAE's and the
 * reward's for one draw at a time.
 */
#ifndef AP_TRAIN_CHAIN_H
#define AP_TRAIN_CHAIN_H

#include <stdint.h>

#include "core/ctx.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sched/ddim.h"
#include "train/reward.h"

typedef struct ap_chain {
    const ap_unet *unet;      /* with LoRA; grads accumulate into unet->lora_grad */
    const ap_vae *vae;
    const ap_reward *reward;
    ap_ddim sched;
    float guidance;
    int cap;                  /* largest micro-batch planned */
    int64_t C, h, w, L, D;    /* latent channels and size, context length and width */
    int64_t H, W;             /* image size */
    /* workspaces (planned once by ap_chain_init from dry runs); the chain
     * must not move after it (the tapes point at its arenas) */
    const struct ap_backend *be;        /* the backend whose memory holds every buffer below */
    ap_device device;
    void *stream;
    ap_arena bufs;                      /* one block: the tensors below, carved */
    ap_arena phase;                     /* one block: the UNet's workspaces or the VAE's */
    ap_arena unet_mem, unet_tmp;        /* views of phase: UNet tape and temporaries */
    ap_arena vae_mem, vae_tmp;          /* views of phase: VAE tape and temporaries */
    ap_arena reward_mem, reward_tmp;    /* the reward's own (alive with the VAE's tape) */
    ap_tape unet_tape, vae_tape, reward_tape; /* one tape per model (core/tape.h) */
    ap_unet_saved unet_sv;
    ap_unet base;             /* the UNet without LoRA (ap_chain_set_base), or zeroed */
    int has_base;
    ap_arena base_bufs, lv_bufs;  /* blocks on the chain's device: the two buffer sets below */
    float *kb2;               /* (2, C, h, w) base predictions, then the KL difference */
    float *kl1;               /* (1) |difference|^2 */
    int has_lv;               /* ap_chain_set_lv */
    float *lv_x, *lv_eps, *lv_xo, *lv_e;   /* (cap, C, h, w) x', its CFG eps, x^, e_j */
    float *lv_loss, *lv_reward, *lv_dloss; /* (cap) host: one draw's losses, rewards, dloss / n */
    ap_vae_saved vae_sv;
    ap_reward_saved reward_sv;
    /* tensor data on the context's device (carved from bufs) */
    float *lat;               /* (S + 1, cap, C, h, w) latents */
    float *eps_store;         /* (S, cap, C, h, w) combined eps, only with clip_sample */
    float *cond, *uncond;                   /* (cap, L, D), (1, L, D): io's embeddings */
    float *x2, *eps2, *ctx2, *ts2;          /* UNet call buffers (2, ...): one sample */
    float *d2, *dx2;                        /* UNet gradients (2, ...): one sample */
    float *dx, *deps, *image, *dimage;      /* (cap, ...) */
    float *loss_b;                          /* (cap) */
    size_t planned_bytes;     /* everything above (bufs, phase, reward arenas and the
                               * reward's saved tensors): the
                               * bytes ap_chain_init takes with ap_arena_init_on */
} ap_chain;

/* Plan for micro-batches up to cap samples of image size H x W. */
int ap_chain_init(ap_chain *ch, ap_ctx *ctx, const ap_unet *unet, const ap_vae *vae,
                  const ap_reward *reward,
                  const ap_ddim_config *sched, int steps, float guidance, int cap,
                  int64_t H, int64_t W, int64_t L, int64_t D);
void ap_chain_free(ap_chain *ch);
/* Enable the regulariser toward the base model (io->dkl): a view of the
 * UNet without LoRA (models/unet.h: ap_unet_base_view) and one sample's
 * buffers for its predictions. Epsilon-prediction models only. */
int ap_chain_set_base(ap_chain *ch, ap_ctx *ctx);
/* Enable DRaFT-LV (io->lv_n): buffers for one draw of the micro-batch. */
int ap_chain_set_lv(ap_chain *ch, ap_ctx *ctx);

typedef struct ap_chain_io {
    int b;                          /* samples in this micro-batch (<= cap) */
    const float *noise;             /* (b, C, h, w) initial latents */
    const float *cond;              /* (b, L, D) prompt embeddings */
    const float *uncond;            /* (L, D) empty-prompt embedding */
    const char *const *prompts;     /* (b) for rewards that read text */
    const unsigned char *attached;  /* (b, S): 1 when step i of sample k is attached */
    const float *dloss;             /* (b) d(objective)/d(loss_b), e.g. loss_coeff / N; NULL: no backward */
    float *loss;                    /* (b) out */
    float *reward;                  /* (b) out */
    float *parts;                   /* (n_parts, b) out: a reward mixture's part rewards
                                     * (ap_reward_parts); may be NULL */
    float *images;                  /* (b, 3, H, W) out, may be NULL */
    const float *dkl;               /* (b) d(objective)/d(KL_b), e.g. kl_coeff / N; NULL: no
                                     * regulariser (needs ap_chain_set_base and dloss) */
    float *kl;                      /* (b) out with dkl: KL_b (docs/draft.md §2) */
    int lv_n;                       /* DRaFT-LV draws (docs/draft.md §1); 0: off */
    const float *lv_noise;          /* (lv_n, b, C, h, w) e_j, with lv_n */
} ap_chain_io;

/* Forward and (when dloss) backward of one micro-batch. */
int ap_chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io);

#endif
