/* reward.c: the training rewards behind one interface (reward.h). */
#include "train/reward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "models/aesthetic.h"
#include "models/hps.h"
#include "text/tokenizer.h"

struct ap_reward {
    ap_reward_kind kind;
    double grad_scale;
    int64_t B, H, W;           /* planned */
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
    /* demo: per-sample statistics kept for backward */
    ap_tensor image;           /* last forward's image (caller-owned) */
    double *stats;             /* (B, 6): mean_rg, mean_yb, var_rg, var_yb, s, m */
    float *dl;                 /* (B) scaled d(loss) for backward */
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
    return ap_reward_open_kind(out, c->reward, c->aesthetic_clip, c->aesthetic_mlp, c->hps_config,
                               c->hps_checkpoint, c->hps_tokenizer, c->aesthetic_target,
                               c->grad_scale);
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
    free(r->text), free(r->ids), free(r->stats), free(r->dl);
    free(r);
}

int ap_reward_plan(ap_reward *r, ap_ctx *ctx, int64_t B, int64_t H, int64_t W) {
    (void)ctx;
    if (r->B >= B && r->H == H && r->W == W) return AP_OK;
    ap_arena_free(&r->tape);
    ap_arena_free(&r->tmp);
    free(r->text), free(r->ids), free(r->stats), free(r->dl);
    r->text = NULL, r->ids = NULL, r->stats = NULL, r->dl = NULL;
    r->B = B, r->H = H, r->W = W;
    size_t tape = 64, tmp = 64;
    if (r->kind == AP_REWARD_AESTHETIC) {
        tape = ap_aesthetic_tape_bytes(&r->aes, B);
        tmp = ap_aesthetic_tmp_bytes(&r->aes, B, H, W);
    } else if (r->kind == AP_REWARD_HPS) {
        int64_t N = r->hps.text.max_pos;
        tape = ap_hps_tape_bytes(&r->hps, B);
        tmp = ap_hps_tmp_bytes(&r->hps, B, H, W);
        size_t tt = ap_hps_text_tmp_bytes(&r->hps, B, N);
        if (tt > tmp) tmp = tt;
        r->text = ap_malloc((size_t)(B * r->hps.embed_dim) * sizeof(float), "HPS text features");
        r->ids = ap_malloc((size_t)(B * N) * sizeof(int32_t), "HPS token ids");
        if (!r->text || !r->ids) return AP_ERR;
    }
    r->stats = ap_malloc((size_t)B * 6 * sizeof(double), "reward statistics");
    r->dl = ap_malloc((size_t)B * sizeof(float), "reward d(loss)");
    if (!r->stats || !r->dl) return AP_ERR;
    AP_TRY(ap_arena_init(&r->tape, tape, "reward tape"));
    AP_TRY(ap_arena_init(&r->tmp, tmp, "reward temporaries"));
    return AP_OK;
}

/* Colourfulness of one image (3, H, W) in [0, 1] = x/2 + 0.5 (reward.h). */
static double colourfulness(const float *img, int64_t HW, double *st) {
    const float *R = img, *G = img + HW, *Bc = img + 2 * HW;
    double s_rg = 0, s_yb = 0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        s_rg += r - g;
        s_yb += 0.5 * (r + g) - b;
    }
    double m_rg = s_rg / HW, m_yb = s_yb / HW, v_rg = 0, v_yb = 0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        v_rg += a * a;
        v_yb += c * c;
    }
    v_rg /= HW, v_yb /= HW;
    double s = sqrt(v_rg + v_yb), m = sqrt(m_rg * m_rg + m_yb * m_yb);
    st[0] = m_rg, st[1] = m_yb, st[2] = v_rg, st[3] = v_yb, st[4] = s, st[5] = m;
    return s + 0.3 * m;
}

/* d(colourfulness)/d(image) * dC, written into dimg (3, H, W). */
static void colourfulness_backward(float *dimg, const float *img, int64_t HW, const double *st,
                                   double dC) {
    const float *R = img, *G = img + HW, *Bc = img + 2 * HW;
    double m_rg = st[0], m_yb = st[1], s = st[4], m = st[5];
    /* dC/dv = 1/(2s) for each variance; dC/dmean = 0.3 * mean / m */
    double ds = s > 0 ? dC / (2.0 * s) : 0.0;
    double dm_rg = m > 0 ? dC * 0.3 * m_rg / m : 0.0, dm_yb = m > 0 ? dC * 0.3 * m_yb / m : 0.0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        /* d var/d x_p = 2 (x_p - mean) / HW (the mean's own term sums to 0) */
        double d_rg = ds * 2.0 * a / HW + dm_rg / HW;
        double d_yb = ds * 2.0 * c / HW + dm_yb / HW;
        /* rg = r - g, yb = (r + g)/2 - b; pixel = x/2 + 0.5 */
        dimg[p] = (float)(0.5 * (d_rg + 0.5 * d_yb));
        dimg[HW + p] = (float)(0.5 * (-d_rg + 0.5 * d_yb));
        dimg[2 * HW + p] = (float)(0.5 * (-d_yb));
    }
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
    ap_tensor tr = ap_t1(reward, B), tl = ap_t1(loss, B);
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
    } else {
        for (int64_t b = 0; b < B; b++) {
            double c = colourfulness(image->data + b * 3 * H * W, H * W, r->stats + 6 * b);
            reward[b] = (float)c;
            loss[b] = (float)-c;
        }
    }
    for (int64_t b = 0; b < B; b++) loss[b] = (float)(loss[b] * r->grad_scale);
    r->taped = keep_tape;
    return AP_OK;
}

int ap_reward_backward(ap_reward *r, ap_ctx *ctx, const ap_tensor *dimage, const float *dloss) {
    if (!r->taped) return ap_fail("reward %s: backward needs a forward with a tape", kind_name(r->kind));
    AP_TRY(ap_expect_same("reward_backward", "image", &r->image, "dimage", dimage));
    int64_t B = r->image.shape[0], H = r->image.shape[2], W = r->image.shape[3];
    float *dl = r->dl;
    for (int64_t b = 0; b < B; b++) dl[b] = (float)(dloss[b] * r->grad_scale);
    ap_tensor td = ap_t1(dl, B);
    if (r->kind == AP_REWARD_AESTHETIC)
        return ap_aesthetic_backward(ctx, &r->tmp, &r->aes, &r->aes_sv, dimage, &td);
    if (r->kind == AP_REWARD_HPS)
        return ap_hps_backward(ctx, &r->tmp, &r->hps, &r->hps_sv, dimage, &td);
    for (int64_t b = 0; b < B; b++)
        colourfulness_backward(dimage->data + b * 3 * H * W, r->image.data + b * 3 * H * W, H * W,
                               r->stats + 6 * b, -(double)dl[b]);
    return AP_OK;
}
