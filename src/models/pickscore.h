/* pickscore.h: the PickScore reward (Kirstain et al. 2023, Pick-a-Pic;
 * the yuvalkirstain/PickScore_v1 model as transformers stores it: a
 * CLIPModel, ViT-H/14 vision and text towers with their projections and
 * logit_scale), with AlignProp-style differentiable preprocessing
 * (docs/pickscore.md); forward, and backward w.r.t. the image (text tower
 * forward only, all weights frozen).
 *
 *   p   = preprocess(image)            (clip_common.h: clamp, Resize(S) bilinear,
 *                                       CLIP Normalize; = the processor's
 *                                       resize + centre crop for square images)
 *   f   = visual_projection(post_layernorm(ViT(p)[:, 0]))               (B, P)
 *   t   = text_projection(final_layer_norm(text(ids))[b, argmax ids[b]]) (B, P)
 *   n_f = f / max(|f|, 1e-12), n_t likewise
 *   score_b = exp(logit_scale) * n_f[b] . n_t[b]   (PickScore's inference code)
 *   loss_b  = -score_b
 *
 * Loaded from a transformers CLIPModel directory: config.json (vision_config,
 * text_config, projection_dim) and model.safetensors or pytorch_model.bin.
 */
#ifndef AP_MODELS_PICKSCORE_H
#define AP_MODELS_PICKSCORE_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "models/clip_text.h"
#include "models/clip_score.h"
#include "models/clip_vision.h"

typedef struct ap_pickscore {
    ap_clip_vision vis;    /* vision_model.*, visual_projection (P, Cv) */
    ap_clip_text text;     /* text_model.*, plus the two below in its params */
    ap_tensor text_proj;   /* (P, Ct) text_projection.weight (Linear, y = x Wᵀ) */
    ap_tensor logit_scale; /* () log of the score scale */
    float scale;           /* exp(logit_scale), read at load */
    int embed_dim;         /* P */
} ap_pickscore;

/* What a forward keeps for its backward (models/clip_score.h). */
typedef ap_clip_score_saved ap_pickscore_saved;

/* Dimensions from dir/config.json and every tensor declared (both params
 * lists), nothing allocated (a dry run's plan: ap_params_alloc_unbacked). */
int ap_pickscore_declare(ap_pickscore *m, const char *dir);
/* config.json + weights of a transformers CLIPModel directory. */
int ap_pickscore_load(ap_pickscore *m, const char *dir);
void ap_pickscore_free(ap_pickscore *m);

/* Normalised text features feats (B, P) of CLIP token ids (B, N) int32,
 * pooled at the first position of the largest id (the end token). */
int ap_pickscore_encode_text(ap_ctx *ctx, const ap_pickscore *m, const ap_tensor *feats,
                             const int32_t *ids, int64_t B, int64_t N);
/* score (B) and loss (B) (either may be NULL) of image (B, 3, H, W) against
 * the normalised text features text (B, P) of each sample's own prompt. */
int ap_pickscore_forward(ap_ctx *ctx, ap_tape *tape, const ap_pickscore *m,
                         ap_pickscore_saved *sv, const ap_tensor *score, const ap_tensor *loss,
                         const ap_tensor *image, const ap_tensor *text);
/* dimage (B, 3, H, W) (=) from dloss (B), after a forward with a tape. */
int ap_pickscore_backward(ap_ctx *ctx, ap_tape *tape, const ap_pickscore *m,
                          const ap_pickscore_saved *sv, const ap_tensor *dimage,
                          const ap_tensor *dloss);

/* The workspaces of one reward step for images (B, 3, H, W) and prompts of
 * N tokens: the text encoding, an inference forward, a forward with tape and
 * its backward, measured by a dry run of that code. Weights are never read. */
int ap_pickscore_plan_measure(ap_ctx *ctx, const ap_pickscore *m, int64_t B, int64_t H,
                              int64_t W, int64_t N, ap_plan *p);

#endif
