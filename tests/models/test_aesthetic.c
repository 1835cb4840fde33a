/* test_aesthetic.c: AlignProp's aesthetic reward end to end on a tiny CLIPModel
 * directory + a scaled-down MLP .pth (real key names and layer structure):
 * reward, loss |r - 10| and d(sum c_b loss_b)/d(image) through clamp, Resize,
 * Normalize, the ViT, the L2 normalisation and the MLP, against AlignProp's
 * aesthetic_loss_fn under torch autograd. The REAL MLP file
 * ($AP_SHARED_DIR/data/aesthetic/sac+logos+ava1-l14-linearMSE.pth, never
 * copied) is loaded and scored against torch and the docs/clip.md §5 check values when
 * present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "models/aesthetic.h"
#include "models/clip_common.h"
#include "testutil.h"

/* reward: O(1) after 5 Linears of a 2-layer tower's unit-norm features; fp32
 * summation-order differences only (observed ~1e-6). */
#define R_ATOL 2e-5
#define R_RTOL 1e-5
/* image gradient: magnitudes ~1e-2..1; it crosses two bilinear adjoints, the
 * tower backward and the normalisation; observed max abs error ~1e-7 relative
 * to max |grad|; atol 2e-6 + rtol 1e-3. */
#define G_ATOL 2e-6
#define G_RTOL 1e-3

/* Planning and the image gradient when Resize(S) up-samples (H < S) or
 * down-samples a near-square image (40 x 41: shorter side 28, longer
 * int(28 * 41 / 40) = 28, which torchvision also maps to 28 x 28): tmp is
 * what ap_aesthetic_plan_measure measured (the backward's d(resized) takes B*3*S*S
 * floats, more than the image when H, W < S), and the gradient matches
 * central finite differences of the fp32 forward. Pixels in [-0.9, 0.9]
 * keep the clamp away from its kinks for eps 1e-2; the costs c are scaled
 * by 300 so that max|grad| (10..95) exceeds the checker's floor of 1;
 * observed error 1e-4..2e-4 of max|grad| (fp32 loss noise / 2 eps plus
 * O(eps^2) curvature): tolerance 2e-3. */
typedef struct {
    ap_ctx *ctx;
    const ap_aesthetic *m;
    ap_arena *tmp;
    ap_tensor image, l;
    const float *c;
} aes_state;

static double aes_loss(void *p) {
    aes_state *s = p;
    s->ctx->tmp = s->tmp;
    if (ap_aesthetic_forward(s->ctx, NULL, s->m, NULL, NULL, &s->l, &s->image)) {
        printf("  forward failed: %s\n", ap_errmsg());
        return 0;
    }
    return tu_dot(s->l.data, s->c, s->l.shape[0]);
}

/* The tmp bytes preprocessing forward + backward take for (B, 3, H, W) ->
 * (B, 3, S, S), measured by a dry run. */
typedef struct {
    int64_t B, H, W, S;
} pre_case;

static int pre_step(ap_ctx *dry, ap_arena *a, void *user) {
    const pre_case *k = user;
    int64_t is[4] = {k->B, 3, k->H, k->W}, ps[4] = {k->B, 3, k->S, k->S};
    ap_tensor x = ap_dry_input(&a[1], 4, is), dx = ap_dry_input(&a[1], 4, is);
    ap_tensor p = ap_dry_input(&a[1], 4, ps);
    dry->tmp = &a[0];
    AP_TRY(ap_clip_preprocess_forward(dry, &p, &x));
    return ap_clip_preprocess_backward(dry, &dx, &p, &x);
}

static size_t preprocess_tmp(ap_ctx *ctx, int64_t B, int64_t H, int64_t W, int S) {
    pre_case k = {B, H, W, S};
    static const char *const what[2] = {"preprocess tmp", "preprocess inputs"};
    size_t peaks[2] = {0, 0}, scratch;
    tu_check(ap_measure(ctx, 2, what, pre_step, &k, peaks, &scratch) == 0,
             "measure the preprocessing (%s)", ap_errmsg());
    return peaks[0];
}

static void resample(ap_ctx *ctx, const ap_aesthetic *m, int64_t H, int64_t W, uint64_t seed) {
    int64_t B = 2;
    ap_arena tape, tmp;
    ap_plan plan;
    ap_aesthetic_plan_measure(ctx, m, B, H, W, &plan);
    size_t tb = plan.tmp_bytes;
    ap_arena_init(&tape, plan.tape_bytes, "aesthetic tape");
    ap_arena_init(&tmp, tb, "aesthetic tmp");
    ap_tensor image = ap_t4(tu_alloc(B * 3 * H * W), B, 3, H, W), dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    tu_fill_uniform(image.data, ap_numel(&image), seed, -0.9f, 0.9f);
    float c[2] = {300.0f * 0.7f, 300.0f * -1.3f};
    ap_tensor l = ap_t1(tu_alloc(B), B), dl = ap_t1(c, B);
    ap_aesthetic_saved sv;
    char what[160];
    snprintf(what, sizeof what, "%lld x %lld -> Resize(%d) (%s)", (long long)H, (long long)W,
             m->clip.v.image_size, H < m->clip.v.image_size ? "up-sampling" : "down-sampling");
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    int rc = ap_aesthetic_forward(ctx, &tp, m, &sv, NULL, &l, &image);
    if (tu_check(rc == 0, "%s: forward, tmp %zu bytes planned%s%s", what, tb, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        rc = ap_aesthetic_backward(ctx, &tp, m, &sv, &dimage, &dl);
        if (tu_check(rc == 0, "%s: backward (tmp peak %zu of %zu)%s%s", what, tmp.peak, tb,
                     rc ? ": " : "", rc ? ap_errmsg() : "")) {
            aes_state st = {ctx, m, &tmp, image, l, c};
            snprintf(what + strlen(what), sizeof what - strlen(what), ": d(sum c*loss)/d(image)");
            tu_gradcheck(what, aes_loss, &st, image.data, ap_numel(&image), dimage.data, 1e-2,
                         2e-3, 12);
        }
    }
    /* the preprocessing alone in exactly its planned tmp (the tower's larger
     * tmp hides its size inside the scorer's plan) */
    int S = m->clip.v.image_size;
    ap_arena pre;
    ap_arena_init(&pre, preprocess_tmp(ctx, B, H, W, S), "preprocess tmp");
    ap_tensor p = ap_t4(tu_alloc(B * 3 * S * S), B, 3, S, S);
    ctx->tmp = &pre;
    rc = ap_clip_preprocess_forward(ctx, &p, &image);
    if (rc == 0) rc = ap_clip_preprocess_backward(ctx, &dimage, &p, &image);
    ctx->tmp = NULL;
    tu_check(rc == 0, "%lld x %lld: preprocessing forward + backward in %zu planned tmp bytes%s%s",
             (long long)H, (long long)W, pre.cap, rc ? ": " : "", rc ? ap_errmsg() : "");
    ap_arena_free(&pre);
    free(p.data);
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(image.data), free(dimage.data), free(l.data);
}

static void tiny(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char cdir[1024], mpath[1024];
    snprintf(cdir, sizeof cdir, "%s/clip/clip_model", dir);
    snprintf(mpath, sizeof mpath, "%s/clip/aesthetic_mlp.pth", dir);
    ap_aesthetic m;
    int rc = ap_aesthetic_load(&m, cdir, mpath);
    if (!tu_check(rc == 0, "load tiny scorer (%s + %s)%s%s", cdir, mpath, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    tu_check(m.dims[0] == 16 && m.dims[1] == 24 && m.dims[2] == 12 && m.dims[3] == 8 &&
                 m.dims[4] == 6 && m.dims[5] == 1,
             "MLP widths read off the .pth: %d %d %d %d %d %d", m.dims[0], m.dims[1], m.dims[2],
             m.dims[3], m.dims[4], m.dims[5]);
    ap_tensor image, r_ref, l_ref, dloss, g_ref;
    tu_fixture(f, "aes.image", &image);
    tu_fixture(f, "aes.reward", &r_ref);
    tu_fixture(f, "aes.loss", &l_ref);
    tu_fixture(f, "aes.dloss", &dloss);
    tu_fixture(f, "aes.grad_image", &g_ref);
    int64_t B = image.shape[0], H = image.shape[2], W = image.shape[3];
    ap_arena tape, tmp;
    ap_plan plan;
    ap_aesthetic_plan_measure(ctx, &m, B, H, W, &plan);
    ap_arena_init(&tape, plan.tape_bytes, "aesthetic tape");
    ap_arena_init(&tmp, plan.tmp_bytes, "aesthetic tmp");
    ap_aesthetic_saved sv;
    ap_tensor r = ap_t1(tu_alloc(B), B), l = ap_t1(tu_alloc(B), B);
    ap_tensor dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    rc = ap_aesthetic_forward(ctx, &tp, &m, &sv, &r, &l, &image);
    if (tu_check(rc == 0, "forward %lld x 3 x %lld x %lld -> Resize(%d)%s%s", (long long)B,
                 (long long)H, (long long)W, m.clip.v.image_size, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        tu_compare("reward vs AlignProp scorer", r.data, r_ref.data, B, R_ATOL, R_RTOL);
        tu_compare("loss |r - 10|", l.data, l_ref.data, B, R_ATOL, R_RTOL);
        tu_check(tape.used <= tape.cap && tmp.used == 0, "tape %zu of %zu bytes planned; tmp released",
                 tape.used, tape.cap);
        rc = ap_aesthetic_backward(ctx, &tp, &m, &sv, &dimage, &dloss);
        if (tu_check(rc == 0, "backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare("d(sum c*loss)/d(image) vs autograd", dimage.data, g_ref.data,
                       ap_numel(&image), G_ATOL, G_RTOL);
        tu_check(tmp.used == 0, "backward released tmp");
        int outside = 0, zero = 0;
        for (int64_t i = 0; i < ap_numel(&image); i++)
            if (fabsf(image.data[i]) > 1.0f) outside++, zero += dimage.data[i] == 0.0f;
        tu_check(outside > 0 && zero == outside,
                 "the %d pixels outside [-1, 1] get exactly zero gradient (clamp)", outside);
    }
    ap_tensor r2 = ap_t1(tu_alloc(B), B);
    ctx->tmp = &tmp;
    rc = ap_aesthetic_forward(ctx, NULL, &m, NULL, &r2, NULL, &image);
    tu_check(rc == 0 && memcmp(r2.data, r.data, (size_t)B * sizeof(float)) == 0,
             "inference reward equals the tape forward bit for bit");
    int S = m.clip.v.image_size;
    resample(ctx, &m, S - 8, S - 8, 5);  /* up-sampling */
    resample(ctx, &m, S + 12, S + 13, 6); /* down-sampling, near-square */
    ctx->tmp = &tmp;
    /* errors */
    ap_tensor rect = ap_t4(image.data, B, 3, H, W - 4);
    tu_expect_error("non-square image", ap_aesthetic_forward(ctx, NULL, &m, NULL, &r2, NULL, &rect),
                    "square", NULL);
    ap_aesthetic_saved none;
    memset(&none, 0, sizeof none);
    tu_expect_error("backward without a tape forward",
                    ap_aesthetic_backward(ctx, &tp, &m, &none, &dimage, &dloss), "never recorded",
                    NULL);
    ap_aesthetic bad;
    tu_expect_error("missing MLP file", ap_aesthetic_load(&bad, cdir, "/nonexistent/mlp.pth"),
                    "/nonexistent/mlp.pth", NULL);
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(r.data), free(l.data), free(r2.data), free(dimage.data);
    free(image.data), free(r_ref.data), free(l_ref.data), free(dloss.data), free(g_ref.data);
    ap_aesthetic_free(&m);
}

static void real_mlp(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    const char *shared = tu_shared_dir();
    char path[1024];
    const char *env = getenv("AP_SHARED_DIR");
    snprintf(path, sizeof path, "%s/data/aesthetic/sac+logos+ava1-l14-linearMSE.pth",
             shared ? shared : env ? env : "$AP_SHARED_DIR");
    if (!shared || access(path, R_OK) != 0) {
        printf("  SKIP real aesthetic MLP: %s not readable (AP_SHARED_DIR %s; it must name the "
               "shared folder holding data/aesthetic)\n", path, env ? "names a missing folder" : "unset");
        return;
    }
    ap_aesthetic m;
    memset(&m, 0, sizeof m);
    int rc = ap_aesthetic_mlp_load(&m, path);
    if (!tu_check(rc == 0, "load the real MLP %s%s%s", path, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return;
    tu_check(m.dims[0] == 768 && m.dims[1] == 1024 && m.dims[2] == 128 && m.dims[3] == 64 &&
                 m.dims[4] == 16 && m.dims[5] == 1,
             "real MLP widths 768 -> 1024 -> 128 -> 64 -> 16 -> 1");
    tu_check(fabsf(m.b[4].data[0] - 0.98999321f) == 0.0f, "layers.7.bias = 0.98999321 (bytes 32 70 7d 3f)");
    /* docs/clip.md §5 check values (fp32): u = (1/sqrt 768)(1..1) -> 4.883285; b_eff = MLP(0);
     * w_eff = d r / d u */
    float u0[768], zero[768], w_eff[768], r1, r0, one = 1.0f;
    for (int i = 0; i < 768; i++) u0[i] = 1.0f / sqrtf(768.0f), zero[i] = 0.0f;
    ap_tensor tu0 = ap_t2(u0, 1, 768), tz = ap_t2(zero, 1, 768), tr1 = ap_t1(&r1, 1),
              tr0 = ap_t1(&r0, 1), tw = ap_t2(w_eff, 1, 768), tone = ap_t1(&one, 1);
    rc = ap_aesthetic_mlp_forward(ctx, &m, &tr1, &tu0) || ap_aesthetic_mlp_forward(ctx, &m, &tr0, &tz) ||
         ap_aesthetic_mlp_backward(ctx, &m, &tw, &tone);
    double nw = 0;
    for (int i = 0; i < 768; i++) nw += (double)w_eff[i] * w_eff[i];
    nw = sqrt(nw);
    /* the docs' values carry 7 significant digits */
    tu_check(rc == 0 && fabs(r1 - 4.883285) < 2e-6, "score of the uniform unit vector %.7f (docs 4.883285)", r1);
    tu_check(rc == 0 && fabs(r0 - 5.2366458) < 2e-6, "b_eff = MLP(0) = %.7f (docs 5.2366458)", r0);
    tu_check(rc == 0 && fabs(nw - 17.995625) < 2e-5, "|w_eff| = %.6f (docs 17.995625)", nw);
    /* vs torch on random unit embeddings (fixture from the same file) */
    ap_tensor u, r_ref, dr, g_ref;
    if (!f) return;
    if (ap_st_load_f32(f, "real_mlp.u", 0, NULL, &u)) {
        printf("  SKIP real MLP goldens: the fixture was generated without the real file\n");
        ap_params_free(&m.mlp_params);
        return;
    }
    tu_fixture(f, "real_mlp.reward", &r_ref);
    tu_fixture(f, "real_mlp.dreward", &dr);
    tu_fixture(f, "real_mlp.grad_u", &g_ref);
    int64_t B = u.shape[0];
    ap_tensor r = ap_t1(tu_alloc(B), B), du = ap_t2(tu_alloc(B * 768), B, 768);
    rc = ap_aesthetic_mlp_forward(ctx, &m, &r, &u) || ap_aesthetic_mlp_backward(ctx, &m, &du, &dr);
    if (tu_check(rc == 0, "real MLP forward/backward on %lld embeddings", (long long)B)) {
        /* 5 GEMVs of widths up to 1024 on O(1) values: ~1e-6 */
        tu_compare("real MLP reward vs torch", r.data, r_ref.data, B, 1e-5, 1e-6);
        tu_compare("real MLP d r / d u vs torch", du.data, g_ref.data, B * 768, 1e-6, 1e-4);
    }
    free(r.data), free(du.data), free(u.data), free(r_ref.data), free(dr.data), free(g_ref.data);
    (void)dir;
    ap_params_free(&m.mlp_params);
}

/* AlignProp's preprocessing (clamp, torchvision Resize(28), Normalize) vs
 * torch on up-sampling (20 x 20) and near-square (40 x 41, 41 x 40: Resize
 * gives 28 x 28, as torchvision's int(28 * 41 / 40) = 28) inputs, forward
 * and d(sum(out * proj))/d(image). The same float formula as torch with
 * possibly a different summation order: outputs |p| < 4, gradients
 * scatter-adds of a few terms; observed bit-exact, 1e-5 abs + 1e-5 rel
 * allows a reordered scatter-add.
 * A clearly non-square image is rejected: AlignProp's Resize keeps the
 * aspect ratio (no crop) and both scorers' towers then raise, as the
 * generator (tools/fixtures/clip_preprocess.py) checks. */
static void preprocess_golden(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("clip_preprocess");
    if (!f) return;
    const char *cases[] = {"pre_up", "pre_wide", "pre_tall"};
    for (int k = 0; k < 3; k++) {
        char n[64];
        ap_tensor x, y, proj, g;
        snprintf(n, sizeof n, "%s.image", cases[k]), tu_fixture(f, n, &x);
        snprintf(n, sizeof n, "%s.out", cases[k]), tu_fixture(f, n, &y);
        snprintf(n, sizeof n, "%s.proj", cases[k]), tu_fixture(f, n, &proj);
        snprintf(n, sizeof n, "%s.grad_image", cases[k]), tu_fixture(f, n, &g);
        int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], S = y.shape[2];
        ap_arena tmp;
        ap_arena_init(&tmp, preprocess_tmp(ctx, B, H, W, (int)S), "preprocess tmp");
        ap_tensor p = ap_tn(tu_alloc(ap_numel(&y)), 4, y.shape), dx = x;
        dx.data = tu_alloc(ap_numel(&x));
        char what[128];
        ctx->tmp = &tmp;
        int rc = ap_clip_preprocess_forward(ctx, &p, &x);
        snprintf(what, sizeof what, "%s: preprocess %lld x %lld -> %lld x %lld vs torchvision",
                 cases[k], (long long)H, (long long)W, (long long)S, (long long)S);
        if (tu_check(rc == 0, "%s%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare(what, p.data, y.data, ap_numel(&y), 1e-5, 1e-5);
        rc = ap_clip_preprocess_backward(ctx, &dx, &proj, &x);
        snprintf(what, sizeof what, "%s: d(sum(p * proj))/d(image) vs autograd", cases[k]);
        if (tu_check(rc == 0, "%s%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare(what, dx.data, g.data, ap_numel(&x), 1e-5, 1e-5);
        ctx->tmp = NULL;
        ap_arena_free(&tmp);
        free(p.data), free(dx.data), free(x.data), free(y.data), free(proj.data), free(g.data);
    }
    ap_st_close(f);
    tu_expect_error("40 x 66 image (Resize(28) gives 28 x 46)", ap_clip_preprocess_size(40, 66, 28),
                    "square", "28 x 46", NULL);
}

int main(void) {
    printf("test_aesthetic: AlignProp aesthetic reward vs torch (transformers 4.30.2 CLIPModel)\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR is not set");
    ap_st_file *f = tu_fixture_open("clip");
    if (f) tiny(&ctx, f, dir);
    real_mlp(&ctx, f, dir);
    preprocess_golden(&ctx);
    if (f) ap_st_close(f);
    ap_ctx_free(&ctx);
    return tu_exit();
}
