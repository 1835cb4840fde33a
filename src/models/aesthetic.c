/* aesthetic.c: AlignProp aesthetic scorer (CLIP ViT-L/14 features, L2
 * normalisation, linear MLP head), reward, loss and image gradient.
 *
 * Accumulation rule: frozen weights; dimage is written (=). */
#include "aesthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/dtype.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "models/clip_common.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/rows.h"

static const int kLayer[5] = {0, 2, 4, 6, 7}; /* nn.Sequential indices of the Linears */

/* Widths off the checkpoint: layers.{0,2,4,6,7}.weight shapes. */
static int mlp_dims(const char *path, int dims[6]) {
    int64_t shape[5][AP_MAX_DIMS];
    int nd[5];
    FILE *f = fopen(path, "rb");
    unsigned char magic[2] = {0, 0};
    if (f) {
        if (fread(magic, 1, 2, f) != 2) magic[0] = 0;
        fclose(f);
    }
    char key[64];
    if (magic[0] == 'P' && magic[1] == 'K') {
        ap_pth_file *pf = NULL;
        AP_TRY(ap_pth_open(&pf, path));
        for (int i = 0; i < 5; i++) {
            int dt;
            snprintf(key, sizeof key, "layers.%d.weight", kLayer[i]);
            if (ap_pth_info(pf, key, &dt, &nd[i], shape[i])) {
                ap_pth_close(pf);
                return ap_err_prefix("aesthetic MLP %s: ", path);
            }
        }
        ap_pth_close(pf);
    } else {
        ap_st_file *sf = NULL;
        AP_TRY(ap_st_open(&sf, path));
        for (int i = 0; i < 5; i++) {
            ap_tensor t;
            snprintf(key, sizeof key, "layers.%d.weight", kLayer[i]);
            if (ap_st_load_f32(sf, key, 0, NULL, &t)) {
                ap_st_close(sf);
                return ap_err_prefix("aesthetic MLP %s: ", path);
            }
            nd[i] = t.ndim;
            memcpy(shape[i], t.shape, sizeof t.shape);
            free(t.data);
        }
        ap_st_close(sf);
    }
    for (int i = 0; i < 5; i++) {
        if (nd[i] != 2 || (i > 0 && shape[i][1] != dims[i]))
            return ap_fail("aesthetic MLP %s: layers.%d.weight: expected a 2-D (out, %d) matrix "
                           "chaining from the previous layer, found %d dims", path, kLayer[i],
                           i ? dims[i] : -1, nd[i]);
        if (i == 0) dims[0] = (int)shape[0][1];
        dims[i + 1] = (int)shape[i][0];
    }
    if (dims[5] != 1)
        return ap_fail("aesthetic MLP %s: layers.7.weight: expected 1 output, found %d", path, dims[5]);
    return AP_OK;
}

int ap_aesthetic_mlp_load(ap_aesthetic *m, const char *path) {
    AP_TRY(mlp_dims(path, m->dims));
    ap_params_free(&m->mlp_params);
    ap_params_init(&m->mlp_params);
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        ok &= ap_params_add(&m->mlp_params, &m->w[i], 2, (int64_t[]){m->dims[i + 1], m->dims[i]},
                            "layers.%d.weight", kLayer[i]) >= 0;
        ok &= ap_params_add(&m->mlp_params, &m->b[i], 1, (int64_t[]){m->dims[i + 1]},
                            "layers.%d.bias", kLayer[i]) >= 0;
    }
    if (!ok || ap_params_alloc(&m->mlp_params, "aesthetic MLP parameters")) return AP_ERR;
    ap_wsrc *w = NULL;
    int rc = ap_wsrc_open(&w, path);
    if (!rc) rc = ap_params_fill(&m->mlp_params, w, "", NULL);
    ap_wsrc_close(w);
    return rc;
}

int ap_aesthetic_load(ap_aesthetic *m, const char *clip_dir, const char *mlp_path) {
    memset(m, 0, sizeof *m);
    m->target = AP_AESTHETIC_TARGET;
    AP_TRY(ap_clip_vision_load(&m->clip, clip_dir));
    int rc = ap_aesthetic_mlp_load(m, mlp_path);
    if (!rc && m->dims[0] != m->clip.v.proj_dim)
        rc = ap_fail("aesthetic MLP %s: layers.0.weight: expected %d inputs (the CLIP projection "
                     "width of %s), found %d", mlp_path, m->clip.v.proj_dim, clip_dir, m->dims[0]);
    if (rc) ap_aesthetic_free(m);
    return rc;
}

void ap_aesthetic_free(ap_aesthetic *m) {
    ap_clip_vision_free(&m->clip);
    ap_params_free(&m->mlp_params);
    memset(m, 0, sizeof *m);
}

static int max_dim(const ap_aesthetic *m) {
    int d = 1;
    for (int i = 0; i < 6; i++) d = m->dims[i] > d ? m->dims[i] : d;
    return d;
}

int ap_aesthetic_mlp_forward(ap_ctx *ctx, const ap_aesthetic *m, const ap_tensor *r,
                             const ap_tensor *u) {
    const char *op = "aesthetic_mlp_forward";
    AP_TRY(ap_expect(op, "u", u, 2, (int64_t[]){-1, m->dims[0]}));
    int64_t B = u->shape[0], D = max_dim(m);
    AP_TRY(ap_expect1(op, "reward", r, B));
    float *buf = ap_scratch(ctx, (size_t)(2 * B * D) * sizeof(float), "aesthetic MLP activations");
    if (!buf) return AP_ERR;
    ap_tensor x = *u;
    for (int i = 0; i < 5; i++) {
        ap_tensor y = i == 4 ? ap_reshape(r, 2, (int64_t[]){B, 1}) : ap_t2(buf + (i % 2) * B * D, B, m->dims[i + 1]);
        AP_TRY(ap_linear_forward(ctx, &y, &x, &m->w[i], &m->b[i]));
        x = y;
    }
    return AP_OK;
}

int ap_aesthetic_mlp_backward(ap_ctx *ctx, const ap_aesthetic *m, const ap_tensor *du,
                              const ap_tensor *dr) {
    const char *op = "aesthetic_mlp_backward";
    AP_TRY(ap_expect(op, "du", du, 2, (int64_t[]){-1, m->dims[0]}));
    int64_t B = du->shape[0], D = max_dim(m);
    AP_TRY(ap_expect1(op, "dreward", dr, B));
    float *buf = ap_scratch(ctx, (size_t)(2 * B * D) * sizeof(float), "aesthetic MLP gradients");
    if (!buf) return AP_ERR;
    ap_tensor g = ap_reshape(dr, 2, (int64_t[]){B, 1});
    for (int i = 4; i >= 0; i--) {
        ap_tensor gi = i == 0 ? *du : ap_t2(buf + (i % 2) * B * D, B, m->dims[i]);
        AP_TRY(ap_linear_backward(ctx, &gi, NULL, NULL, &g, &gi, &m->w[i]));
        g = gi;
    }
    return AP_OK;
}

int ap_aesthetic_forward(ap_ctx *ctx, ap_tape *tape, const ap_aesthetic *m,
                         ap_aesthetic_saved *sv, const ap_tensor *reward, const ap_tensor *loss,
                         const ap_tensor *image) {
    const char *op = "aesthetic_forward";
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    int64_t B = image->shape[0], S = m->clip.v.image_size, P = m->clip.v.proj_dim;
    if (reward) AP_TRY(ap_expect1(op, "reward", reward, B));
    if (loss) AP_TRY(ap_expect1(op, "loss", loss, B));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    if (tape && !sv) return ap_fail("%s: a tape needs a saved struct (sv)", op);
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    ap_aesthetic_saved local, *s = tape ? sv : &local;
    memset(s, 0, sizeof *s);
    ap_tape_record(&s->rec, tape, m);
    s->image = *image;
    int rc = AP_ERR;
    float *p = ap_arena_floats(keep, (size_t)(B * 3 * S * S), "aesthetic preprocessed pixels"),
          *e = ap_arena_floats(keep, (size_t)(2 * B * P + 2 * B), "aesthetic features");
    if (!p || !e) goto out;
    s->p = ap_t4(p, B, 3, S, S);
    s->e = ap_t2(e, B, P), s->u = ap_t2(e + B * P, B, P);
    s->norm = ap_t1(e + 2 * B * P, B), s->reward = ap_t1(e + 2 * B * P + B, B);
    if (ap_clip_preprocess_forward(ctx, &s->p, image)) goto out;
    if (ap_vit_forward(ctx, tape, &m->clip.v, tape ? &s->vit : NULL, &s->e, &s->p)) goto out;
    if (ap_l2norm_forward(ctx, &s->u, &s->norm, &s->e, 0.0f)) goto out;
    if (ap_aesthetic_mlp_forward(ctx, m, &s->reward, &s->u)) goto out;
    if (reward && ap_copy(ctx, reward, &s->reward)) goto out;
    /* loss = |r - target|, or -r without a target (maximise the reward) */
    if (loss && (isnan(m->target) ? ap_scale_forward(ctx, loss, &s->reward, -1.0f)
                                  : ap_abs_diff_forward(ctx, loss, &s->reward, m->target)))
        goto out;
    rc = AP_OK;
out:
    tmp->used = tmark;
    return rc;
}

int ap_aesthetic_backward(ap_ctx *ctx, ap_tape *tape, const ap_aesthetic *m,
                          const ap_aesthetic_saved *s, const ap_tensor *dimage,
                          const ap_tensor *dloss) {
    const char *op = "aesthetic_backward";
    AP_TRY(ap_tape_check(op, &s->rec, tape, m));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same(op, "image", &s->image, "dimage", dimage));
    int64_t B = s->image.shape[0], S = m->clip.v.image_size, P = m->clip.v.proj_dim;
    AP_TRY(ap_expect1(op, "dloss", dloss, B));
    size_t mark = tmp->used;
    int rc = AP_ERR;
    float *dr = ap_arena_floats(tmp, (size_t)B, "aesthetic d(reward)"),
          *du = ap_arena_floats(tmp, (size_t)(2 * B * P), "aesthetic d(features)"),
          *dp = ap_arena_floats(tmp, (size_t)(B * 3 * S * S), "aesthetic d(pixels)");
    if (!dr || !du || !dp) goto out;
    ap_tensor tdr = ap_t1(dr, B), tdu = ap_t2(du, B, P), tde = ap_t2(du + B * P, B, P),
              tdp = ap_t4(dp, B, 3, S, S);
    if (isnan(m->target) ? ap_scale_backward(ctx, &tdr, dloss, -1.0f)
                         : ap_abs_diff_backward(ctx, &tdr, dloss, &s->reward, m->target))
        goto out;
    if (ap_aesthetic_mlp_backward(ctx, m, &tdu, &tdr)) goto out;
    if (ap_l2norm_backward(ctx, &tde, &tdu, &s->u, &s->norm, 0.0f)) goto out;
    if (ap_vit_backward(ctx, tape, &m->clip.v, &s->vit, &tdp, &tde)) goto out;
    if (ap_clip_preprocess_backward(ctx, dimage, &tdp, &s->image)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}

typedef struct {
    const ap_aesthetic *m;
    int64_t B, H, W;
} aesthetic_case;

static int aesthetic_step(ap_ctx *dry, ap_arena *a, void *user) {
    const aesthetic_case *k = user;
    int64_t is[4] = {k->B, 3, k->H, k->W}, bs[1] = {k->B};
    ap_tensor img = ap_dry_input(&a[2], 4, is), dimg = ap_dry_input(&a[2], 4, is);
    ap_tensor r = ap_dry_input(&a[2], 1, bs), l = ap_dry_input(&a[2], 1, bs);
    ap_tensor dl = ap_dry_input(&a[2], 1, bs);
    if (!img.data || !dimg.data || !r.data || !l.data || !dl.data) return AP_ERR;
    ap_aesthetic_saved sv;
    ap_tape tape = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_aesthetic_forward(dry, NULL, k->m, NULL, &r, &l, &img));
    AP_TRY(ap_aesthetic_forward(dry, &tape, k->m, &sv, &r, &l, &img));
    return ap_aesthetic_backward(dry, &tape, k->m, &sv, &dimg, &dl);
}

int ap_aesthetic_plan_measure(ap_ctx *ctx, const ap_aesthetic *m, int64_t B, int64_t H, int64_t W,
                              ap_plan *p) {
    aesthetic_case k = {m, B, H, W};
    static const char *const what[3] = {"aesthetic tape", "aesthetic temporaries",
                                        "aesthetic inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, aesthetic_step, &k, peaks, &p->scratch_bytes))
        return ap_err_prefix("measuring the aesthetic reward's workspaces (B %lld, %lld x %lld): ",
                             (long long)B, (long long)H, (long long)W);
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}
