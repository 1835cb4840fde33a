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
} ap_chain_io;

/* Forward and (when dloss) backward of one micro-batch. */
int ap_chain_run(ap_chain *ch, ap_ctx *ctx, ap_chain_io *io);

#endif
