/* clip_common.h: pieces shared by the CLIP-family models (SD text encoder,
 * aesthetic scorer, HPSv2):
 *  - config.json readers with the reference library's defaults and checks;
 *  - the weight file of a transformers directory;
 *  - AlignProp's differentiable reward preprocessing (docs/clip.md §4):
 *      a = clamp(image / 2 + 0.5, 0, 1)                    (B, 3, H, W)
 *      r = Resize(S)(a)   torchvision 0.15 tensor bilinear, no antialias
 *      p = (r - mean_c) / std_c   CLIP mean/std              (B, 3, S, S)
 *  - row-wise L2 normalisation v / max(|v|, eps) and its backward.
 *
 * Accumulation rule: no parameters; input gradients are written (=).
 */
#ifndef AP_MODELS_CLIP_COMMON_H
#define AP_MODELS_CLIP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/json.h"

/* Integer member `key` of obj (def when absent and def >= 0; an error when
 * absent and def < 0); must be a whole number in [lo, hi]. what names the file. */
int ap_cfg_int(const ap_json *obj, const char *key, const char *what, int def, int lo, int hi,
               int *out);
/* Positive number member `key` of obj (def when absent and def > 0). */
int ap_cfg_num(const ap_json *obj, const char *key, const char *what, double def, double *out);

/* The weights file of a transformers / diffusers directory: dir/model.safetensors
 * when present, else dir/pytorch_model.bin; an error naming both otherwise.
 * Writes the path into buf (len bytes). */
int ap_model_weights_path(const char *dir, char *buf, size_t len);

/* CLIP image mean/std (OpenAI values; AlignProp's Normalize). */
extern const float ap_clip_mean[3], ap_clip_std[3];

/* Checks that AlignProp's Resize(S) of an H x W image (shorter side -> S,
 * longer -> int(S * long / short), torchvision 0.15) is S x S: square images
 * and near-square ones such as 40 x 41 -> 28 x 28. AlignProp has no crop, so
 * a clearly non-square image (224 x 373 stays 224 x 373) reaches the vision
 * tower at that size, where transformers' and open_clip's position
 * embeddings make it raise; we fail here with the sizes instead
 * (tools/fixtures/clip_preprocess.py checks the reference still raises). */
int ap_clip_preprocess_size(int64_t H, int64_t W, int S);
/* Temporaries: forward the clamped image (B, 3, H, W), backward d(resized)
 * (B, 3, S, S), both from ctx->tmp (measured with the model that calls it). */
/* p (B, 3, S, S) from image (B, 3, H, W), H x W square. */
int ap_clip_preprocess_forward(ap_ctx *ctx, const ap_tensor *p, const ap_tensor *image);
/* dimage (B, 3, H, W) (=) from dp (B, 3, S, S) and the forward's image: the
 * Normalize, resize and clamp/affine adjoints (clamp passes gradient where
 * 0 <= image/2 + 0.5 <= 1, bounds inclusive, as PyTorch). */
int ap_clip_preprocess_backward(ap_ctx *ctx, const ap_tensor *dimage,
                                const ap_tensor *dp, const ap_tensor *image);

#endif
