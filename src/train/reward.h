/* reward.h: the differentiable rewards the training job maximises, behind
 * one interface (forward with a tape, backward to the image).
 *
 *   aesthetic  AlignProp's aesthetic_loss_fn: CLIP ViT-L/14 + MLP,
 *              loss_b = |r_b - aesthetic_target| (models/aesthetic.h)
 *   hps        AlignProp's hps_loss_fn: loss_b = 1 - HPSv2 score (models/hps.h)
 *   demo       colourfulness (Hasler & Suesstrunk 2003) of the image in
 *              [0, 1] (x/2 + 0.5, not clamped), needs no weights:
 *                rg = R - G,  yb = (R + G)/2 - B       per pixel
 *                C  = sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)
 *              (biased variances over the image), reward_b = C, loss_b = -C.
 *
 * The reported reward is the model's score (aesthetic r, HPS score, C); the
 * loss is what training minimises. grad_scale multiplies the loss (the
 * original's aesthetic_loss_fn grad_scale).
 */
#ifndef AP_TRAIN_REWARD_H
#define AP_TRAIN_REWARD_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "train/config.h"

typedef struct ap_reward ap_reward;

/* Load the reward model the config names (no weights for demo). */
int ap_reward_open(ap_reward **out, const ap_train_config *c);
/* Same, explicitly (tests): paths as in the config, unused ones NULL. */
int ap_reward_open_kind(ap_reward **out, ap_reward_kind kind, const char *clip_dir,
                        const char *mlp, const char *hps_config, const char *hps_ckpt,
                        const char *hps_bpe, double aesthetic_target, double grad_scale);
void ap_reward_free(ap_reward *r);
const char *ap_reward_name(const ap_reward *r);

/* Make the reward's tape and temporaries and reserve ctx scratch for images
 * up to (B, 3, H, W), sized by a dry run of a forward without tape, one with
 * tape and its backward (core/ctx.h: ap_measure). */
int ap_reward_plan(ap_reward *r, ap_ctx *ctx, int64_t B, int64_t H, int64_t W);
/* The plan ap_reward_plan measured (zeros before). */
const ap_plan *ap_reward_plan_of(const ap_reward *r);
/* reward (B), loss (B) of image (B, 3, H, W) for prompts (B) (hps encodes
 * them; others ignore them). keep_tape: keep what backward needs. */
int ap_reward_forward(ap_reward *r, ap_ctx *ctx, const ap_tensor *image,
                      const char *const *prompts, float *reward, float *loss, int keep_tape);
/* dimage (=) from dloss (B), after a forward with keep_tape. */
int ap_reward_backward(ap_reward *r, ap_ctx *ctx, const ap_tensor *dimage, const float *dloss);

#endif
