/* unet.h: diffusers 0.17.1 UNet2DConditionModel (Stable Diffusion 1.x/2.x
 * layout) with AlignProp's LoRA, forward and backward (docs/unet.md, docs/lora.md).
 *
 * The model is built from unet/config.json: block_out_channels, layers_per_block
 * (int or list), down/up block types (CrossAttnDownBlock2D, DownBlock2D,
 * CrossAttnUpBlock2D, UpBlock2D), UNetMidBlock2DCrossAttn, attention_head_dim
 * (int or list; in 0.17.1 it is the NUMBER of heads), cross_attention_dim,
 * norm_num_groups, norm_eps, flip_sin_to_cos, freq_shift, in/out_channels,
 * use_linear_projection, time_embedding_dim. Any other value of a known key
 * that changes the computation is refused with an error naming the key, the
 * value found and what is supported.
 *
 * Parameters (frozen) live in one ap_params list with the checkpoint's key
 * names in state_dict order; the LoRA matrices live in a second list named as
 * AlignProp's save_attn_procs file ("<attn>.processor.to_q_lora.down.weight"),
 * in the order of unet.attn_processors (down blocks, up blocks, mid block),
 * with a parallel flat gradient buffer (lora_grad) for the optimizer.
 *
 * Forward and backward are a flat list of steps (conv_in, resnets,
 * transformers, down/up samplers, skip concatenations, output head) run in
 * order and then in reverse. Activations for backward go on the caller's tape,
 * their descriptors in the caller's ap_unet_saved; temporaries in ctx->tmp.
 * The model is const during both: any number of calls may be in flight on
 * separate tapes. Sizes come from ap_unet_plan_measure().
 * Accumulation rule: LoRA grads +=, activation grads = (dx is written).
 */
#ifndef AP_MODELS_UNET_H
#define AP_MODELS_UNET_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/weights.h"
#include "nn/resnet.h"
#include "nn/transformer2d.h"

#define AP_UNET_MAX_LEVELS 8

typedef struct ap_unet_config {
    int in_channels, out_channels;
    int levels;                           /* len(block_out_channels) */
    int block_out[AP_UNET_MAX_LEVELS];    /* block_out_channels */
    int layers[AP_UNET_MAX_LEVELS];       /* layers_per_block, per down block */
    int down_attn[AP_UNET_MAX_LEVELS];    /* 1: CrossAttnDownBlock2D, 0: DownBlock2D */
    int up_attn[AP_UNET_MAX_LEVELS];      /* 1: CrossAttnUpBlock2D, 0: UpBlock2D */
    int heads[AP_UNET_MAX_LEVELS];        /* attention_head_dim per down block (= heads) */
    int cross_dim;                        /* cross_attention_dim */
    int groups;                           /* norm_num_groups */
    float norm_eps;                       /* resnets and conv_norm_out */
    int flip_sin_to_cos;
    float freq_shift;
    int linear_proj;                      /* use_linear_projection */
    int time_embed_dim;                   /* time_embedding_dim or 4 * block_out[0] */
    int sample_size;                      /* latent size the model was trained at (64 when
                                           * absent); only the default image size */
} ap_unet_config;

/* Read a diffusers unet/config.json (missing keys take diffusers 0.17.1's
 * defaults, as from_pretrained does). Errors name the file, the key, the value
 * found and the supported values. */
int ap_unet_config_read(ap_unet_config *c, const char *path);
/* The same from a parsed config object; what names it in messages. */
int ap_unet_config_from_json(ap_unet_config *c, const ap_json *j, const char *what);

typedef enum {
    AP_UNET_CONV_IN, AP_UNET_RESNET, AP_UNET_ATTN, AP_UNET_DOWN, AP_UNET_UP,
    AP_UNET_CONCAT, AP_UNET_OUT
} ap_unet_op;

typedef struct ap_unet_step {
    ap_unet_op op;
    int idx;        /* resnet / transformer / sampler index; CONCAT: skip id popped */
    int push;       /* skip id the output becomes, or -1 */
    int c, level;   /* output channels; output is (H >> level, W >> level) */
} ap_unet_step;

typedef struct ap_unet {
    ap_unet_config cfg;
    int lora_rank;                        /* 0: no LoRA */
    ap_params params;                     /* frozen weights, state_dict order */
    ap_params lora;                       /* LoRA A/B, save_attn_procs order */
    float *lora_grad;                     /* lora.total floats, parallel to lora.flat (host) */
    float *lora_grad_dev;                 /* the gradients on a device after ap_unet_place
                                           * (what the backward accumulates into); NULL on the CPU */

    ap_tensor conv_in_w, conv_in_b;       /* (C0, in, 3, 3), (C0) */
    ap_tensor te1_w, te1_b;               /* (T, C0), (T) time_embedding.linear_1 */
    ap_tensor te2_w, te2_b;               /* (T, T), (T) time_embedding.linear_2 */
    ap_tensor out_norm_w, out_norm_b;     /* (C0) conv_norm_out */
    ap_tensor conv_out_w, conv_out_b;     /* (out, C0, 3, 3), (out) */
    int n_res, n_tf, n_down, n_up, n_steps, n_skips;
    ap_resnet *res;
    ap_transformer2d *tf;
    ap_tensor *down_w, *down_b;           /* (C, C, 3, 3), (C) stride 2, pad 1 */
    ap_tensor *up_w, *up_b;               /* (C, C, 3, 3), (C) after nearest x2 */
    ap_unet_step *steps;
    int *skip_c, *skip_level, *skip_step; /* per skip id: channels, level, producing step */
} ap_unet;

/* What one forward keeps for its backward (core/tape.h): host descriptors
 * pointing into the caller's tape (inference: into ctx->tmp, released on
 * return). Made for one model by ap_unet_saved_init; any number may exist. */
typedef struct ap_unet_saved {
    ap_tape_rec rec;                      /* the forward's stamp */
    ap_tensor x, emb_act, gn_out, gn_mean, gn_rstd;
    ap_tensor *out;                       /* per step: its output (B, c, H', W') */
    ap_resnet_saved *res;                 /* per resnet */
    ap_transformer2d_saved *tf;           /* per transformer */
    float **dskip;                        /* per skip id: its gradient during backward */
    int n_steps, n_res, n_tf, n_skips;
} ap_unet_saved;

int ap_unet_saved_init(ap_unet_saved *sv, const ap_unet *m);
void ap_unet_saved_free(ap_unet_saved *sv);

/* Declare every parameter (no allocation): base weights, and LoRA of rank
 * lora_rank (0: none) on to_q/to_k/to_v/to_out.0 of every attention. */
int ap_unet_build(ap_unet *m, const ap_unet_config *c, int lora_rank);
/* Choose the storage of the frozen weights (io/weights.h
 * ap_weights_frozen_dtype: convs and linears in bf16/f16, attention
 * projections f32) without allocating; ap_unet_alloc calls it, so
 * params.total then gives the weight block's size. */
void ap_unet_store_frozen(ap_unet *m);
/* Allocate the parameter buffers (zeroed) and the LoRA gradient buffer. */
int ap_unet_alloc(ap_unet *m);
void ap_unet_free(ap_unet *m);

/* Fill the base weights from a diffusers unet/ directory
 * (diffusion_pytorch_model.safetensors, else diffusion_pytorch_model.bin). */
int ap_unet_load_weights(ap_unet *m, const char *unet_dir);
/* Fill the LoRA matrices from a file or a directory holding
 * pytorch_lora_weights.safetensors / .bin, in the save_attn_procs, peft or
 * kohya layout (io/lora_file.h; kohya's alpha folded in). */
int ap_unet_load_lora(ap_unet *m, const char *path);
/* AlignProp's initialisation in shape: A ~ N(0, (1/r)^2) per element, B = 0,
 * from our own seeded generator (splitmix64 + Box-Muller). It cannot reproduce
 * PyTorch's RNG stream, so only the distribution matches, not the values. */
int ap_unet_init_lora(ap_unet *m, uint64_t seed);
void ap_unet_zero_lora_grads(ap_unet *m);

/* Frozen weights, LoRA and LoRA gradients on ctx's device (docs/cuda.md §6,
 * ops/memory.h ap_params_place); on the CPU nothing changes. lora.flat and
 * lora_grad stay the host copies: upload LoRA after changing lora.flat
 * (ap_params_upload), read the gradients with ap_unet_lora_grads_read. */
int ap_unet_place(ap_ctx *ctx, ap_unet *m);
void ap_unet_unplace(ap_ctx *ctx, ap_unet *m);
/* The LoRA gradients the backward accumulates into, wherever they are: zeroed
 * / copied to host (lora.total floats). */
int ap_unet_zero_lora_grads_on(ap_ctx *ctx, ap_unet *m);
int ap_unet_lora_grads_read(ap_ctx *ctx, const ap_unet *m, float *host);

/* Config + build + alloc + weights from a unet/ directory (config.json inside). */
int ap_unet_open(ap_unet *m, const char *unet_dir, int lora_rank);

/* view = m without its LoRA (the base model), sharing every weight of m:
 * a copy of the struct whose transformers' attention projections have no
 * LoRA (lora pointers NULL), lora_rank 0 and no LoRA gradients. m must
 * outlive the view; the view is used like any UNet (forward, plans) and
 * freed with ap_unet_base_view_free, never ap_unet_free
 * (models/unet_base.c, docs/draft.md §2). */
int ap_unet_base_view(ap_unet *view, const ap_unet *m);
void ap_unet_base_view_free(ap_unet *view);

typedef ap_plan ap_unet_plan;

/* The workspaces of an inference forward, a forward with tape and its
 * backward at (B, H, W, L), measured by a dry run of that code on ctx's
 * backend, kernel variant and threads (models/unet_plan.c). The model's
 * weights are never read: declared shapes with unbacked data suffice. */
int ap_unet_plan_measure(ap_ctx *ctx, const ap_unet *m, int64_t B, int64_t H, int64_t W, int64_t L,
                         ap_unet_plan *p);
/* As ap_unet_alloc, with weights and LoRA in address space that is never
 * backed (io/weights.h: ap_params_alloc_unbacked): a built model a dry run
 * can measure at real size without its memory (LoRA gradients are real). */
int ap_unet_alloc_unbacked(ap_unet *m);

/* eps (B, out, H, W) = UNet(x (B, in, H, W), timesteps (B), context (B, L, cross)).
 * H and W must be multiples of 2^(levels-1). tape: keep what backward needs
 * in sv (context must then stay unchanged until backward); NULL: inference,
 * only ctx->tmp is used and released (sv still holds the step descriptors). */
int ap_unet_forward(ap_ctx *ctx, ap_tape *tape, const ap_unet *m, ap_unet_saved *sv,
                    const ap_tensor *eps, const ap_tensor *x, const ap_tensor *timesteps,
                    const ap_tensor *context);

/* After a forward with a tape (sv stamped by it, the tape not reset since):
 * dx (=, (B, in, H, W); NULL: not wanted) and LoRA grads (+= into
 * m->lora_grad) from deps (B, out, H, W). */
int ap_unet_backward(ap_ctx *ctx, ap_tape *tape, const ap_unet *m, const ap_unet_saved *sv,
                     const ap_tensor *dx, const ap_tensor *deps);

#endif
