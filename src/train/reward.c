/* reward.c: the training rewards behind one interface (reward.h). */
#include "train/reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "ops/memory.h"
#include "models/aesthetic.h"
#include "models/hps.h"
#include "ops/elementwise.h"
#include "ops/image.h"
#include "ops/rows.h"
#include "text/tokenizer.h"

struct ap_reward {
    ap_reward_kind kind;
    double grad_scale;
    ap_aesthetic aes;          /* aesthetic */
    ap_hps hps;                /* hps */
    ap_pickscore ps;           /* pickscore */
    ap_tokenizer *tok;
    char name[160];            /* kind, hps with its version ("hps v2.1"), or the mixture's sum */
    int n_parts;               /* mixture */
    ap_reward *part[AP_REWARD_MAX_PARTS];
    double weight[AP_REWARD_MAX_PARTS];
};

static const char *kind_name(ap_reward_kind k) {
    return k == AP_REWARD_AESTHETIC ? "aesthetic" : k == AP_REWARD_HPS ? "hps"
         : k == AP_REWARD_MIX ? "mixture" : k == AP_REWARD_PICKSCORE ? "pickscore" : "demo";
}

const char *ap_reward_name(const ap_reward *r) { return r->name; }
int ap_reward_parts(const ap_reward *r) { return r->n_parts; }
const char *ap_reward_part_name(const ap_reward *r, int i) { return kind_name(r->part[i]->kind); }
double ap_reward_part_weight(const ap_reward *r, int i) { return r->weight[i]; }

int ap_reward_open_mixture(ap_reward **out, int n, ap_reward *const *parts, const double *weights) {
    *out = NULL;
    int rc = n < 1 || n > AP_REWARD_MAX_PARTS
                 ? ap_fail("reward mixture: %d parts: expected 1..%d", n, AP_REWARD_MAX_PARTS)
                 : AP_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (!parts[i] || parts[i]->kind == AP_REWARD_MIX)
            rc = ap_fail("reward mixture: part %d: expected an opened reward that is not a mixture", i);
        else if (!isfinite(weights[i]))
            rc = ap_fail("reward mixture: %s: weight %g: expected a finite number",
                         kind_name(parts[i]->kind), weights[i]);
        for (int j = 0; j < i && !rc; j++)
            if (parts[j]->kind == parts[i]->kind)
                rc = ap_fail("reward mixture: %s twice: expected each reward once",
                             kind_name(parts[i]->kind));
    }
    ap_reward *r = rc ? NULL : ap_calloc(1, sizeof *r, "reward mixture");
    if (!r) {
        for (int i = 0; i < n; i++) ap_reward_free(parts[i]);
        return AP_ERR;
    }
    r->kind = AP_REWARD_MIX;
    r->grad_scale = 1.0; /* each part carries its own */
    r->n_parts = n;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        r->part[i] = parts[i], r->weight[i] = weights[i];
        len += (size_t)snprintf(r->name + len, len < sizeof r->name ? sizeof r->name - len : 0,
                                "%s%g*%s", i ? " + " : "", weights[i], parts[i]->name);
        if (len >= sizeof r->name) len = sizeof r->name - 1;
    }
    *out = r;
    return AP_OK;
}

int ap_reward_open_kind(ap_reward **out, ap_reward_kind kind, const char *clip_dir,
                        const char *mlp, const char *hps_config, const char *hps_ckpt,
                        const char *hps_bpe, double aesthetic_target, double grad_scale) {
    *out = NULL;
    ap_reward *r = ap_calloc(1, sizeof *r, "reward");
    if (!r) return AP_ERR;
    r->kind = kind;
    r->grad_scale = grad_scale;
    snprintf(r->name, sizeof r->name, "%s", kind_name(kind));
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

int ap_reward_open_pickscore(ap_reward **out, const char *model_dir, const char *tokenizer_dir) {
    *out = NULL;
    if (!model_dir || !*model_dir || !tokenizer_dir || !*tokenizer_dir)
        return ap_fail("reward pickscore: needs reward.pickscore_model (a yuvalkirstain/PickScore_v1 "
                       "directory) and reward.pickscore_tokenizer (a directory with vocab.json and "
                       "merges.txt, laion/CLIP-ViT-H-14-laion2B-s32B-b79K's)");
    ap_reward *r = ap_calloc(1, sizeof *r, "reward");
    if (!r) return AP_ERR;
    r->kind = AP_REWARD_PICKSCORE;
    r->grad_scale = 1.0;
    snprintf(r->name, sizeof r->name, "pickscore");
    char vocab[4200], merges[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", tokenizer_dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", tokenizer_dir);
    int rc = ap_pickscore_load(&r->ps, model_dir);
    if (!rc) rc = ap_tokenizer_load_hf(&r->tok, vocab, merges);
    if (!rc && ap_tokenizer_vocab_size(r->tok) > r->ps.text.t.vocab)
        rc = ap_fail("reward pickscore: the tokenizer of %s has %d ids, the text tower of %s %d",
                     tokenizer_dir, ap_tokenizer_vocab_size(r->tok), model_dir, r->ps.text.t.vocab);
    if (rc) {
        ap_reward_free(r);
        return AP_ERR;
    }
    *out = r;
    return AP_OK;
}

static int open_single(ap_reward **out, ap_reward_kind kind, const ap_train_config *c) {
    if (kind == AP_REWARD_PICKSCORE)
        return ap_reward_open_pickscore(out, c->pickscore_model, c->pickscore_tokenizer);
    /* grad_scale multiplies the aesthetic loss only, as the original's
     * aesthetic_loss_fn (its hps_loss_fn has none) */
    AP_TRY(ap_reward_open_kind(out, kind, c->aesthetic_clip, c->aesthetic_mlp, c->hps_config,
                               c->hps_checkpoint, c->hps_tokenizer, c->aesthetic_target,
                               kind == AP_REWARD_AESTHETIC ? c->grad_scale : 1.0));
    /* HPS v2.0 and v2.1 differ only in their weights (docs/hps.md §1): the
     * version is what the config says, shown wherever the reward is named */
    if (kind == AP_REWARD_HPS) snprintf((*out)->name, sizeof (*out)->name, "hps %s", c->hps_version);
    return AP_OK;
}

int ap_reward_open(ap_reward **out, const ap_train_config *c) {
    if (c->reward != AP_REWARD_MIX) return open_single(out, c->reward, c);
    ap_reward *parts[AP_REWARD_MAX_PARTS] = {0};
    int n = c->n_parts;
    for (int i = 0; i < n; i++)
        if (open_single(&parts[i], c->part_kind[i], c)) {
            for (int j = 0; j < i; j++) ap_reward_free(parts[j]);
            return ap_err_prefix("reward_fn: %s: ", kind_name(c->part_kind[i]));
        }
    return ap_reward_open_mixture(out, n, parts, c->part_weight);
}

void ap_reward_free(ap_reward *r) {
    if (!r) return;
    for (int i = 0; i < r->n_parts; i++) ap_reward_free(r->part[i]);
    if (r->kind == AP_REWARD_AESTHETIC) ap_aesthetic_free(&r->aes);
    if (r->kind == AP_REWARD_HPS) ap_hps_free(&r->hps);
    if (r->kind == AP_REWARD_PICKSCORE) ap_pickscore_free(&r->ps);
    ap_tokenizer_free(r->tok);
    free(r);
}

/* every parameter block of a reward (not of its parts) */
static int blocks(ap_reward *r, ap_params **b) {
    int n = 0;
    if (r->kind == AP_REWARD_AESTHETIC) b[n++] = &r->aes.clip.params, b[n++] = &r->aes.mlp_params;
    if (r->kind == AP_REWARD_HPS) b[n++] = &r->hps.params;
    if (r->kind == AP_REWARD_PICKSCORE) b[n++] = &r->ps.vis.params, b[n++] = &r->ps.text.params;
    return n;
}

int ap_reward_place(ap_ctx *ctx, ap_reward *r) {
    for (int i = 0; i < r->n_parts; i++) AP_TRY(ap_reward_place(ctx, r->part[i]));
    ap_params *b[2];
    const int n = blocks(r, b);
    for (int i = 0; i < n; i++) AP_TRY(ap_params_place(ctx, b[i]));
    return AP_OK;
}

void ap_reward_unplace(ap_ctx *ctx, ap_reward *r) {
    if (!r) return;
    for (int i = 0; i < r->n_parts; i++) ap_reward_unplace(ctx, r->part[i]);
    ap_params *b[2];
    const int n = blocks(r, b);
    for (int i = 0; i < n; i++) ap_params_unplace(ctx, b[i]);
}

int ap_reward_saved_init(ap_ctx *ctx, ap_reward_saved *sv, const ap_reward *r, int64_t cap) {
    memset(sv, 0, sizeof *sv);
    if (cap < 1) return ap_fail("reward: %lld images: expected at least 1", (long long)cap);
    sv->cap = cap;
    const int texts = r->kind == AP_REWARD_HPS || r->kind == AP_REWARD_PICKSCORE;
    int64_t N = 0, E = 0;
    if (texts) {
        N = r->kind == AP_REWARD_HPS ? r->hps.text.max_pos : r->ps.text.t.max_pos;
        E = r->kind == AP_REWARD_HPS ? r->hps.embed_dim : r->ps.embed_dim;
        sv->ids = ap_malloc((size_t)(cap * N) * sizeof(int32_t), "reward token ids");
    }
    sv->dl = ap_malloc((size_t)cap * sizeof(float), "reward d(loss)");
    /* tensors where ctx's ops run (docs/cuda.md §6) */
    const size_t tb = ap_align64((size_t)(cap * E) * sizeof(float));
    int ok = ap_arena_init_on(ctx, &sv->mem, tb + ap_align64((size_t)(3 * cap) * sizeof(float)),
                              "reward tensors (text features, reward, loss, d(loss))") == AP_OK;
    if (ok && texts) ok = (sv->text = ap_arena_floats(&sv->mem, (size_t)(cap * E), "reward text features")) != NULL;
    if (ok) ok = (sv->vals = ap_arena_floats(&sv->mem, (size_t)(3 * cap), "reward, loss and d(loss)")) != NULL;
    ok = ok && sv->dl && (!texts || sv->ids);
    if (ok && r->n_parts) {
        sv->part = ap_calloc((size_t)r->n_parts, sizeof *sv->part, "reward mixture saved parts");
        sv->part_vals = ap_malloc((size_t)(r->n_parts * 3 * cap) * sizeof(float),
                                  "reward mixture part values");
        ok = sv->part && sv->part_vals;
        for (int i = 0; i < r->n_parts && ok; i++) {
            ok = ap_reward_saved_init(ctx, &sv->part[i], r->part[i], cap) == AP_OK;
            if (ok) sv->n_parts = i + 1;
        }
    }
    if (!ok) {
        ap_reward_saved_free(ctx, sv);
        return AP_ERR;
    }
    return AP_OK;
}

void ap_reward_saved_free(ap_ctx *ctx, ap_reward_saved *sv) {
    for (int i = 0; i < sv->n_parts; i++) ap_reward_saved_free(ctx, &sv->part[i]);
    free(sv->part), free(sv->part_vals);
    free(sv->ids), free(sv->dl);
    ap_arena_free_on(ctx, &sv->mem); /* text, vals */
    memset(sv, 0, sizeof *sv);
}

size_t ap_reward_saved_bytes(const ap_reward_saved *sv) {
    size_t b = sv->mem.cap;
    for (int i = 0; i < sv->n_parts; i++) b += ap_reward_saved_bytes(&sv->part[i]);
    return b;
}

const float *ap_reward_part_values(const ap_reward_saved *sv, int i) {
    return i >= 0 && i < sv->n_parts ? sv->part_vals + (size_t)i * 3 * sv->cap : NULL;
}

/* mixture forward: each part on the same image and tape, then the weighted sums */
static int mix_forward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                       float *reward, float *loss, const ap_tensor *image,
                       const char *const *prompts) {
    int64_t B = image->shape[0], cap = sv->cap;
    for (int i = 0; i < r->n_parts; i++) {
        float *v = sv->part_vals + (size_t)i * 3 * cap;
        if (ap_reward_forward(ctx, tape, r->part[i], &sv->part[i], v, v + cap, image, prompts))
            return ap_err_prefix("reward mixture, part %s: ", r->part[i]->name);
    }
    for (int64_t b = 0; b < B; b++) {
        double rs = 0, ls = 0;
        for (int i = 0; i < r->n_parts; i++) {
            const float *v = sv->part_vals + (size_t)i * 3 * cap;
            rs += r->weight[i] * v[b], ls += r->weight[i] * v[cap + b];
        }
        if (reward) reward[b] = (float)rs;
        loss[b] = (float)ls;
    }
    return AP_OK;
}

/* mixture backward: part 0 writes dimage, the others add theirs */
static int mix_backward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                        const ap_tensor *dimage, const float *dloss) {
    int64_t B = sv->image.shape[0], cap = sv->cap;
    ap_arena *tmp = r->n_parts > 1 ? ap_ctx_tmp(ctx, "reward mixture backward") : NULL;
    if (r->n_parts > 1 && !tmp) return AP_ERR;
    size_t mark = tmp ? tmp->used : 0;
    ap_tensor di = *dimage;
    if (tmp && !(di.data = ap_arena_floats(tmp, (size_t)ap_numel(dimage), "reward mixture d(image) of a part")))
        return AP_ERR;
    int rc = AP_OK;
    for (int i = 0; i < r->n_parts && !rc; i++) {
        float *dl = sv->part_vals + (size_t)i * 3 * cap + 2 * cap;
        for (int64_t b = 0; b < B; b++) dl[b] = (float)(r->weight[i] * dloss[b]);
        rc = ap_reward_backward(ctx, tape, r->part[i], &sv->part[i], i ? &di : dimage, dl);
        if (rc) rc = ap_err_prefix("reward mixture, part %s: ", r->part[i]->name);
        if (!rc && i) rc = ap_axpy(ctx, dimage, 1.0f, &di);
    }
    if (tmp) tmp->used = mark;
    return rc;
}

int ap_reward_forward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                      float *reward, float *loss, const ap_tensor *image,
                      const char *const *prompts) {
    AP_TRY(ap_expect("reward", "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    int64_t B = image->shape[0];
    if (B > sv->cap)
        return ap_fail("reward %s: %lld images exceed the %lld the saved buffers were made for",
                       r->name, (long long)B, (long long)sv->cap);
    ap_tape_record(&sv->rec, NULL, NULL); /* stamped below once complete */
    sv->image = *image;
    /* the models write (B) tensors; the values come to the host at the end */
    ap_tensor tr = ap_t1(sv->vals, B), tl = ap_t1(sv->vals + B, B);
    tr.device = tl.device = ctx->device;
    if (r->kind == AP_REWARD_MIX) {
        AP_TRY(mix_forward(ctx, tape, r, sv, reward, loss, image, prompts));
        ap_tape_record(&sv->rec, tape, r);
        return AP_OK;
    }
    if (r->kind == AP_REWARD_AESTHETIC) {
        AP_TRY(ap_aesthetic_forward(ctx, tape, &r->aes, &sv->aes, &tr, &tl, image));
    } else if (r->kind == AP_REWARD_HPS) {
        int64_t N = r->hps.text.max_pos;
        for (int64_t b = 0; b < B; b++) {
            if (ap_tokenize(r->tok, prompts[b], sv->ids + b * N, (int)N))
                return ap_err_prefix("reward hps: prompt \"%s\": ", prompts[b]);
        }
        ap_tensor tt = ap_t2(sv->text, B, r->hps.embed_dim);
        tt.device = ctx->device;
        AP_TRY(ap_hps_encode_text(ctx, &r->hps, &tt, sv->ids, B, N));
        AP_TRY(ap_hps_forward(ctx, tape, &r->hps, &sv->hps, &tr, &tl, image, &tt));
    } else if (r->kind == AP_REWARD_PICKSCORE) {
        int64_t N = r->ps.text.t.max_pos;
        for (int64_t b = 0; b < B; b++) {
            if (ap_tokenize(r->tok, prompts[b], sv->ids + b * N, (int)N))
                return ap_err_prefix("reward pickscore: prompt \"%s\": ", prompts[b]);
        }
        ap_tensor tt = ap_t2(sv->text, B, r->ps.embed_dim);
        tt.device = ctx->device;
        AP_TRY(ap_pickscore_encode_text(ctx, &r->ps, &tt, sv->ids, B, N));
        AP_TRY(ap_pickscore_forward(ctx, tape, &r->ps, &sv->ps, &tr, &tl, image, &tt));
    } else { /* demo: reward = colourfulness, loss = -reward */
        AP_TRY(ap_colourfulness_forward(ctx, &tr, image));
        AP_TRY(ap_scale_forward(ctx, &tl, &tr, -1.0f));
    }
    if (reward) AP_TRY(ap_tensor_read(ctx, reward, &tr));
    AP_TRY(ap_tensor_read(ctx, loss, &tl));
    for (int64_t b = 0; b < B; b++) loss[b] = (float)(loss[b] * r->grad_scale);
    ap_tape_record(&sv->rec, tape, r);
    return AP_OK;
}

int ap_reward_backward(ap_ctx *ctx, ap_tape *tape, const ap_reward *r, ap_reward_saved *sv,
                       const ap_tensor *dimage, const float *dloss) {
    AP_TRY(ap_tape_check("reward_backward", &sv->rec, tape, r));
    AP_TRY(ap_expect_same("reward_backward", "image", &sv->image, "dimage", dimage));
    if (r->kind == AP_REWARD_MIX) return mix_backward(ctx, tape, r, sv, dimage, dloss);
    int64_t B = sv->image.shape[0];
    float *dl = sv->dl;
    for (int64_t b = 0; b < B; b++) dl[b] = (float)(dloss[b] * r->grad_scale);
    ap_tensor td = ap_t1(sv->vals + 2 * sv->cap, B);
    td.device = ctx->device;
    AP_TRY(ap_tensor_write(ctx, &td, dl));
    if (r->kind == AP_REWARD_AESTHETIC)
        return ap_aesthetic_backward(ctx, tape, &r->aes, &sv->aes, dimage, &td);
    if (r->kind == AP_REWARD_HPS)
        return ap_hps_backward(ctx, tape, &r->hps, &sv->hps, dimage, &td);
    if (r->kind == AP_REWARD_PICKSCORE)
        return ap_pickscore_backward(ctx, tape, &r->ps, &sv->ps, dimage, &td);
    /* loss = -colourfulness: d(colourfulness) = -dl */
    AP_TRY(ap_scale_forward(ctx, &td, &td, -1.0f));
    return ap_colourfulness_backward(ctx, dimage, &td, &sv->image);
}

/* The dry run ap_reward_plan_measure makes: a forward without tape, one
 * with tape and its backward, through the functions above on measuring
 * arenas (empty prompts for hps). */
typedef struct {
    const ap_reward *r;
    int64_t B, H, W;
} reward_case;

static int reward_step(ap_ctx *dry, ap_arena *a, void *user) {
    const reward_case *k = user;
    int64_t B = k->B, is[4] = {B, 3, k->H, k->W};
    ap_tensor img = ap_dry_input(&a[2], 4, is), dimg = ap_dry_input(&a[2], 4, is);
    float *host = ap_calloc((size_t)(3 * B), sizeof(float), "dry-run rewards and losses");
    const char **prompts = ap_calloc((size_t)B, sizeof *prompts, "dry-run prompts");
    ap_reward_saved sv;
    int rc = img.data && dimg.data && host && prompts ? AP_OK : AP_ERR;
    if (!rc) rc = ap_reward_saved_init(dry, &sv, k->r, B);
    if (rc) {
        free(host), free(prompts);
        return AP_ERR;
    }
    for (int64_t b = 0; b < B; b++) prompts[b] = "";
    ap_tape tape = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    rc = ap_reward_forward(dry, NULL, k->r, &sv, host, host + B, &img, prompts);
    if (!rc) rc = ap_reward_forward(dry, &tape, k->r, &sv, host, host + B, &img, prompts);
    if (!rc) rc = ap_reward_backward(dry, &tape, k->r, &sv, &dimg, host + 2 * B);
    ap_reward_saved_free(dry, &sv);
    free(host), free(prompts);
    return rc;
}

int ap_reward_plan_measure(ap_ctx *ctx, const ap_reward *r, int64_t B, int64_t H, int64_t W,
                           ap_plan *p) {
    reward_case k = {r, B, H, W};
    static const char *const what[3] = {"reward tape", "reward temporaries", "reward inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, reward_step, &k, peaks, &p->scratch_bytes))
        return ap_err_prefix("measuring the %s reward's workspaces (B %lld, %lld x %lld): ",
                             r->name, (long long)B, (long long)H, (long long)W);
    p->tape_bytes = peaks[0], p->tmp_bytes = peaks[1];
    return AP_OK;
}
