/* compvis.h: single-file Stable Diffusion checkpoints in the original
 * CompVis (LDM) layout (`v1-5-pruned-emaonly.safetensors`, `.ckpt`), read as
 * diffusers' from_single_file reads them (0.17.1 convert_from_ckpt.py).
 *
 * One table of prefix/pattern rules renames every CompVis key to the
 * diffusers name of the same tensor, namespaced by the diffusers folder
 * that model lives in, so one index serves all three models:
 *
 *   model.diffusion_model.*          -> unet.*          (UNet2DConditionModel)
 *   first_stage_model.*              -> vae.*           (AutoencoderKL)
 *   cond_stage_model.transformer.*   -> text_encoder.*  (CLIPTextModel)
 *
 * e.g. model.diffusion_model.input_blocks.1.0.in_layers.0.weight ->
 * unet.down_blocks.0.resnets.0.norm1.weight; first_stage_model.decoder.up.3
 * .block.0.conv1.weight -> vae.decoder.up_blocks.0.resnets.0.conv1.weight;
 * first_stage_model.decoder.mid.attn_1.q.weight (C, C, 1, 1) ->
 * vae.decoder.mid_block.attentions.0.to_q.weight, loadable as (C, C).
 * A leading "state_dict." (Lightning .ckpt) is dropped first. Keys of those
 * models that no rule knows keep their rest under the namespace (so a
 * loader reports them as unused); other keys (model_ema.*, schedule
 * buffers) keep their names and belong to no model.
 *
 * Loading a model from such a file: w = ap_compvis_open(path), then the
 * model's usual declare / alloc / fill with prefix "unet.", "vae." or
 * "text_encoder." (e.g. ap_vae_fill(&vae, w, "vae.")).
 */
#ifndef AP_COMPVIS_H
#define AP_COMPVIS_H

#include <stddef.h>

#include "io/weights.h"

/* The two numbers the CompVis numbering depends on. */
typedef struct ap_compvis_layout {
    int unet_layers_per_block; /* 2: input_blocks.i -> down_blocks.(i-1)/3 .resnets.(i-1)%3 */
    int vae_blocks;            /* 4: decoder.up.k -> decoder.up_blocks.(3-k) */
} ap_compvis_layout;

/* SD v1.x values (2, 4). */
void ap_compvis_layout_sd15(ap_compvis_layout *l);

/* Read the layout off the keys of an index (before renaming), as diffusers
 * does for the VAE: vae_blocks = 1 + the largest k of decoder.up.k;
 * unet_layers_per_block = (number of output_blocks) / (number of
 * input_blocks.i.0.op downsamplers + 1) - 1. A model absent from the file
 * keeps the SD v1.x value. Fails on numbers that do not fit together. */
int ap_compvis_layout_from(ap_compvis_layout *l, const ap_wsrc *w);

/* Rename hook (io/weights.h) for ap_wsrc_set_rename; ctx is a const
 * ap_compvis_layout * that must outlive the index. */
int ap_compvis_rename(void *ctx, const char *key, char *name, size_t cap);

/* Index a single-file checkpoint (.safetensors or zip .ckpt), read its
 * layout into *layout (which must outlive *w) and install the rename hook. */
int ap_compvis_open(ap_wsrc **w, const char *path, ap_compvis_layout *layout);

#endif
