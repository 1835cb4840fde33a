/* vae.h: the decoder half of diffusers 0.17.1 AutoencoderKL as AlignProp
 * uses it (docs/vae.md), forward and backward w.r.t. the latent only (all
 * weights frozen):
 *
 *   image = decoder(post_quant_conv(latent / scaling_factor))
 *
 * The division by scaling_factor (0.18215 for SD v1.5) is INSIDE forward, so
 * the caller passes the raw DDIM latent, and backward returns the gradient
 * w.r.t. that raw latent (the 1/scaling_factor factor included).
 *
 * Decoder: conv_in 3x3 (L -> Cm, Cm = block_out_channels[-1]);
 * mid_block = resnet, single-head self-attention (GroupNorm, q/k/v/out
 * Linear, scale 1/sqrt(Cm), residual), resnet; up blocks over
 * reversed(block_out_channels), each with layers_per_block + 1 VAE resnets
 * (nn/resnet.h) and, except the last, nearest 2x + conv 3x3; GroupNorm,
 * SiLU, conv_out 3x3 (C0 -> out_channels). Every GroupNorm has eps 1e-6.
 *
 * Memory (core/tape.h): activations that backward needs go to the caller's
 * tape, their descriptors to the caller's ap_vae_saved; temporaries to
 * ctx->tmp and the ctx scratch, all sized by ap_vae_plan_measure from a
 * measured dry run. Forward with tape NULL is inference. The model is const:
 * any number of forward/backward pairs may be in flight on separate tapes.
 *
 * Block checkpointing (the default; v->full_tape = 1 turns it off, then
 * measure the plan again): every forward goes one image at a time, so tmp and
 * scratch are those of B = 1 whatever the batch. A taped forward runs the
 * layers as inference does and keeps on the tape only the inputs of the mid
 * block, of each up block and of conv_norm_out, for the whole batch. Backward
 * takes the images one by one and walks the segments last to first: it runs
 * one segment's forward again from its saved input with the rest of the tape
 * (reused by every segment and image), then that segment's backward. The ops
 * and their order are those of a full-tape run on each image alone, so image
 * and dlatent are bit-identical to it; a batched run (full tape, whole batch)
 * differs from it only by the ops' reassociation across the batch (~1e-6).
 * The cost is one more forward (less conv_in). Measured bytes (tape + tmp +
 * scratch, 2 threads; tests/models/test_vae) for SD v1.5 at 64 x 64 latents:
 *   B 1: full tape 3.82 + 1.48 + 0.04 = 5.34 GB; checkpointed 2.33 + 1.48 + 0.04 = 3.85 GB
 *   B 4: full tape 15.27 + 5.91 + 0.04 = 21.22 GB; checkpointed 4.09 + 1.48 + 0.04 = 5.61 GB
 * (per image: 0.59 GB of checkpoints; the largest segment, up block 3 at
 * 512 x 512, takes 1.75 GB of tape when recomputed).
 */
#ifndef AP_MODELS_VAE_H
#define AP_MODELS_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/weights.h"
#include "nn/mha.h"
#include "nn/resnet.h"

#define AP_VAE_MAX_BLOCKS 8 /* len(block_out_channels) */
#define AP_VAE_MAX_LAYERS 8 /* resnets per up block = layers_per_block + 1 */

/* The vae/config.json fields the decoder depends on (SD v1.5 values). */
typedef struct ap_vae_config {
    int latent_channels;              /* 4 */
    int out_channels;                 /* 3 */
    int n_blocks;                     /* len(block_out_channels): 4 */
    int block_out[AP_VAE_MAX_BLOCKS]; /* block_out_channels: 128, 256, 512, 512 */
    int layers_per_block;             /* 2 (3 resnets per decoder up block) */
    int groups;                       /* norm_num_groups: 32 */
    float scaling_factor;             /* 0.18215 (the default when absent) */
} ap_vae_config;

typedef struct ap_vae_up_block {
    int cin, cout, n_res;             /* resolution doubles at the end unless last */
    ap_resnet res[AP_VAE_MAX_LAYERS]; /* res[0]: cin -> cout, others cout -> cout */
    ap_tensor up_w, up_b;             /* (cout, cout, 3, 3), (cout); data NULL: no upsampler */
} ap_vae_up_block;

/* What a forward keeps for its backward (core/tape.h): descriptors
 * pointing into the caller's tape; caller-owned, any number may exist.
 * Backward refills the segment records when it recomputes (checkpointing). */
typedef struct ap_vae_saved {
    ap_tape_rec rec;                       /* the forward's stamp */
    int64_t B, h, w;                       /* latent batch and size */
    ap_resnet_saved mid0, mid1;
    ap_tensor attn_x;                      /* (B, Cm, h, w) attention input = residual */
    ap_tensor attn_mean, attn_rstd;        /* (B, groups) */
    ap_tensor attn_tok;                    /* (B, h*w, Cm) GroupNorm output, tokens */
    ap_mha_saved attn;
    ap_resnet_saved res[AP_VAE_MAX_BLOCKS][AP_VAE_MAX_LAYERS];
    ap_tensor out_x, out_n;                /* (B, C0, H, W) conv_norm_out input, output */
    ap_tensor out_mean, out_rstd;          /* (B, groups) */
    /* block checkpointing: ck[0] mid block input (B, Cm, h, w), ck[1 + i] up
     * block i input, ck[n_blocks + 1] conv_norm_out input (B, C0, H, W) */
    int ckpt;
    ap_tensor ck[AP_VAE_MAX_BLOCKS + 2];
    size_t tape_mark;                      /* the tape's used bytes after the checkpoints */
} ap_vae_saved;

typedef struct ap_vae {
    ap_vae_config cfg;
    ap_params params;                      /* every weight, one flat buffer */
    ap_tensor pq_w, pq_b;                  /* post_quant_conv (L, L, 1, 1), (L) */
    ap_tensor in_w, in_b;                  /* decoder.conv_in (Cm, L, 3, 3), (Cm) */
    ap_resnet mid_res[2];                  /* decoder.mid_block.resnets.{0,1}: Cm -> Cm */
    ap_tensor attn_norm_w, attn_norm_b;    /* decoder.mid_block.attentions.0.group_norm (Cm) */
    ap_mha attn;                           /* to_q/to_k/to_v/to_out.0 (Cm, Cm) + bias */
    ap_vae_up_block up[AP_VAE_MAX_BLOCKS]; /* decoder.up_blocks.i */
    ap_tensor norm_out_w, norm_out_b;      /* decoder.conv_norm_out (C0) */
    ap_tensor out_w, out_b;                /* decoder.conv_out (out, C0, 3, 3), (out) */
    int full_tape;                         /* 1: tape every activation (no recompute),
                                              whole batch at once; 0 (after declare/load):
                                              block checkpointing, one image at a time */
} ap_vae;

/* SD v1.5's vae/config.json values. */
void ap_vae_config_sd15(ap_vae_config *c);
/* Read a diffusers vae/config.json. Unsupported values (an up block type
 * other than UpDecoderBlock2D, act_fn other than silu, channels not divisible
 * by norm_num_groups, ...) fail with a message naming the key. */
int ap_vae_config_load(ap_vae_config *c, const char *path);

/* Declare every decoder + post_quant_conv parameter with its diffusers key in
 * state-dict order (decoder.conv_in ... decoder.conv_out, post_quant_conv),
 * without allocating (v->params then lists names and shapes). */
int ap_vae_declare(ap_vae *v, const ap_vae_config *c);
/* Choose the storage of the frozen weights (io/weights.h
 * ap_weights_frozen_dtype: convs in bf16/f16, the attention's projections
 * f32) without allocating; ap_vae_alloc calls it. */
void ap_vae_store_frozen(ap_vae *v);
/* Allocate the declared parameters (zeroed). */
int ap_vae_alloc(ap_vae *v);
/* Fill the allocated parameters from an index whose names are diffusers
 * names under prefix ("" for a diffusers vae/ file). Encoder and quant_conv
 * tensors are known and not reported as unused. */
int ap_vae_fill(ap_vae *v, const ap_wsrc *w, const char *prefix);
/* Rename hook (io/weights.h) for diffusers-format VAE files: the deprecated
 * mid-block attention names query/key/value/proj_attn (diffusers <= 0.16,
 * the SD v1.5 Hub files) -> to_q/to_k/to_v/to_out.0. ap_vae_load installs
 * it; install it on your own index before ap_vae_fill. ctx unused. */
int ap_vae_legacy_rename(void *ctx, const char *key, char *name, size_t cap);
/* All of the above from a diffusers vae/ directory: config.json plus
 * diffusion_pytorch_model.safetensors (preferred, as diffusers does) or
 * diffusion_pytorch_model.bin. */
int ap_vae_load(ap_vae *v, const char *dir);
void ap_vae_free(ap_vae *v);

/* The workspaces of an inference forward, a forward with tape and its
 * backward of a (B, L, h, w) latent under v->full_tape, measured by a dry run
 * of that code on ctx's backend, kernel variant and threads: tape (with
 * block checkpointing: the checkpoints plus the largest segment's tape),
 * ctx->tmp and ctx scratch. Weights are never read (declared shapes with
 * unbacked data suffice). */
int ap_vae_plan_measure(ap_ctx *ctx, const ap_vae *v, int64_t B, int64_t h, int64_t w,
                        ap_plan *p);

/* image (B, out_channels, h*s, w*s), s = 2^(n_blocks - 1) (8 for SD), from
 * latent (B, latent_channels, h, w), the raw DDIM latent (forward divides
 * it by scaling_factor). tape NULL: inference (nothing kept). Temporaries
 * from ctx->tmp, planned by ap_vae_plan_measure. */
int ap_vae_forward(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *sv,
                   const ap_tensor *image, const ap_tensor *latent);
/* dlatent (=, (B, L, h, w)) from dimage (B, out, h*s, w*s), through what the
 * forward with tape kept in sv (refilled when block checkpointing recomputes). */
int ap_vae_backward(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *sv,
                    const ap_tensor *dlatent, const ap_tensor *dimage);

#endif
