/* clip_score.c: a CLIP image tower scored against text features (clip_score.h). */
#include "models/clip_score.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "models/clip_common.h"
#include "ops/elementwise.h"
#include "ops/rows.h"

#define NORM_EPS 1e-12f /* F.normalize */

int ap_clip_score_forward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, ap_clip_score_saved *sv,
                          const ap_tensor *score, const ap_tensor *image, const ap_tensor *text,
                          float scale, const char *what) {
    char op[64], lp[96], lf[96];
    snprintf(op, sizeof op, "%s_forward", what);
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    int64_t B = image->shape[0], S = v->image_size, E = v->proj_dim;
    AP_TRY(ap_expect2(op, "text", text, B, E));
    AP_TRY(ap_expect1(op, "score", score, B));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    if (tape && !sv) return ap_fail("%s: a tape needs a saved struct (sv)", op);
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    ap_clip_score_saved local, *s = tape ? sv : &local;
    memset(s, 0, sizeof *s);
    ap_tape_record(&s->rec, tape, v);
    s->image = *image;
    int rc = AP_ERR;
    snprintf(lp, sizeof lp, "%s preprocessed pixels", what);
    snprintf(lf, sizeof lf, "%s image features", what);
    float *p = ap_arena_floats(keep, (size_t)(B * 3 * S * S), lp),
          *f = ap_arena_floats(keep, (size_t)(3 * B * E + B), lf);
    if (!p || !f) goto out;
    s->p = ap_t4(p, B, 3, S, S);
    s->f = ap_t2(f, B, E), s->n = ap_t2(f + B * E, B, E), s->t = ap_t2(f + 2 * B * E, B, E);
    s->norm = ap_t1(f + 3 * B * E, B);
    if (ap_copy(ctx, &s->t, text)) goto out;
    if (ap_clip_preprocess_forward(ctx, &s->p, image)) goto out;
    if (ap_vit_forward(ctx, tape, v, tape ? &s->vit : NULL, &s->f, &s->p)) goto out;
    if (ap_l2norm_forward(ctx, &s->n, &s->norm, &s->f, NORM_EPS)) goto out;
    if (ap_row_dot_forward(ctx, score, &s->n, &s->t)) goto out;
    if (scale != 1.0f && ap_scale_forward(ctx, score, score, scale)) goto out;
    rc = AP_OK;
out:
    tmp->used = tmark;
    return rc;
}

int ap_clip_score_backward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v,
                           const ap_clip_score_saved *s, const ap_tensor *dimage,
                           const ap_tensor *dloss, float dloss_ddot, const char *what) {
    char op[64], l1[96], l2[96], l3[96];
    snprintf(op, sizeof op, "%s_backward", what);
    AP_TRY(ap_tape_check(op, &s->rec, tape, v));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same(op, "image", &s->image, "dimage", dimage));
    int64_t B = s->image.shape[0], S = v->image_size, E = v->proj_dim;
    AP_TRY(ap_expect1(op, "dloss", dloss, B));
    size_t mark = tmp->used;
    int rc = AP_ERR;
    snprintf(l1, sizeof l1, "%s d(features)", what);
    snprintf(l2, sizeof l2, "%s d(pixels)", what);
    snprintf(l3, sizeof l3, "%s d(dot)", what);
    float *dn = ap_arena_floats(tmp, (size_t)(2 * B * E), l1),
          *dp = ap_arena_floats(tmp, (size_t)(B * 3 * S * S), l2),
          *ds = ap_arena_floats(tmp, (size_t)B, l3);
    if (!dn || !dp || !ds) goto out;
    ap_tensor tdn = ap_t2(dn, B, E), tdf = ap_t2(dn + B * E, B, E), tdp = ap_t4(dp, B, 3, S, S),
              tds = ap_t1(ds, B);
    /* d(dot) = dloss_ddot dloss; dn = d(dot) t */
    if (ap_scale_backward(ctx, &tds, dloss, dloss_ddot) ||
        ap_row_dot_backward(ctx, &tdn, NULL, &tds, &s->n, &s->t))
        goto out;
    if (ap_l2norm_backward(ctx, &tdf, &tdn, &s->n, &s->norm, NORM_EPS)) goto out;
    if (ap_vit_backward(ctx, tape, v, &s->vit, &tdp, &tdf)) goto out;
    if (ap_clip_preprocess_backward(ctx, dimage, &tdp, &s->image)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}
