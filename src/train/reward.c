/* reward.c: the training rewards behind one interface (reward.h). */
#include "train/reward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "models/aesthetic.h"
#include "models/hps.h"
#include "ops/elementwise.h"
#include "ops/image.h"
#include "ops/rows.h"
#include "text/tokenizer.h"

struct ap_reward {
    ap_reward_kind kind;
    double grad_scale;
    int64_t B, H, W;           /* planned */
    ap_plan plan;              /* measured (ap_reward_plan) */
    ap_arena tape, tmp;
    /* aesthetic */
    ap_aesthetic aes;
    ap_aesthetic_saved aes_sv;
    /* hps */
    ap_hps hps;
    ap_hps_saved hps_sv;
    ap_tokenizer *tok;
    float *text;               /* (B, E) text features of the current prompts */
    int32_t *ids;              /* (B, N) */
    ap_tensor image;           /* last forward's image (caller-owned) */
    float *dl;                 /* (B) host: scaled d(loss) for backward */
    float *vals;               /* (3, B) tensor side: reward, loss, d(loss) */
    int taped;
};

static const char *kind_name(ap_reward_kind k) {
    return k == AP_REWARD_AESTHETIC ? "aesthetic" : k == AP_REWARD_HPS ? "hps" : "demo";
}

const char *ap_reward_name(const ap_reward *r) { return kind_name(r->kind); }

int ap_reward_open_kind(ap_reward **out, ap_reward_kind kind, const char *clip_dir,
                        const char *mlp, const char *hps_config, const char *hps_ckpt,
                        const char *hps_bpe, double aesthetic_target, double grad_scale) {
    *out = NULL;
    ap_reward *r = ap_calloc(1, sizeof *r, "reward");
    if (!r) return AP_ERR;
    r->kind = kind;
    r->grad_scale = grad_scale;
    int rc = AP_OK;
    if (kind == AP_REWARD_AESTHETIC) {
        if (!clip_dir || !*clip_dir || !mlp || !*mlp)
            rc = ap_fail("reward aesthetic: needs reward.aesthetic_clip (a CLIP ViT-L/14 directory) "
                         "and reward.aesthetic_mlp (sac+logos+ava1-l14-linearMSE.pth)");
        if (!rc) rc = ap_aesthetic_load(&r->aes, clip_dir, mlp);
        if (!rc) r->aes.target = (float)aesthetic_target;
    } else if (kind == AP_REWARD_HPS) {
        if (!hps_config || !*hps_config || !hps_ckpt || !*hps_ckpt || !hps_bpe || !*hps_bpe)
            rc = ap_fail("reward hps: needs reward.hps_config (open_clip ViT-H-14.json), "
                         "reward.hps_checkpoint (HPS_v2_compressed.pt) and reward.hps_tokenizer "
                         "(bpe_simple_vocab_16e6.txt.gz)");
        if (!rc) rc = ap_hps_load(&r->hps, hps_config, hps_ckpt);
        if (!rc) rc = ap_tokenizer_load_openclip(&r->tok, hps_bpe);
    } else if (kind != AP_REWARD_DEMO) {
        rc = ap_fail("reward: unknown kind %d", (int)kind);
    }
    if (rc) {
        ap_reward_free(r);
        return AP_ERR;
    }
    *out = r;
    return AP_OK;
}

int ap_reward_open(ap_reward **out, const ap_train_config *c) {
    /* grad_scale multiplies the aesthetic loss only, as the original's
     * aesthetic_loss_fn (its hps_loss_fn has none) */
    return ap_reward_open_kind(out, c->reward, c->aesthetic_clip, c->aesthetic_mlp, c->hps_config,
                               c->hps_checkpoint, c->hps_tokenizer, c->aesthetic_target,
                               c->reward == AP_REWARD_AESTHETIC ? c->grad_scale : 1.0);
}

void ap_reward_free(ap_reward *r) {
    if (!r) return;
    if (r->kind == AP_REWARD_AESTHETIC) ap_aesthetic_free(&r->aes);
    if (r->kind == AP_REWARD_HPS) {
        ap_hps_free(&r->hps);
        ap_tokenizer_free(r->tok);
    }
    ap_arena_free(&r->tape);
    ap_arena_free(&r->tmp);
    free(r->text), free(r->ids), free(r->dl), free(r->vals);
    free(r);
}

int ap_reward_forward(ap_reward *r, ap_ctx *ctx, const ap_tensor *image,
                      const char *const *prompts, float *reward, float *loss, int keep_tape) {
    AP_TRY(ap_expect("reward", "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    int64_t B = image->shape[0], H = image->shape[2], W = image->shape[3];
    if (B > r->B || H != r->H || W != r->W)
        return ap_fail("reward %s: image (%lld, 3, %lld, %lld) exceeds the plan (%lld, 3, %lld, %lld)",
                       kind_name(r->kind), (long long)B, (long long)H, (long long)W,
                       (long long)r->B, (long long)r->H, (long long)r->W);
    r->taped = 0;
    r->image = *image;
    /* the models write (B) tensors; the values come to the host at the end */
    ap_tensor tr = ap_t1(r->vals, B), tl = ap_t1(r->vals + B, B);
    ap_arena_reset(&r->tape);
    if (r->kind == AP_REWARD_AESTHETIC) {
        AP_TRY(ap_aesthetic_forward(ctx, keep_tape ? &r->tape : NULL, &r->tmp, &r->aes_sv, &r->aes,
                                    &tr, &tl, image));
    } else if (r->kind == AP_REWARD_HPS) {
        int64_t N = r->hps.text.max_pos;
        for (int64_t b = 0; b < B; b++) {
            if (ap_tokenize(r->tok, prompts[b], r->ids + b * N, (int)N))
                return ap_err_prefix("reward hps: prompt \"%s\": ", prompts[b]);
        }
        ap_tensor tt = ap_t2(r->text, B, r->hps.embed_dim);
        AP_TRY(ap_hps_encode_text(ctx, &r->tmp, &r->hps, &tt, r->ids, B, N));
        AP_TRY(ap_hps_forward(ctx, keep_tape ? &r->tape : NULL, &r->tmp, &r->hps_sv, &r->hps, &tr,
                              &tl, image, &tt));
    } else { /* demo: reward = colourfulness, loss = -reward */
        AP_TRY(ap_colourfulness_forward(ctx, &tr, image));
        AP_TRY(ap_scale_forward(ctx, &tl, &tr, -1.0f));
    }
    if (reward) AP_TRY(ap_tensor_read(ctx, reward, &tr));
    AP_TRY(ap_tensor_read(ctx, loss, &tl));
    for (int64_t b = 0; b < B; b++) loss[b] = (float)(loss[b] * r->grad_scale);
    r->taped = keep_tape;
    return AP_OK;
}

int ap_reward_backward(ap_reward *r, ap_ctx *ctx, const ap_tensor *dimage, const float *dloss) {
    if (!r->taped) return ap_fail("reward %s: backward needs a forward with a tape", kind_name(r->kind));
    AP_TRY(ap_expect_same("reward_backward", "image", &r->image, "dimage", dimage));
    int64_t B = r->image.shape[0];
    float *dl = r->dl;
    for (int64_t b = 0; b < B; b++) dl[b] = (float)(dloss[b] * r->grad_scale);
    ap_tensor td = ap_t1(r->vals + 2 * r->B, B);
    AP_TRY(ap_tensor_write(ctx, &td, dl));
    if (r->kind == AP_REWARD_AESTHETIC)
        return ap_aesthetic_backward(ctx, &r->tmp, &r->aes, &r->aes_sv, dimage, &td);
    if (r->kind == AP_REWARD_HPS)
        return ap_hps_backward(ctx, &r->tmp, &r->hps, &r->hps_sv, dimage, &td);
    /* loss = -colourfulness: d(colourfulness) = -dl */
    AP_TRY(ap_scale_forward(ctx, &td, &td, -1.0f));
    return ap_colourfulness_backward(ctx, dimage, &td, &r->image);
}

/* The dry run ap_reward_plan measures: a forward without tape, one with
 * tape and its backward, through the functions above with the reward's
 * arenas swapped for measuring ones (empty prompts for hps). */
static int reward_step(ap_ctx *dry, ap_arena *a, void *user) {
    ap_reward *r = user;
    int64_t B = r->B, is[4] = {B, 3, r->H, r->W};
    ap_tensor img = ap_dry_input(&a[2], 4, is), dimg = ap_dry_input(&a[2], 4, is);
    float *host = ap_calloc((size_t)(3 * B), sizeof(float), "dry-run rewards and losses");
    const char **prompts = ap_calloc((size_t)B, sizeof *prompts, "dry-run prompts");
    int rc = img.data && dimg.data && host && prompts ? AP_OK : AP_ERR;
    for (int64_t b = 0; b < B && !rc; b++) prompts[b] = "";
    r->tape = a[0], r->tmp = a[1];
    if (!rc) rc = ap_reward_forward(r, dry, &img, prompts, host, host + B, 0);
    if (!rc) rc = ap_reward_forward(r, dry, &img, prompts, host, host + B, 1);
    if (!rc) rc = ap_reward_backward(r, dry, &dimg, host + 2 * B);
    a[0] = r->tape, a[1] = r->tmp;
    memset(&r->tape, 0, sizeof r->tape), memset(&r->tmp, 0, sizeof r->tmp);
    r->taped = 0;
    free(host), free(prompts);
    return rc;
}

int ap_reward_plan(ap_reward *r, ap_ctx *ctx, int64_t B, int64_t H, int64_t W) {
    if (r->B >= B && r->H == H && r->W == W) return ap_ctx_reserve(ctx, r->plan.scratch_bytes);
    ap_arena_free(&r->tape);
    ap_arena_free(&r->tmp);
    free(r->text), free(r->ids), free(r->dl), free(r->vals);
    r->text = NULL, r->ids = NULL, r->dl = NULL, r->vals = NULL;
    r->B = B, r->H = H, r->W = W;
    if (r->kind == AP_REWARD_HPS) {
        int64_t N = r->hps.text.max_pos;
        r->text = ap_malloc((size_t)(B * r->hps.embed_dim) * sizeof(float), "HPS text features");
        r->ids = ap_malloc((size_t)(B * N) * sizeof(int32_t), "HPS token ids");
        if (!r->text || !r->ids) return AP_ERR;
    }
    r->dl = ap_malloc((size_t)B * sizeof(float), "reward d(loss)");
    r->vals = ap_malloc((size_t)(3 * B) * sizeof(float), "reward, loss and d(loss) tensors");
    if (!r->dl || !r->vals) return AP_ERR;
    static const char *const what[3] = {"reward tape", "reward temporaries", "reward inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, reward_step, r, peaks, &r->plan.scratch_bytes)) {
        r->B = 0;
        return ap_err_prefix("measuring the %s reward's workspaces (B %lld, %lld x %lld): ",
                             kind_name(r->kind), (long long)B, (long long)H, (long long)W);
    }
    r->plan.tape_bytes = peaks[0], r->plan.tmp_bytes = peaks[1];
    AP_TRY(ap_arena_init(&r->tape, r->plan.tape_bytes, "reward tape"));
    AP_TRY(ap_arena_init(&r->tmp, r->plan.tmp_bytes, "reward temporaries"));
    return ap_ctx_reserve(ctx, r->plan.scratch_bytes);
}

const ap_plan *ap_reward_plan_of(const ap_reward *r) { return &r->plan; }
