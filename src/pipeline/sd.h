/* sd.h: a Stable Diffusion pipeline (tokenizer, CLIP text encoder, UNet with
 * optional LoRA, VAE decoder, DDIM) loaded from a diffusers model directory,
 * and text-to-image sampling with classifier-free guidance as
 * StableDiffusionPipeline does it (empty negative prompt, guidance on
 * eps_u + g·(eps_c − eps_u), DDIM with η = 0, decode of latent/scaling_factor).
 *
 * The initial noise comes from our own seeded generator (splitmix64 +
 * Box-Muller): a seed gives the same images on every machine and thread
 * count, but not the images PyTorch's generator would give. Given the same
 * initial latents (ap_sample_opts.init_noise), the result is diffusers'
 * (tests/pipeline/test_sd_golden.c).
 *
 * Two ways to load: a diffusers directory (ap_sd_open), or a single-file
 * CompVis checkpoint plus a tokenizer folder (ap_sd_open_single).
 */
#ifndef AP_PIPELINE_SD_H
#define AP_PIPELINE_SD_H

#include <stdint.h>

#include "core/ctx.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sched/ddim.h"
#include "text/tokenizer.h"

typedef struct ap_sd {
    ap_tokenizer *tok;
    ap_clip_text text;
    ap_unet unet;
    ap_vae vae;
    ap_ddim_config sched;
} ap_sd;

typedef struct ap_sample_opts {
    int steps;      /* DDIM steps (50) */
    float guidance; /* CFG scale (7.5) */
    uint64_t seed;  /* noise seed: image k's initial latents come from seed + k alone */
    const uint64_t *seeds; /* (n) per-image noise seeds instead of seed + k; NULL: seed + k */
    int height, width; /* image size in pixels (multiples of the VAE and UNet factors) */
    const float *init_noise; /* (n, C, h, w) initial latents (diffusers' latents=); NULL: seed */
    float *final_latents;    /* (n, C, h, w) the last DDIM latents, written when not NULL */
} ap_sample_opts;

/* Load every component from a diffusers directory (model_index.json beside
 * unet/, vae/, text_encoder/, tokenizer/, scheduler/). lora: NULL, or a
 * save_attn_procs file (or a directory holding pytorch_lora_weights.*); its
 * rank is read off the file. */
int ap_sd_open(ap_sd *sd, const char *dir, const char *lora);
/* The same with LoRA matrices of rank lora_rank (> 0) allocated (zeroed)
 * when lora is NULL: the training job's starting point. */
int ap_sd_open_rank(ap_sd *sd, const char *dir, const char *lora, int lora_rank);

/* Load from one single-file checkpoint in the CompVis layout (.safetensors
 * or .ckpt: model.diffusion_model.*, first_stage_model.*,
 * cond_stage_model.transformer.*; see io/compvis.h), as diffusers'
 * from_single_file does. Such files carry no tokenizer: tokenizer_dir holds
 * vocab.json + merges.txt (a diffusers tokenizer/ folder). config_dir: NULL
 * for SD v1.5's configs (built in), or a diffusers-layout directory whose
 * unet/, vae/, text_encoder/ config.json (and scheduler/
 * scheduler_config.json if present) describe the checkpoint. lora as in
 * ap_sd_open. The layout read off the keys must agree with the configs. */
int ap_sd_open_single(ap_sd *sd, const char *ckpt, const char *tokenizer_dir,
                      const char *config_dir, const char *lora);
void ap_sd_close(ap_sd *sd);
/* Every weight of the pipeline (text encoder, UNet with LoRA and its
 * gradients, VAE) on ctx's device after loading (docs/cuda.md §6); on the
 * CPU nothing changes. Unplace with the same context before ap_sd_close. */
int ap_sd_place(ap_ctx *ctx, ap_sd *sd);
void ap_sd_unplace(ap_ctx *ctx, ap_sd *sd);

/* Rank of a LoRA file or directory, read off its to_k_lora.down matrices
 * (indexes the file: a quick check that it parses). */
int ap_sd_lora_rank(const char *path, int *rank);

/* StableDiffusionPipeline's default image size (height = width): the UNet's
 * sample_size times the VAE factor (SD v1.5: 512, SD 2.1: 768). */
int ap_sd_default_size(const ap_sd *sd);

/* Latent size for an image size; fails naming the factor when not divisible. */
int ap_sd_latent_size(const ap_sd *sd, int height, int width, int *h, int *w);

/* images: n x (3, height, width) floats in the VAE's range (about [-1, 1]).
 * progress (may be NULL) is called after every DDIM step. */
typedef void (*ap_progress_fn)(void *user, int step, int steps);
int ap_sd_sample(ap_ctx *ctx, ap_sd *sd, const char *const *prompts, int n,
                 const ap_sample_opts *o, float *images, ap_progress_fn progress, void *user);

#endif
