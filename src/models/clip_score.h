/* clip_score.h: the image side of a CLIP similarity reward, shared by HPSv2
 * (models/hps.h) and PickScore (models/pickscore.h); forward, and backward
 * w.r.t. the image (the tower is frozen).
 *
 *   p     = preprocess(image)                            (clip_common.h)
 *   f     = image features of p (the ViT's pooled, projected output)  (B, E)
 *   n     = f / max(|f|, 1e-12)                           (F.normalize)
 *   dot_b = n[b] . t[b]     t: the caller's normalised text features (B, E)
 *   score = scale * dot
 *
 * Each reward turns score into its loss (HPS: 1 - score; PickScore: -score)
 * and hands backward d(loss)/d(dot) as one factor. Tapes: core/tape.h.
 */
#ifndef AP_MODELS_CLIP_SCORE_H
#define AP_MODELS_CLIP_SCORE_H

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"
#include "models/clip_vision.h"

typedef struct ap_clip_score_saved {
    ap_tape_rec rec;       /* the forward's stamp */
    ap_tensor image;       /* (B, 3, H, W) caller-owned */
    ap_tensor p;           /* (B, 3, S, S) */
    ap_vit_saved vit;
    ap_tensor f, norm, n;  /* (B, E), (B), (B, E) */
    ap_tensor t;           /* (B, E) the text features given to forward (copied) */
} ap_clip_score_saved;

/* score (B) of image (B, 3, H, W) against text (B, E); scale 1 applies no
 * multiplication. what names the reward in errors and arena labels. */
int ap_clip_score_forward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, ap_clip_score_saved *sv,
                          const ap_tensor *score, const ap_tensor *image, const ap_tensor *text,
                          float scale, const char *what);
/* dimage (=) from dloss (B) and dloss_ddot, the derivative of each loss_b by
 * dot_b (HPS: -1; PickScore: -scale). */
int ap_clip_score_backward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v,
                           const ap_clip_score_saved *sv, const ap_tensor *dimage,
                           const ap_tensor *dloss, float dloss_ddot, const char *what);

#endif
