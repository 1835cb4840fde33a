/* hps.h: HPSv2 reward (docs/hps.md) = open_clip CLIP (ViT-H-14) with AlignProp's
 * hps_loss_fn; forward, and backward w.r.t. the image (text tower forward only,
 * all weights frozen).
 *
 *   p   = preprocess(image)                       (clip_common.h; same as the aesthetic path)
 *   f   = encode_image(p) = ln_post(ViT(p)[:, 0]) . visual.proj        (B, E)
 *   t   = ln_final(text transformer(ids))[b, argmax ids[b]] . text_projection
 *   n_f = f / max(|f|, 1e-12), n_t likewise (F.normalize)
 *   score_b = n_f[b] . n_t[b]  (diagonal of the logits; logit_scale is NOT used)
 *   loss_b  = 1 - score_b
 *
 * Built from an open_clip model config JSON (model_configs/ViT-H-14.json
 * layout: embed_dim, vision_cfg, text_cfg, optional quick_gelu); loaded from
 * a torch.save'd {'state_dict': {...}} (HPS_v2_compressed.pt) or a plain state
 * dict / safetensors with open_clip's key names. AlignProp's training loss is
 * 0.01 * mean_b(loss_b): pass dloss_b = 0.01 / B (/ accumulation steps).
 */
#ifndef AP_MODELS_HPS_H
#define AP_MODELS_HPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/weights.h"
#include "models/clip_text.h"
#include "models/clip_score.h"
#include "models/clip_vision.h"

typedef struct ap_hps {
    int embed_dim;
    ap_vit visual;         /* OpenCLIP visual.*, proj (width, E) */
    ap_text_tower text;    /* causal, pooled at the argmax id */
    ap_tensor text_proj;   /* (text width, E) */
    ap_tensor logit_scale; /* () kept for the key set; unused */
    ap_params params;      /* open_clip names, state-dict order */
} ap_hps;

/* What a forward keeps for its backward (models/clip_score.h). */
typedef ap_clip_score_saved ap_hps_saved;

/* Dimensions from an open_clip model config object; rejects the options this
 * port does not implement (timm / HF towers, layer scale, attentional or
 * average pooling, patch norm, embed_cls, custom_text). */
int ap_hps_config(ap_hps *m, const ap_json *cfg, const char *what);
/* Declare every tensor of the state dict (logit_scale included) in open_clip's
 * order without allocating. */
int ap_hps_declare(ap_hps *m);
/* Config JSON file + checkpoint (names under "state_dict." or at the top). */
int ap_hps_load(ap_hps *m, const char *config_json, const char *checkpoint);
void ap_hps_free(ap_hps *m);

/* Normalised text features feats (B, E) of open_clip token ids (B, N) int32
 * (pooled at the first position of the largest id, the end token). */
int ap_hps_encode_text(ap_ctx *ctx, const ap_hps *m, const ap_tensor *feats,
                       const int32_t *ids, int64_t B, int64_t N);

/* score (B) and loss (B) (either may be NULL) of image (B, 3, H, W) against
 * the normalised text features text (B, E) of each sample's own prompt. */
int ap_hps_forward(ap_ctx *ctx, ap_tape *tape, const ap_hps *m, ap_hps_saved *sv,
                   const ap_tensor *score, const ap_tensor *loss, const ap_tensor *image,
                   const ap_tensor *text);
/* dimage (B, 3, H, W) (=) from dloss (B), after a forward with a tape. */
int ap_hps_backward(ap_ctx *ctx, ap_tape *tape, const ap_hps *m, const ap_hps_saved *sv,
                    const ap_tensor *dimage, const ap_tensor *dloss);
/* The workspaces of one reward step for images (B, 3, H, W) and prompts of
 * N tokens: the text encoding, an inference forward, a forward with tape and
 * its backward (tmp covers all of them), measured by a dry run of that code
 * on ctx's backend, kernel variant and threads. Weights are never read. */
int ap_hps_plan_measure(ap_ctx *ctx, const ap_hps *m, int64_t B, int64_t H, int64_t W, int64_t N,
                        ap_plan *p);

#endif
