/* clip_text.c: CLIP text tower forward and the transformers CLIPTextModel
 * loader. */
#include "clip_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "models/clip_common.h"
#include "ops/norm.h"
#include "ops/rows.h"

int ap_text_tower_forward(ap_ctx *ctx, const ap_text_tower *t,
                          const ap_tensor *out, const int32_t *ids, int64_t B, int64_t N) {
    const char *op = "text_tower_forward";
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    if (!ids || B <= 0 || N <= 0 || N > t->max_pos)
        return ap_fail("%s: ids: expected (B, N) token ids with B >= 1 and 1 <= N <= %d, found "
                       "(%lld, %lld)%s", op, t->max_pos, (long long)B, (long long)N,
                       ids ? "" : " without data");
    AP_TRY(ap_expect3(op, "out", out, B, N, t->C));
    int64_t C = t->C;
    for (int64_t i = 0; i < B * N; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return ap_fail("%s: ids[%lld][%lld]: expected a token id in [0, %d), found %d", op,
                           (long long)(i / N), (long long)(i % N), t->vocab, (int)ids[i]);
    /* h (B, N, C) = token embeddings of ids + position embeddings 0..N-1 */
    ap_tensor rows = ap_reshape(out, 2, (int64_t[]){B * N, C}), pos = ap_rows(&t->pos_emb, 0, N);
    AP_TRY(ap_gather_rows(ctx, &rows, &t->tok_emb, (const int *)ids, (int)(B * N)));
    AP_TRY(ap_add_broadcast_rows(ctx, out, out, &pos));
    /* the layers run in place on out (inference), the final LayerNorm too */
    for (int l = 0; l < t->layers; l++) AP_TRY(ap_enc_forward(ctx, NULL, &t->layer[l], NULL, out, out));
    size_t mark = tmp->used;
    float *st = ap_arena_floats(tmp, (size_t)(2 * B * N), "final LayerNorm statistics");
    if (!st) return AP_ERR;
    ap_tensor mean = ap_t1(st, B * N), rstd = ap_t1(st + B * N, B * N);
    int rc = ap_layer_norm_forward(ctx, out, &mean, &rstd, out, &t->lnf_w, &t->lnf_b, t->eps);
    tmp->used = mark;
    return rc;
}

typedef struct {
    const ap_text_tower *t;
    int64_t B, N;
    const int32_t *ids;
} text_case;

static int text_step(ap_ctx *dry, ap_arena *a, void *user) {
    const text_case *k = user;
    ap_tensor out = ap_dry_input(&a[1], 3, (int64_t[]){k->B, k->N, k->t->C});
    if (!out.data) return AP_ERR;
    dry->tmp = &a[0];
    return ap_text_tower_forward(dry, k->t, &out, k->ids, k->B, k->N);
}

int ap_text_tower_plan_measure(ap_ctx *ctx, const ap_text_tower *t, int64_t B, int64_t N,
                               ap_plan *p) {
    if (B < 1 || N < 1)
        return ap_fail("text_tower_plan: expected B >= 1 and N >= 1, found (%lld, %lld)",
                       (long long)B, (long long)N);
    int32_t *ids = ap_calloc((size_t)(B * N), sizeof *ids, "dry-run token ids");
    if (!ids) return AP_ERR;
    text_case k = {t, B, N, ids};
    static const char *const what[2] = {"text tower temporaries", "text tower inputs"};
    size_t peaks[2];
    int rc = ap_measure(ctx, 2, what, text_step, &k, peaks, &p->scratch_bytes);
    free(ids);
    if (rc)
        return ap_err_prefix("measuring the text tower's workspaces (B %lld, N %lld): ",
                             (long long)B, (long long)N);
    p->tape_bytes = 0;
    p->tmp_bytes = peaks[0];
    return AP_OK;
}

int ap_clip_text_config(ap_clip_text *m, const ap_json *cfg, const char *what) {
    ap_text_tower *t = &m->t;
    double eps;
    const char *act = "quick_gelu";
    /* transformers 4.30.2 CLIPTextConfig defaults */
    AP_TRY(ap_cfg_int(cfg, "vocab_size", what, 49408, 1, 1 << 24, &t->vocab));
    AP_TRY(ap_cfg_int(cfg, "max_position_embeddings", what, 77, 1, 1 << 16, &t->max_pos));
    AP_TRY(ap_cfg_int(cfg, "hidden_size", what, 512, 1, 1 << 16, &t->C));
    AP_TRY(ap_cfg_int(cfg, "intermediate_size", what, 2048, 1, 1 << 18, &t->F));
    AP_TRY(ap_cfg_int(cfg, "num_hidden_layers", what, 12, 0, 1024, &t->layers));
    AP_TRY(ap_cfg_int(cfg, "num_attention_heads", what, 8, 1, 1024, &t->heads));
    AP_TRY(ap_cfg_num(cfg, "layer_norm_eps", what, 1e-5, &eps));
    if (ap_json_get(cfg, "hidden_act")) AP_TRY(ap_json_get_str(cfg, "hidden_act", what, &act));
    if (strcmp(act, "quick_gelu") == 0) t->act = AP_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) t->act = AP_ACT_GELU;
    else return ap_fail("%s: key \"hidden_act\": expected \"quick_gelu\" or \"gelu\", found \"%s\"",
                        what, act);
    if (t->C % t->heads)
        return ap_fail("%s: hidden_size %d is not a multiple of num_attention_heads %d", what, t->C,
                       t->heads);
    t->eps = (float)eps;
    return AP_OK;
}

int ap_clip_text_declare(ap_clip_text *m) {
    ap_text_tower *t = &m->t;
    ap_params_init(&m->params);
    free(t->layer);
    t->layer = ap_calloc((size_t)(t->layers ? t->layers : 1), sizeof *t->layer, "text layers");
    if (!t->layer) return AP_ERR;
    ap_params *p = &m->params;
    int ok = 1;
    ok &= ap_params_add(p, &t->tok_emb, 2, (int64_t[]){t->vocab, t->C},
                        "text_model.embeddings.token_embedding.weight") >= 0;
    ok &= ap_params_add(p, &t->pos_emb, 2, (int64_t[]){t->max_pos, t->C},
                        "text_model.embeddings.position_embedding.weight") >= 0;
    char pre[96];
    for (int l = 0; l < t->layers; l++) {
        snprintf(pre, sizeof pre, "text_model.encoder.layers.%d", l);
        ok &= ap_enc_declare(&t->layer[l], p, pre, AP_ENC_KEYS_HF, t->C, t->F, t->heads, t->act, 1,
                             t->eps) == 0;
    }
    ok &= ap_params_add(p, &t->lnf_w, 1, (int64_t[]){t->C}, "text_model.final_layer_norm.weight") >= 0;
    ok &= ap_params_add(p, &t->lnf_b, 1, (int64_t[]){t->C}, "text_model.final_layer_norm.bias") >= 0;
    return ok ? AP_OK : AP_ERR;
}

int ap_clip_text_load(ap_clip_text *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char cpath[1024], wpath[1024];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    ap_json *cfg = NULL;
    AP_TRY(ap_json_parse_file(&cfg, cpath));
    int rc = ap_clip_text_config(m, cfg, cpath);
    ap_json_free(cfg);
    AP_TRY(rc);
    AP_TRY(ap_model_weights_path(dir, wpath, sizeof wpath));
    if (ap_clip_text_declare(m) || ap_params_alloc(&m->params, "CLIP text encoder parameters")) {
        ap_clip_text_free(m);
        return AP_ERR;
    }
    ap_wsrc *w = NULL;
    static const char *const ignore[] = {"position_ids", NULL};
    rc = ap_wsrc_open(&w, wpath);
    if (!rc) rc = ap_params_fill(&m->params, w, "", ignore);
    ap_wsrc_close(w);
    if (rc) ap_clip_text_free(m);
    return rc;
}

void ap_clip_text_free(ap_clip_text *m) {
    ap_params_free(&m->params);
    free(m->t.layer);
    memset(m, 0, sizeof *m);
}
