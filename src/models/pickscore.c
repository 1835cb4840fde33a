/* pickscore.c: PickScore (transformers CLIPModel) loader, text features,
 * score and image-gradient backward (pickscore.h, docs/pickscore.md).
 *
 * Accumulation rule: frozen weights; dimage is written (=). */
#include "pickscore.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/json.h"
#include "io/weights.h"
#include "models/clip_common.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/rows.h"

#define PS_NORM_EPS 1e-12f

/* text side: text_model.* (ap_clip_text) + text_projection + logit_scale */
static int load_text(ap_pickscore *m, const char *dir, const char *cpath, const char *wpath) {
    ap_json *cfg = NULL;
    AP_TRY(ap_json_parse_file(&cfg, cpath));
    const ap_json *tc = ap_json_get(cfg, "text_config");
    int rc = tc && tc->type == AP_JSON_OBJ
                 ? ap_clip_text_config(&m->text, tc, cpath)
                 : ap_fail("%s: expected an object \"text_config\" (a transformers CLIPModel "
                           "config, as yuvalkirstain/PickScore_v1's)", cpath);
    ap_json_free(cfg);
    AP_TRY(rc);
    ap_params *p = &m->text.params;
    int64_t P = m->vis.v.proj_dim, Ct = m->text.t.C;
    if (ap_clip_text_declare(&m->text) ||
        ap_params_add(p, &m->text_proj, 2, (int64_t[]){P, Ct}, "text_projection.weight") < 0 ||
        ap_params_add(p, &m->logit_scale, 0, NULL, "logit_scale") < 0 ||
        ap_params_alloc(p, "PickScore text parameters"))
        return ap_err_prefix("%s: ", dir);
    ap_wsrc *w = NULL;
    static const char *const ignore[] = {"position_ids", "text_model.embeddings.position_ids",
                                         "vision_model.*", "visual_projection.weight", NULL};
    rc = ap_wsrc_open(&w, wpath);
    if (!rc) rc = ap_params_fill(p, w, "", ignore);
    ap_wsrc_close(w);
    return rc;
}

int ap_pickscore_declare(ap_pickscore *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char cpath[1024];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    ap_json *cfg = NULL;
    AP_TRY(ap_json_parse_file(&cfg, cpath));
    const ap_json *tc = ap_json_get(cfg, "text_config");
    int rc = ap_clip_vision_config(&m->vis, cfg, cpath);
    if (!rc && (!tc || tc->type != AP_JSON_OBJ))
        rc = ap_fail("%s: expected an object \"text_config\" (a transformers CLIPModel config)", cpath);
    if (!rc) rc = ap_clip_text_config(&m->text, tc, cpath);
    ap_json_free(cfg);
    int64_t P = m->vis.v.proj_dim, Ct = m->text.t.C;
    if (!rc) rc = ap_clip_vision_declare(&m->vis);
    if (!rc) rc = ap_clip_text_declare(&m->text);
    if (!rc && (ap_params_add(&m->text.params, &m->text_proj, 2, (int64_t[]){P, Ct},
                              "text_projection.weight") < 0 ||
                ap_params_add(&m->text.params, &m->logit_scale, 0, NULL, "logit_scale") < 0))
        rc = AP_ERR;
    m->embed_dim = (int)P, m->scale = 1.0f;
    if (rc) ap_pickscore_free(m);
    return rc;
}

int ap_pickscore_load(ap_pickscore *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char cpath[1024], wpath[1024];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    AP_TRY(ap_clip_vision_load(&m->vis, dir));
    int rc = ap_model_weights_path(dir, wpath, sizeof wpath);
    if (!rc) rc = load_text(m, dir, cpath, wpath);
    if (!rc) {
        m->embed_dim = m->vis.v.proj_dim;
        const float ls = m->logit_scale.data[0]; /* host: the weight as just read from the file */
        m->scale = expf(ls);
        if (!isfinite(m->scale))
            rc = ap_fail("%s: logit_scale %g: exp() is not finite", wpath, (double)ls);
    }
    if (rc) ap_pickscore_free(m);
    return rc;
}

void ap_pickscore_free(ap_pickscore *m) {
    ap_clip_vision_free(&m->vis);
    ap_clip_text_free(&m->text);
    memset(m, 0, sizeof *m);
}

int ap_pickscore_encode_text(ap_ctx *ctx, const ap_pickscore *m, const ap_tensor *feats,
                             const int32_t *ids, int64_t B, int64_t N) {
    const char *op = "pickscore_encode_text";
    int64_t Ct = m->text.t.C, P = m->embed_dim;
    AP_TRY(ap_expect2(op, "feats", feats, B, P));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    size_t mark = tmp->used;
    int rc = AP_ERR;
    int *idx = NULL;
    float *h = ap_arena_floats(tmp, (size_t)(B * N * Ct), "PickScore text hidden states"),
          *pooled = ap_arena_floats(tmp, (size_t)(B * Ct), "PickScore text pooled"),
          *norm = ap_arena_floats(tmp, (size_t)B, "PickScore text norms");
    if (!h || !pooled || !norm) goto out;
    ap_tensor th = ap_t3(h, B, N, Ct), tn = ap_t1(norm, B);
    if (ap_text_tower_forward(ctx, &m->text.t, &th, ids, B, N)) goto out;
    /* pooled = last_hidden_state[b, argmax ids[b]] (transformers 4.30
     * CLIPTextTransformer: the end token has the largest id) */
    idx = ap_malloc((size_t)B * sizeof(int), "PickScore end-token rows");
    if (!idx) goto out;
    for (int64_t b = 0; b < B; b++) {
        int64_t best = 0;
        for (int64_t i = 1; i < N; i++)
            if (ids[b * N + i] > ids[b * N + best]) best = i;
        idx[b] = (int)(b * N + best);
    }
    ap_tensor tpool = ap_t2(pooled, B, Ct), hrows = ap_t2(h, B * N, Ct);
    if (ap_gather_rows(ctx, &tpool, &hrows, idx, (int)B)) goto out;
    if (ap_matmul(ctx, feats, &tpool, &m->text_proj, 0, 1, 1.0f, 0.0f)) goto out;
    if (ap_l2norm_forward(ctx, feats, &tn, feats, PS_NORM_EPS)) goto out;
    rc = AP_OK;
out:
    free(idx);
    tmp->used = mark;
    return rc;
}

int ap_pickscore_forward(ap_ctx *ctx, ap_tape *tape, const ap_pickscore *m,
                         ap_pickscore_saved *sv, const ap_tensor *score, const ap_tensor *loss,
                         const ap_tensor *image, const ap_tensor *text) {
    /* score = scale * n . t; loss = -score (in loss when no score is wanted) */
    const ap_tensor *sc = score ? score : loss;
    if (!sc) return ap_fail("pickscore_forward: expected a score or a loss tensor, found neither");
    if (score && loss) AP_TRY(ap_expect_same("pickscore_forward", "score", score, "loss", loss));
    AP_TRY(ap_clip_score_forward(ctx, tape, &m->vis.v, sv, sc, image, text, m->scale,
                                 "pickscore"));
    return loss ? ap_scale_forward(ctx, loss, sc, -1.0f) : AP_OK;
}

int ap_pickscore_backward(ap_ctx *ctx, ap_tape *tape, const ap_pickscore *m,
                          const ap_pickscore_saved *s, const ap_tensor *dimage,
                          const ap_tensor *dloss) {
    /* loss = -scale n.t */
    return ap_clip_score_backward(ctx, tape, &m->vis.v, s, dimage, dloss, -m->scale,
                                  "pickscore");
}

typedef struct {
    const ap_pickscore *m;
    int64_t B, H, W, N;
    const int32_t *ids;
} ps_case;

static int ps_step(ap_ctx *dry, ap_arena *a, void *user) {
    const ps_case *k = user;
    int64_t is[4] = {k->B, 3, k->H, k->W}, bs[1] = {k->B}, ts[2] = {k->B, k->m->embed_dim};
    ap_tensor img = ap_dry_input(&a[2], 4, is), dimg = ap_dry_input(&a[2], 4, is);
    ap_tensor sc = ap_dry_input(&a[2], 1, bs), l = ap_dry_input(&a[2], 1, bs);
    ap_tensor dl = ap_dry_input(&a[2], 1, bs), text = ap_dry_input(&a[2], 2, ts);
    if (!img.data || !dimg.data || !sc.data || !l.data || !dl.data || !text.data) return AP_ERR;
    ap_pickscore_saved sv;
    ap_tape tape = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_pickscore_encode_text(dry, k->m, &text, k->ids, k->B, k->N));
    AP_TRY(ap_pickscore_forward(dry, NULL, k->m, NULL, &sc, &l, &img, &text));
    AP_TRY(ap_pickscore_forward(dry, &tape, k->m, &sv, &sc, &l, &img, &text));
    return ap_pickscore_backward(dry, &tape, k->m, &sv, &dimg, &dl);
}

int ap_pickscore_plan_measure(ap_ctx *ctx, const ap_pickscore *m, int64_t B, int64_t H,
                              int64_t W, int64_t N, ap_plan *p) {
    if (B < 1 || N < 1 || N > m->text.t.max_pos)
        return ap_fail("pickscore_plan: expected B >= 1 and 1 <= N <= %d, found B %lld, N %lld",
                       m->text.t.max_pos, (long long)B, (long long)N);
    int32_t *ids = ap_calloc((size_t)(B * N), sizeof *ids, "dry-run token ids");
    if (!ids) return AP_ERR;
    ps_case k = {m, B, H, W, N, ids};
    static const char *const what[3] = {"PickScore tape", "PickScore temporaries", "PickScore inputs"};
    size_t peaks[3];
    int rc = ap_measure(ctx, 3, what, ps_step, &k, peaks, &p->scratch_bytes);
    free(ids);
    if (rc)
        return ap_err_prefix("measuring the PickScore reward's workspaces (B %lld, %lld x %lld): ",
                             (long long)B, (long long)H, (long long)W);
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}
