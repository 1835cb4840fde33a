/* hps.c: HPSv2 (open_clip CLIP) config, loader, text features, score and
 * image-gradient backward.
 *
 * Accumulation rule: frozen weights; dimage is written (=). */
#include "hps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "models/clip_common.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/rows.h"

#define HPS_NORM_EPS 1e-12f /* F.normalize */

static int is_true(const ap_json *o, const char *k) {
    const ap_json *j = ap_json_get(o, k);
    return j && j->type == AP_JSON_BOOL && j->boolean;
}

static int is_set(const ap_json *o, const char *k) {
    const ap_json *j = ap_json_get(o, k);
    return j && j->type != AP_JSON_NULL;
}

int ap_hps_config(ap_hps *m, const ap_json *cfg, const char *what) {
    const ap_json *vc = ap_json_get(cfg, "vision_cfg"), *tc = ap_json_get(cfg, "text_cfg");
    if (!vc || vc->type != AP_JSON_OBJ || !tc || tc->type != AP_JSON_OBJ)
        return ap_fail("%s: expected objects \"vision_cfg\" and \"text_cfg\" (an open_clip model "
                       "config), found %s and %s", what, vc ? ap_json_type_name(vc->type) : "nothing",
                       tc ? ap_json_type_name(tc->type) : "nothing");
    /* options that change the architecture: set (non-null) or true */
    static const char *const vset[] = {"timm_model_name", "ls_init_value", NULL};
    static const char *const vtrue[] = {"input_patchnorm", "global_average_pool",
                                        "attentional_pool", NULL};
    static const char *const tset[] = {"hf_model_name", "ls_init_value", NULL};
    static const char *const ttrue[] = {"embed_cls", NULL};
    for (const char *const *k = vset; *k; k++)
        if (is_set(vc, *k)) return ap_fail("%s: vision_cfg key \"%s\": not supported", what, *k);
    for (const char *const *k = vtrue; *k; k++)
        if (is_true(vc, *k)) return ap_fail("%s: vision_cfg key \"%s\": not supported", what, *k);
    for (const char *const *k = tset; *k; k++)
        if (is_set(tc, *k)) return ap_fail("%s: text_cfg key \"%s\": not supported", what, *k);
    for (const char *const *k = ttrue; *k; k++)
        if (is_true(tc, *k)) return ap_fail("%s: text_cfg key \"%s\": not supported", what, *k);
    if (is_true(cfg, "custom_text"))
        return ap_fail("%s: key \"custom_text\": not supported (CustomTextCLIP)", what);
    ap_vit *v = &m->visual;
    ap_text_tower *t = &m->text;
    int head_width;
    double vratio;
    AP_TRY(ap_cfg_int(cfg, "embed_dim", what, -1, 1, 1 << 16, &m->embed_dim));
    /* open_clip 2.20 CLIPVisionCfg / CLIPTextCfg defaults */
    AP_TRY(ap_cfg_int(vc, "layers", what, 12, 0, 1024, &v->layers));
    AP_TRY(ap_cfg_int(vc, "width", what, 768, 1, 1 << 16, &v->C));
    AP_TRY(ap_cfg_int(vc, "head_width", what, 64, 1, 1 << 16, &head_width));
    AP_TRY(ap_cfg_num(vc, "mlp_ratio", what, 4.0, &vratio));
    AP_TRY(ap_cfg_int(vc, "patch_size", what, 16, 1, 1 << 14, &v->patch));
    AP_TRY(ap_cfg_int(vc, "image_size", what, 224, 1, 1 << 14, &v->image_size));
    AP_TRY(ap_cfg_int(tc, "context_length", what, 77, 1, 1 << 16, &t->max_pos));
    AP_TRY(ap_cfg_int(tc, "vocab_size", what, 49408, 1, 1 << 24, &t->vocab));
    AP_TRY(ap_cfg_int(tc, "width", what, 512, 1, 1 << 16, &t->C));
    AP_TRY(ap_cfg_int(tc, "heads", what, 8, 1, 1024, &t->heads));
    AP_TRY(ap_cfg_int(tc, "layers", what, 12, 0, 1024, &t->layers));
    if (v->C % head_width || t->C % t->heads || v->patch > v->image_size)
        return ap_fail("%s: expected vision width %% head_width == 0, text width %% heads == 0 and "
                       "patch_size <= image_size, found %d %% %d, %d %% %d, %d > %d", what, v->C,
                       head_width, t->C, t->heads, v->patch, v->image_size);
    v->heads = v->C / head_width;
    v->F = (int)(v->C * vratio); /* int(width * mlp_ratio) */
    v->channels = 3;
    v->proj_dim = m->embed_dim;
    v->proj_in_out = 1;
    v->eps = t->eps = 1e-5f;
    v->act = t->act = is_true(cfg, "quick_gelu") ? AP_ACT_QUICK_GELU : AP_ACT_GELU;
    t->F = 4 * t->C; /* TextTransformer mlp_ratio 4.0 */
    return AP_OK;
}

int ap_hps_declare(ap_hps *m) {
    ap_vit *v = &m->visual;
    ap_text_tower *t = &m->text;
    ap_params *p = &m->params;
    ap_params_init(p);
    free(v->layer), free(t->layer);
    v->layer = ap_calloc((size_t)(v->layers ? v->layers : 1), sizeof *v->layer, "HPS vision layers");
    t->layer = ap_calloc((size_t)(t->layers ? t->layers : 1), sizeof *t->layer, "HPS text layers");
    if (!v->layer || !t->layer) return AP_ERR;
    int64_t C = v->C, Ct = t->C, E = m->embed_dim;
    int ok = 1;
    char pre[96];
    ok &= ap_params_add(p, &t->pos_emb, 2, (int64_t[]){t->max_pos, Ct}, "positional_embedding") >= 0;
    ok &= ap_params_add(p, &m->text_proj, 2, (int64_t[]){Ct, E}, "text_projection") >= 0;
    ok &= ap_params_add(p, &m->logit_scale, 0, NULL, "logit_scale") >= 0;
    ok &= ap_params_add(p, &v->cls, 1, (int64_t[]){C}, "visual.class_embedding") >= 0;
    ok &= ap_params_add(p, &v->pos, 2, (int64_t[]){ap_vit_tokens(v), C}, "visual.positional_embedding") >= 0;
    ok &= ap_params_add(p, &v->proj, 2, (int64_t[]){C, E}, "visual.proj") >= 0;
    ok &= ap_params_add(p, &v->patch_w, 4, (int64_t[]){C, 3, v->patch, v->patch}, "visual.conv1.weight") >= 0;
    ok &= ap_params_add(p, &v->pre_w, 1, (int64_t[]){C}, "visual.ln_pre.weight") >= 0;
    ok &= ap_params_add(p, &v->pre_b, 1, (int64_t[]){C}, "visual.ln_pre.bias") >= 0;
    for (int l = 0; l < v->layers; l++) {
        snprintf(pre, sizeof pre, "visual.transformer.resblocks.%d", l);
        ok &= ap_enc_declare(&v->layer[l], p, pre, AP_ENC_KEYS_OPENCLIP, v->C, v->F, v->heads, v->act,
                             0, v->eps) == 0;
    }
    ok &= ap_params_add(p, &v->post_w, 1, (int64_t[]){C}, "visual.ln_post.weight") >= 0;
    ok &= ap_params_add(p, &v->post_b, 1, (int64_t[]){C}, "visual.ln_post.bias") >= 0;
    for (int l = 0; l < t->layers; l++) {
        snprintf(pre, sizeof pre, "transformer.resblocks.%d", l);
        ok &= ap_enc_declare(&t->layer[l], p, pre, AP_ENC_KEYS_OPENCLIP, t->C, t->F, t->heads, t->act,
                             1, t->eps) == 0;
    }
    ok &= ap_params_add(p, &t->tok_emb, 2, (int64_t[]){t->vocab, Ct}, "token_embedding.weight") >= 0;
    ok &= ap_params_add(p, &t->lnf_w, 1, (int64_t[]){Ct}, "ln_final.weight") >= 0;
    ok &= ap_params_add(p, &t->lnf_b, 1, (int64_t[]){Ct}, "ln_final.bias") >= 0;
    return ok ? AP_OK : AP_ERR;
}

int ap_hps_load(ap_hps *m, const char *config_json, const char *checkpoint) {
    memset(m, 0, sizeof *m);
    ap_json *cfg = NULL;
    AP_TRY(ap_json_parse_file(&cfg, config_json));
    int rc = ap_hps_config(m, cfg, config_json);
    ap_json_free(cfg);
    AP_TRY(rc);
    /* Mixed precision (ap_params_store_frozen): the MLPs and the patch conv in
     * the frozen dtype; embeddings, projections and the attention's packed
     * in_proj (nn/proj.c's raw f32 GEMM) stay f32. */
    static const char *const keep_f32[] = {"embedding", NULL};
    if (ap_hps_declare(m) || (ap_params_store_frozen(&m->params, keep_f32), 0) ||
        ap_params_alloc(&m->params, "HPS parameters")) {
        ap_hps_free(m);
        return AP_ERR;
    }
    ap_wsrc *w = NULL;
    rc = ap_wsrc_open(&w, checkpoint);
    if (!rc) {
        const char *prefix = "";
        for (int i = 0; i < ap_wsrc_count(w); i++)
            if (strncmp(ap_wsrc_name(w, i), "state_dict.", 11) == 0) prefix = "state_dict.";
        rc = ap_params_fill(&m->params, w, prefix, NULL);
    }
    ap_wsrc_close(w);
    if (rc) ap_hps_free(m);
    return rc;
}

void ap_hps_free(ap_hps *m) {
    ap_params_free(&m->params);
    free(m->visual.layer);
    free(m->text.layer);
    memset(m, 0, sizeof *m);
}

int ap_hps_encode_text(ap_ctx *ctx, const ap_hps *m, const ap_tensor *feats,
                       const int32_t *ids, int64_t B, int64_t N) {
    const char *op = "hps_encode_text";
    int64_t Ct = m->text.C, E = m->embed_dim;
    AP_TRY(ap_expect2(op, "feats", feats, B, E));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    size_t mark = tmp->used;
    int rc = AP_ERR;
    float *h = ap_arena_floats(tmp, (size_t)(B * N * Ct), "HPS text hidden states"),
          *pooled = ap_arena_floats(tmp, (size_t)(B * Ct), "HPS text pooled"),
          *norm = ap_arena_floats(tmp, (size_t)B, "HPS text norms");
    if (!h || !pooled || !norm) goto out;
    ap_tensor th = ap_t3(h, B, N, Ct), tn = ap_t1(norm, B);
    if (ap_text_tower_forward(ctx, &m->text, &th, ids, B, N)) goto out;
    /* pooled (B, Ct) = h at each prompt's end token: torch.argmax of the
     * ids, the first position of the maximum (host-side index logic) */
    int *idx = ap_malloc((size_t)B * sizeof(int), "HPS end-token rows");
    if (!idx) goto out;
    for (int64_t b = 0; b < B; b++) {
        int64_t best = 0;
        for (int64_t i = 1; i < N; i++)
            if (ids[b * N + i] > ids[b * N + best]) best = i;
        idx[b] = (int)(b * N + best);
    }
    ap_tensor tpool = ap_t2(pooled, B, Ct), hrows = ap_t2(h, B * N, Ct);
    int grc = ap_gather_rows(ctx, &tpool, &hrows, idx, (int)B);
    free(idx);
    if (grc) goto out;
    if (ap_matmul(ctx, feats, &tpool, &m->text_proj, 0, 0, 1.0f, 0.0f)) goto out;
    if (ap_l2norm_forward(ctx, feats, &tn, feats, HPS_NORM_EPS)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}

int ap_hps_forward(ap_ctx *ctx, ap_tape *tape, const ap_hps *m, ap_hps_saved *sv,
                   const ap_tensor *score, const ap_tensor *loss, const ap_tensor *image,
                   const ap_tensor *text) {
    /* score = n . t per image; loss = 1 - score (computed in loss when no
     * score is wanted) */
    const ap_tensor *sc = score ? score : loss;
    if (!sc) return ap_fail("hps_forward: expected a score or a loss tensor, found neither");
    if (score && loss) AP_TRY(ap_expect_same("hps_forward", "score", score, "loss", loss));
    AP_TRY(ap_clip_score_forward(ctx, tape, &m->visual, sv, sc, image, text, 1.0f, "hps"));
    return loss ? ap_affine_forward(ctx, loss, sc, -1.0f, 1.0f) : AP_OK;
}

int ap_hps_backward(ap_ctx *ctx, ap_tape *tape, const ap_hps *m, const ap_hps_saved *s,
                    const ap_tensor *dimage, const ap_tensor *dloss) {
    return ap_clip_score_backward(ctx, tape, &m->visual, s, dimage, dloss, -1.0f, "hps");
}

typedef struct {
    const ap_hps *m;
    int64_t B, H, W, N;
    const int32_t *ids;
} hps_case;

static int hps_step(ap_ctx *dry, ap_arena *a, void *user) {
    const hps_case *k = user;
    int64_t is[4] = {k->B, 3, k->H, k->W}, bs[1] = {k->B}, ts[2] = {k->B, k->m->embed_dim};
    ap_tensor img = ap_dry_input(&a[2], 4, is), dimg = ap_dry_input(&a[2], 4, is);
    ap_tensor sc = ap_dry_input(&a[2], 1, bs), l = ap_dry_input(&a[2], 1, bs);
    ap_tensor dl = ap_dry_input(&a[2], 1, bs), text = ap_dry_input(&a[2], 2, ts);
    if (!img.data || !dimg.data || !sc.data || !l.data || !dl.data || !text.data) return AP_ERR;
    ap_hps_saved sv;
    ap_tape tape = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_hps_encode_text(dry, k->m, &text, k->ids, k->B, k->N));
    AP_TRY(ap_hps_forward(dry, NULL, k->m, NULL, &sc, &l, &img, &text));
    AP_TRY(ap_hps_forward(dry, &tape, k->m, &sv, &sc, &l, &img, &text));
    return ap_hps_backward(dry, &tape, k->m, &sv, &dimg, &dl);
}

int ap_hps_plan_measure(ap_ctx *ctx, const ap_hps *m, int64_t B, int64_t H, int64_t W, int64_t N,
                        ap_plan *p) {
    if (B < 1 || N < 1 || N > m->text.max_pos)
        return ap_fail("hps_plan: expected B >= 1 and 1 <= N <= %d, found B %lld, N %lld",
                       m->text.max_pos, (long long)B, (long long)N);
    int32_t *ids = ap_calloc((size_t)(B * N), sizeof *ids, "dry-run token ids");
    if (!ids) return AP_ERR;
    hps_case k = {m, B, H, W, N, ids};
    static const char *const what[3] = {"HPS tape", "HPS temporaries", "HPS inputs"};
    size_t peaks[3];
    int rc = ap_measure(ctx, 3, what, hps_step, &k, peaks, &p->scratch_bytes);
    free(ids);
    if (rc)
        return ap_err_prefix("measuring the HPS reward's workspaces (B %lld, %lld x %lld, N %lld): ",
                             (long long)B, (long long)H, (long long)W, (long long)N);
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}
