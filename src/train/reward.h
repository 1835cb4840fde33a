/* reward.h: the differentiable rewards the training job maximises, behind
 * one interface (forward with a tape, backward to the image).
 *
 *   aesthetic  AlignProp's aesthetic_loss_fn: CLIP ViT-L/14 + MLP,
 *              loss_b = |r_b - aesthetic_target| (models/aesthetic.h)
 *   hps        AlignProp's hps_loss_fn: loss_b = 1 - HPSv2 score (models/hps.h)
 *   pickscore  PickScore (models/pickscore.h; not in the original):
 *              loss_b = -exp(logit_scale) cos(image_b, prompt_b)
 *   demo       colourfulness (Hasler & Suesstrunk 2003) of the image in
 *              [0, 1] (x/2 + 0.5, not clamped), needs no weights:
 *                rg = R - G,  yb = (R + G)/2 - B       per pixel
 *                C  = sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)
 *              (biased variances over the image), reward_b = C, loss_b = -C.
 *
 *   mixture    reward_fn: {aesthetic: 1.0, hps: 2.0} (not in the original):
 *              owns one reward per entry and trains on
 *                loss_b   = sum_i w_i loss_i,b
 *                reward_b = sum_i w_i reward_i,b
 *              (sums in double); each part's reward and loss are kept in
 *              the saved struct for logging (ap_reward_parts). Backward:
 *              dimage = sum_i d(loss_i)/d(image) . w_i dloss, part 0 written,
 *              the others accumulated (one image-sized temporary).
 *
 * The reported reward is the model's score (aesthetic r, HPS score, C); the
 * loss is what training minimises. grad_scale multiplies the loss (the
 * original's aesthetic_loss_fn grad_scale).
 */
#ifndef AP_TRAIN_REWARD_H
#define AP_TRAIN_REWARD_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/tape.h"
#include "models/aesthetic.h"
#include "models/hps.h"
#include "models/pickscore.h"
#include "core/tensor.h"
#include "train/config.h"

typedef struct ap_reward ap_reward;

/* Load the reward model the config names (no weights for demo). */
int ap_reward_open(ap_reward **out, const ap_train_config *c);
/* The reward models' weights (a mixture's parts too) on ctx's device after
 * loading (ops/memory.h ap_params_place, docs/cuda.md §6); nothing changes on
 * the CPU. Unplace with the same context before ap_reward_free. */
int ap_reward_place(ap_ctx *ctx, ap_reward *r);
void ap_reward_unplace(ap_ctx *ctx, ap_reward *r);
/* Same, explicitly (tests): paths as in the config, unused ones NULL. */
int ap_reward_open_kind(ap_reward **out, ap_reward_kind kind, const char *clip_dir,
                        const char *mlp, const char *hps_config, const char *hps_ckpt,
                        const char *hps_bpe, double aesthetic_target, double grad_scale);
/* PickScore from a transformers CLIPModel directory and a tokenizer
 * directory (vocab.json, merges.txt). */
int ap_reward_open_pickscore(ap_reward **out, const char *model_dir, const char *tokenizer_dir);
/* A mixture of n (1..AP_REWARD_MAX_PARTS) opened rewards of distinct
 * kinds, none a mixture, with finite weights: takes ownership of parts[]
 * (freed with the mixture, and on failure). */
int ap_reward_open_mixture(ap_reward **out, int n, ap_reward *const *parts, const double *weights);
void ap_reward_free(ap_reward *r);
/* "aesthetic", "hps v2.1", "demo", "pickscore", or the mixture's "1*aesthetic + 2*hps v2.0" */
const char *ap_reward_name(const ap_reward *r);
/* Components of a mixture (0 for a single reward); the name of part i
 * ("aesthetic", "hps", "demo", "pickscore": a logging column name) and its weight. */
int ap_reward_parts(const ap_reward *r);
const char *ap_reward_part_name(const ap_reward *r, int i);
double ap_reward_part_weight(const ap_reward *r, int i);

/* What one forward keeps for its backward (core/tape.h) plus its host and
 * tensor buffers for up to cap images: caller-owned, made for one reward. */
typedef struct ap_reward_saved {
    ap_tape_rec rec;        /* the forward's stamp */
    int64_t cap;            /* images planned */
    ap_tensor image;        /* the forward's image (caller-owned) */
    ap_aesthetic_saved aes; /* aesthetic */
    ap_hps_saved hps;       /* hps */
    ap_pickscore_saved ps;  /* pickscore */
    ap_arena mem;           /* the tensor buffers below (text, vals), on the device
                             * of the context given to ap_reward_saved_init */
    float *text;            /* (cap, E) hps, pickscore: text features of the prompts */
    int32_t *ids;           /* (cap, N) hps, pickscore: token ids */
    float *dl;              /* (cap) host: scaled d(loss) */
    float *vals;            /* (3, cap) tensor side: reward, loss, d(loss) */
    int n_parts;            /* mixture: its parts' saved structs */
    struct ap_reward_saved *part;  /* (n_parts) */
    float *part_vals;       /* (n_parts, 3, cap) host: each part's reward, loss, w_i d(loss) */
} ap_reward_saved;

/* Tensor buffers come from ctx's backend (ap_arena_init_on: one block per
 * reward, one per mixture part); free with the same context. */
int ap_reward_saved_init(ap_ctx *ctx, ap_reward_saved *sv, const ap_reward *r, int64_t cap);
void ap_reward_saved_free(ap_ctx *ctx, ap_reward_saved *sv);
/* bytes of sv's tensor blocks, its parts' included (a plan's total) */
size_t ap_reward_saved_bytes(const ap_reward_saved *sv);

/* The tape, ctx->tmp and scratch of a forward without tape, one with tape
 * and its backward for images (B, 3, H, W), measured by a dry run of that
 * code (core/ctx.h: ap_measure). */
int ap_reward_plan_measure(ap_ctx *ctx, const ap_reward *r, int64_t B, int64_t H, int64_t W,
                           ap_plan *p);
/* reward (B), loss (B) of image (B, 3, H, W), B <= sv->cap, for prompts (B)
 * (hps encodes them; others ignore them). tape NULL: inference; else keep
 * what backward needs. Temporaries from ctx->tmp. */
int ap_reward_forward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                      float *reward, float *loss, const ap_tensor *image,
                      const char *const *prompts);
/* Part i's rewards (B) of the last forward into sv (a mixture's; NULL otherwise). */
const float *ap_reward_part_values(const ap_reward_saved *sv, int i);
/* dimage (=) from dloss (B), after a forward with this tape. */
int ap_reward_backward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                       const ap_tensor *dimage, const float *dloss);

#endif
