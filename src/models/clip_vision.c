/* clip_vision.c: CLIP ViT image tower forward / pixel-gradient backward and
 * the transformers CLIPModel (vision side) loader.
 *
 * Accumulation rule: frozen weights; dpixels is written (=). */
#include "clip_vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "models/clip_common.h"
#include "ops/matmul.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rows.h"

static int64_t grid(const ap_vit *v) { return (v->image_size - v->patch) / v->patch + 1; }

int64_t ap_vit_tokens(const ap_vit *v) { return grid(v) * grid(v) + 1; }

/* The class token of every sequence, cls (B, C) = h[:, 0] (backward: dh
 * (B, T, C) = 0 except dh[:, 0] = dcls). */
static int cls_gather(ap_ctx *ctx, const ap_tensor *cls, const ap_tensor *h, int backward) {
    int64_t B = h->shape[0], T = h->shape[1], C = h->shape[2];
    int *idx = ap_malloc((size_t)B * sizeof(int), "vit class-token indices");
    if (!idx) return AP_ERR;
    for (int64_t b = 0; b < B; b++) idx[b] = (int)(b * T);
    ap_tensor rows = ap_reshape(h, 2, (int64_t[]){B * T, C});
    int rc = backward ? ap_gather_rows_backward(ctx, &rows, cls, idx, (int)B)
                      : ap_gather_rows(ctx, cls, &rows, idx, (int)B);
    free(idx);
    return rc;
}

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

int ap_vit_forward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, ap_vit_saved *sv,
                   const ap_tensor *out, const ap_tensor *pixels) {
    const char *op = "vit_forward";
    AP_TRY(ap_expect(op, "pixels", pixels, 4, (int64_t[]){-1, v->channels, v->image_size, v->image_size}));
    int64_t B = pixels->shape[0], C = v->C, T = ap_vit_tokens(v), g = grid(v), P = v->proj_dim;
    AP_TRY(ap_expect2(op, "out", out, B, P));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    if (tape && !sv) return ap_fail("%s: a tape needs a saved struct (sv)", op);
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    int rc = AP_ERR;
    ap_vit_saved local, *s = tape ? sv : &local;
    memset(s, 0, sizeof *s);
    s->pixels = *pixels;
    ap_tape_rec rec;
    ap_tape_record(&rec, tape, v); /* stamped on success only */
    if (tape && v->layers > AP_VIT_MAX_LAYERS) {
        ap_fail("%s: %d layers: a forward with a tape records at most %d (AP_VIT_MAX_LAYERS)", op,
                v->layers, AP_VIT_MAX_LAYERS);
        goto out;
    }
    float *xc = take(tmp, B * C * g * g, "vit patch embeddings"),
          *xl = take(tmp, B * g * g * C, "vit patch tokens"), *cb = take(tmp, B * C, "vit class tokens in"),
          *emb = take(keep, B * T * C, "vit embeddings"),
          *st = take(keep, 2 * B * T, "vit ln_pre statistics"), *h0 = take(keep, B * T * C, "vit ln_pre output");
    if (!xc || !xl || !cb || !emb || !st || !h0) goto out;
    ap_tensor txc = ap_t4(xc, B, C, g, g), th = ap_t3(h0, B, T, C);
    s->emb = ap_t3(emb, B, T, C);
    s->pre_mean = ap_t1(st, B * T), s->pre_rstd = ap_t1(st + B * T, B * T);
    if (ap_conv2d_forward(ctx, &txc, pixels, &v->patch_w, NULL, v->patch, 0)) goto out;
    /* emb (B, T, C) = [class; patches (B, g*g, C)] + positions (T, C) */
    ap_tensor txl = ap_t3(xl, B, g * g, C), tcb = ap_t4(cb, B, 1, C, 1);
    ap_tensor cls1 = ap_reshape(&v->cls, 4, (int64_t[]){1, 1, C, 1}), e4 = ap_t4(emb, B, T, C, 1),
              xl4 = ap_t4(xl, B, g * g, C, 1);
    int *zero = ap_malloc((size_t)B * sizeof(int), "vit class-token indices");
    if (!zero) goto out;
    memset(zero, 0, (size_t)B * sizeof(int));
    int erc = ap_nchw_to_nlc_forward(ctx, &txl, &txc);
    if (!erc) erc = ap_gather_rows(ctx, &tcb, &cls1, zero, (int)B);
    free(zero);
    if (erc || ap_concat_channels_forward(ctx, &e4, &tcb, &xl4) ||
        ap_add_broadcast_rows(ctx, &s->emb, &s->emb, &v->pos))
        goto out;
    if (ap_layer_norm_forward(ctx, &th, &s->pre_mean, &s->pre_rstd, &s->emb, &v->pre_w, &v->pre_b,
                              v->eps))
        goto out;
    for (int l = 0; l < v->layers; l++) {
        if (tape) {
            s->h[l] = th;
            float *hn = take(tape->mem, B * T * C, "vit layer output");
            if (!hn) goto out;
            ap_tensor tn = ap_t3(hn, B, T, C);
            if (ap_enc_forward(ctx, tape, &v->layer[l], &s->ls[l], &tn, &th)) goto out;
            th = tn;
        } else if (ap_enc_forward(ctx, NULL, &v->layer[l], NULL, &th, &th)) {
            goto out;
        }
    }
    if (tape) s->h[v->layers] = th;
    float *cls = take(keep, B * C, "vit class tokens"), *pst = take(keep, 2 * B, "vit ln_post statistics"),
          *pooled = take(keep, B * C, "vit pooled");
    if (!cls || !pst || !pooled) goto out;
    s->cls_tok = ap_t2(cls, B, C);
    if (cls_gather(ctx, &s->cls_tok, &th, 0)) goto out;
    s->post_mean = ap_t1(pst, B), s->post_rstd = ap_t1(pst + B, B);
    s->pooled = ap_t2(pooled, B, C);
    if (ap_layer_norm_forward(ctx, &s->pooled, &s->post_mean, &s->post_rstd, &s->cls_tok, &v->post_w,
                              &v->post_b, v->eps))
        goto out;
    if (v->proj_in_out) { /* proj (C, P): out = pooled . proj */
        if (ap_matmul(ctx, out, &s->pooled, &v->proj, 0, 0, 1.0f, 0.0f)) goto out;
    } else if (ap_linear_forward(ctx, out, &s->pooled, &v->proj, NULL))
        goto out;
    s->rec = rec;
    rc = AP_OK;
out:
    tmp->used = tmark;
    return rc;
}

int ap_vit_backward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, const ap_vit_saved *s,
                    const ap_tensor *dpixels, const ap_tensor *dout) {
    const char *op = "vit_backward";
    AP_TRY(ap_tape_check(op, &s->rec, tape, v));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same(op, "pixels", &s->pixels, "dpixels", dpixels));
    int64_t B = s->pixels.shape[0], C = v->C, T = ap_vit_tokens(v), g = grid(v), P = v->proj_dim;
    AP_TRY(ap_expect2(op, "dout", dout, B, P));
    size_t mark = tmp->used;
    int rc = AP_ERR;
    float *dpool = take(tmp, B * C, "vit d(pooled)"), *dcls = take(tmp, B * C, "vit d(class tokens)"),
          *d0 = take(tmp, B * T * C, "vit hidden gradient A"), *d1 = take(tmp, B * T * C, "vit hidden gradient B"),
          *dxc = take(tmp, B * C * g * g, "vit d(patch embeddings)"),
          *dxl = take(tmp, B * g * g * C, "vit d(patch tokens)");
    if (!dpool || !dcls || !d0 || !d1 || !dxc || !dxl) goto out;
    ap_tensor tdpool = ap_t2(dpool, B, C), tdcls = ap_t2(dcls, B, C);
    if (v->proj_in_out) { /* d(pooled) = dout . projᵀ */
        if (ap_matmul(ctx, &tdpool, dout, &v->proj, 0, 1, 1.0f, 0.0f)) goto out;
    } else if (ap_linear_backward(ctx, &tdpool, NULL, NULL, dout, &tdpool, &v->proj))
        goto out;
    if (ap_layer_norm_backward(ctx, &tdcls, NULL, NULL, &tdpool, &s->cls_tok, &s->post_mean,
                               &s->post_rstd, &v->post_w))
        goto out;
    /* only the class tokens of the last output receive gradient */
    ap_tensor dcur = ap_t3(d0, B, T, C), dnext = ap_t3(d1, B, T, C);
    if (cls_gather(ctx, &tdcls, &dcur, 1)) goto out;
    for (int l = v->layers - 1; l >= 0; l--) {
        if (ap_enc_backward(ctx, tape, &v->layer[l], &s->ls[l], &dnext, &dcur)) goto out;
        ap_tensor t = dcur;
        dcur = dnext, dnext = t;
    }
    /* ln_pre: d(emb) into the free buffer */
    if (ap_layer_norm_backward(ctx, &dnext, NULL, NULL, &dcur, &s->emb, &s->pre_mean, &s->pre_rstd,
                               &v->pre_w))
        goto out;
    /* d(patches) = d(emb)[:, 1:] (the class token and positions are frozen) */
    ap_tensor tdxc = ap_t4(dxc, B, C, g, g), tdxl = ap_t3(dxl, B, g * g, C);
    ap_tensor de4 = ap_reshape(&dnext, 4, (int64_t[]){B, T, C, 1}), dxl4 = ap_t4(dxl, B, g * g, C, 1);
    if (ap_concat_channels_backward(ctx, NULL, &dxl4, &de4) ||
        ap_nchw_to_nlc_backward(ctx, &tdxc, &tdxl))
        goto out;
    if (ap_conv2d_backward(ctx, dpixels, NULL, NULL, &tdxc, &s->pixels, &v->patch_w, v->patch, 0))
        goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}

int ap_clip_vision_config(ap_clip_vision *m, const ap_json *cfg, const char *what) {
    ap_vit *v = &m->v;
    const ap_json *vc = ap_json_get(cfg, "vision_config");
    if (!vc || vc->type != AP_JSON_OBJ)
        return ap_fail("%s: key \"vision_config\": expected an object (a CLIPModel config), found %s",
                       what, vc ? ap_json_type_name(vc->type) : "nothing");
    double eps;
    const char *act = "quick_gelu";
    /* transformers 4.30.2 CLIPVisionConfig / CLIPConfig defaults */
    AP_TRY(ap_cfg_int(vc, "hidden_size", what, 768, 1, 1 << 16, &v->C));
    AP_TRY(ap_cfg_int(vc, "intermediate_size", what, 3072, 1, 1 << 18, &v->F));
    AP_TRY(ap_cfg_int(vc, "num_hidden_layers", what, 12, 0, 1024, &v->layers));
    AP_TRY(ap_cfg_int(vc, "num_attention_heads", what, 12, 1, 1024, &v->heads));
    AP_TRY(ap_cfg_int(vc, "image_size", what, 224, 1, 1 << 14, &v->image_size));
    AP_TRY(ap_cfg_int(vc, "patch_size", what, 32, 1, 1 << 14, &v->patch));
    AP_TRY(ap_cfg_int(vc, "num_channels", what, 3, 1, 64, &v->channels));
    AP_TRY(ap_cfg_num(vc, "layer_norm_eps", what, 1e-5, &eps));
    AP_TRY(ap_cfg_int(cfg, "projection_dim", what, 512, 1, 1 << 16, &v->proj_dim));
    if (ap_json_get(vc, "hidden_act")) AP_TRY(ap_json_get_str(vc, "hidden_act", what, &act));
    if (strcmp(act, "quick_gelu") == 0) v->act = AP_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) v->act = AP_ACT_GELU;
    else return ap_fail("%s: vision_config key \"hidden_act\": expected \"quick_gelu\" or \"gelu\", "
                        "found \"%s\"", what, act);
    if (v->C % v->heads || v->patch > v->image_size)
        return ap_fail("%s: vision_config: expected hidden_size %% num_attention_heads == 0 and "
                       "patch_size <= image_size, found %d, %d, %d, %d", what, v->C, v->heads,
                       v->patch, v->image_size);
    v->eps = (float)eps;
    v->proj_in_out = 0;
    return AP_OK;
}

int ap_clip_vision_declare(ap_clip_vision *m) {
    ap_vit *v = &m->v;
    ap_params_init(&m->params);
    free(v->layer);
    v->layer = ap_calloc((size_t)(v->layers ? v->layers : 1), sizeof *v->layer, "vision layers");
    if (!v->layer) return AP_ERR;
    ap_params *p = &m->params;
    int64_t C = v->C, T = ap_vit_tokens(v);
    int ok = 1;
    ok &= ap_params_add(p, &v->cls, 1, (int64_t[]){C}, "vision_model.embeddings.class_embedding") >= 0;
    ok &= ap_params_add(p, &v->patch_w, 4, (int64_t[]){C, v->channels, v->patch, v->patch},
                        "vision_model.embeddings.patch_embedding.weight") >= 0;
    ok &= ap_params_add(p, &v->pos, 2, (int64_t[]){T, C},
                        "vision_model.embeddings.position_embedding.weight") >= 0;
    ok &= ap_params_add(p, &v->pre_w, 1, (int64_t[]){C}, "vision_model.pre_layrnorm.weight") >= 0;
    ok &= ap_params_add(p, &v->pre_b, 1, (int64_t[]){C}, "vision_model.pre_layrnorm.bias") >= 0;
    char pre[96];
    for (int l = 0; l < v->layers; l++) {
        snprintf(pre, sizeof pre, "vision_model.encoder.layers.%d", l);
        ok &= ap_enc_declare(&v->layer[l], p, pre, AP_ENC_KEYS_HF, v->C, v->F, v->heads, v->act, 0,
                             v->eps) == 0;
    }
    ok &= ap_params_add(p, &v->post_w, 1, (int64_t[]){C}, "vision_model.post_layernorm.weight") >= 0;
    ok &= ap_params_add(p, &v->post_b, 1, (int64_t[]){C}, "vision_model.post_layernorm.bias") >= 0;
    ok &= ap_params_add(p, &v->proj, 2, (int64_t[]){v->proj_dim, C}, "visual_projection.weight") >= 0;
    return ok ? AP_OK : AP_ERR;
}

int ap_clip_vision_load(ap_clip_vision *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char cpath[1024], wpath[1024];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    ap_json *cfg = NULL;
    AP_TRY(ap_json_parse_file(&cfg, cpath));
    int rc = ap_clip_vision_config(m, cfg, cpath);
    ap_json_free(cfg);
    AP_TRY(rc);
    AP_TRY(ap_model_weights_path(dir, wpath, sizeof wpath));
    /* Mixed precision (ap_params_store_frozen): the MLPs and the projection in
     * the frozen dtype; embeddings and the attention projections (nn/proj.c's
     * raw f32 GEMM) stay f32. */
    static const char *const keep_f32[] = {"embedding", NULL};
    if (ap_clip_vision_declare(m) || (ap_params_store_frozen(&m->params, keep_f32), 0) ||
        ap_params_alloc(&m->params, "CLIP vision parameters")) {
        ap_clip_vision_free(m);
        return AP_ERR;
    }
    ap_wsrc *w = NULL;
    /* the CLIPModel file also holds the text side, text_projection and
     * logit_scale; text_model.* is reported as unused (a warning) */
    static const char *const ignore[] = {"position_ids", "text_model.*", "text_projection.weight",
                                         "logit_scale", NULL};
    rc = ap_wsrc_open(&w, wpath);
    if (!rc) rc = ap_params_fill(&m->params, w, "", ignore);
    ap_wsrc_close(w);
    if (rc) ap_clip_vision_free(m);
    return rc;
}

void ap_clip_vision_free(ap_clip_vision *m) {
    ap_params_free(&m->params);
    free(m->v.layer);
    memset(m, 0, sizeof *m);
}

typedef struct {
    const ap_vit *v;
    int64_t B;
} vit_case;

static int vit_step(ap_ctx *dry, ap_arena *a, void *user) {
    const vit_case *k = user;
    const ap_vit *v = k->v;
    int64_t S = v->image_size;
    int64_t ps[4] = {k->B, v->channels, S, S}, os[2] = {k->B, v->proj_dim};
    ap_tensor px = ap_dry_input(&a[2], 4, ps), dpx = ap_dry_input(&a[2], 4, ps);
    ap_tensor out = ap_dry_input(&a[2], 2, os), dout = ap_dry_input(&a[2], 2, os);
    if (!px.data || !dpx.data || !out.data || !dout.data) return AP_ERR;
    ap_vit_saved sv;
    ap_tape tape = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_vit_forward(dry, NULL, v, NULL, &out, &px));
    AP_TRY(ap_vit_forward(dry, &tape, v, &sv, &out, &px));
    return ap_vit_backward(dry, &tape, v, &sv, &dpx, &dout);
}

int ap_vit_plan_measure(ap_ctx *ctx, const ap_vit *v, int64_t B, ap_plan *p) {
    vit_case k = {v, B};
    static const char *const what[3] = {"vision tower tape", "vision tower temporaries",
                                        "vision tower inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, vit_step, &k, peaks, &p->scratch_bytes))
        return ap_err_prefix("measuring the vision tower's workspaces (B %lld): ", (long long)B);
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}
