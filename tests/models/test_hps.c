/* test_hps.c: HPSv2 reward on a tiny open_clip 2.20.0 CLIP built from an
 * open_clip model config and loaded from torch.save({'state_dict': ...}) (the
 * HPS_v2_compressed.pt layout): normalised text features, image features,
 * AlignProp's hps_loss_fn score / loss and d(sum c_b loss_b)/d(image) against
 * autograd; the ViT-H-14 declaration against the real-size manifest (686
 * tensors, 986,109,441 parameters) without allocating; the same for the
 * HPSv2.1 storage form (fp16, HPS_v2.1_compressed.pt); config and loader
 * errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "manifest.h"
#include "models/hps.h"
#include "testutil.h"

/* features and scores: fp32 through 2-layer towers and LayerNorms, O(1)
 * values; observed errors ~1e-7..1e-6. */
#define F_ATOL 1e-5
#define F_RTOL 1e-4
/* image gradient (~1e-3..1e-1): same path backwards plus two bilinear adjoints. */
#define G_ATOL 1e-6
#define G_RTOL 1e-3

/* Planning and the image gradient when Resize(S) up-samples (H < S) or
 * down-samples a near-square image (S + 12 x S + 13, which torchvision maps
 * to S x S): tmp is what ap_hps_plan_measure measured, and the gradient matches
 * central finite differences of the fp32 forward (pixels in [-0.9, 0.9],
 * keep the clamp away from its kinks for eps 1e-2; the costs c are scaled
 * by 300 so that max|grad| (10..95) exceeds the checker's floor of 1;
 * observed error 1e-4..2e-4 of max|grad| (fp32 loss noise / 2 eps plus
 * O(eps^2) curvature): tolerance 2e-3. */
typedef struct {
    ap_ctx *ctx;
    const ap_hps *m;
    ap_arena *tmp;
    ap_tensor image, l, txt;
    const float *c;
} hps_state;

static double hps_loss(void *p) {
    hps_state *s = p;
    s->ctx->tmp = s->tmp;
    if (ap_hps_forward(s->ctx, NULL, s->m, NULL, NULL, &s->l, &s->image, &s->txt)) {
        printf("  forward failed: %s\n", ap_errmsg());
        return 0;
    }
    return tu_dot(s->l.data, s->c, s->l.shape[0]);
}

static void resample(ap_ctx *ctx, const ap_hps *m, const ap_tensor *txt, int64_t H, int64_t W,
                     uint64_t seed) {
    int64_t B = txt->shape[0];
    int S = m->visual.image_size;
    ap_arena tape, tmp;
    ap_plan plan;
    ap_hps_plan_measure(ctx, m, B, H, W, m->text.max_pos, &plan);
    size_t tb = plan.tmp_bytes;
    ap_arena_init(&tape, plan.tape_bytes, "hps tape");
    ap_arena_init(&tmp, tb, "hps tmp");
    ap_tensor image = ap_t4(tu_alloc(B * 3 * H * W), B, 3, H, W), dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    tu_fill_uniform(image.data, ap_numel(&image), seed, -0.9f, 0.9f);
    float *c = tu_alloc(B);
    for (int64_t b = 0; b < B; b++) c[b] = 300.0f * (0.7f - 0.9f * (float)b);
    ap_tensor l = ap_t1(tu_alloc(B), B), dl = ap_t1(c, B);
    ap_hps_saved sv;
    char what[160];
    snprintf(what, sizeof what, "%lld x %lld -> Resize(%d) (%s)", (long long)H, (long long)W, S,
             H < S ? "up-sampling" : "down-sampling");
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    int rc = ap_hps_forward(ctx, &tp, m, &sv, NULL, &l, &image, txt);
    if (tu_check(rc == 0, "%s: forward, tmp %zu bytes planned%s%s", what, tb, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        rc = ap_hps_backward(ctx, &tp, m, &sv, &dimage, &dl);
        if (tu_check(rc == 0, "%s: backward (tmp peak %zu of %zu)%s%s", what, tmp.peak, tb,
                     rc ? ": " : "", rc ? ap_errmsg() : "")) {
            hps_state st = {ctx, m, &tmp, image, l, *txt, c};
            snprintf(what + strlen(what), sizeof what - strlen(what), ": d(sum c*loss)/d(image)");
            tu_gradcheck(what, hps_loss, &st, image.data, ap_numel(&image), dimage.data, 1e-2,
                         2e-3, 12);
        }
    }
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(image.data), free(dimage.data), free(l.data), free(c);
}

static void tiny(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char cfg[1024], ckpt[1024];
    snprintf(cfg, sizeof cfg, "%s/hps/open_clip_tiny.json", dir);
    snprintf(ckpt, sizeof ckpt, "%s/hps/hps_tiny.pt", dir);
    ap_hps m;
    int rc = ap_hps_load(&m, cfg, ckpt);
    if (!tu_check(rc == 0, "load tiny open_clip CLIP (%s + %s)%s%s", cfg, ckpt, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    tu_check(m.visual.heads == 4 && m.visual.F == 80 && m.text.F == 96 && m.embed_dim == 16 &&
                 m.visual.act == AP_ACT_GELU,
             "dims from the config: vision heads %d (32 / head_width 8), mlp %d (int(32 * 2.5)), "
             "text mlp %d, GELU", m.visual.heads, m.visual.F, m.text.F);
    ap_tensor idsf, tref, image, fref, sref, lref, dloss, gref;
    tu_fixture(f, "hps.ids", &idsf);
    tu_fixture(f, "hps.text_features", &tref);
    tu_fixture(f, "hps.image", &image);
    tu_fixture(f, "hps.image_embeds", &fref);
    tu_fixture(f, "hps.score", &sref);
    tu_fixture(f, "hps.loss", &lref);
    tu_fixture(f, "hps.dloss", &dloss);
    tu_fixture(f, "hps.grad_image", &gref);
    int64_t B = idsf.shape[0], N = idsf.shape[1], E = m.embed_dim;
    int64_t H = image.shape[2], W = image.shape[3];
    int32_t *ids = malloc((size_t)(B * N) * sizeof *ids);
    for (int64_t i = 0; i < B * N; i++) ids[i] = (int32_t)idsf.data[i];
    ap_arena tape, tmp;
    ap_plan plan;
    ap_hps_plan_measure(ctx, &m, B, H, W, N, &plan);
    ap_arena_init(&tape, plan.tape_bytes, "hps tape");
    ap_arena_init(&tmp, plan.tmp_bytes, "hps tmp");
    ap_tensor txt = ap_t2(tu_alloc(B * E), B, E);
    ctx->tmp = &tmp;
    rc = ap_hps_encode_text(ctx, &m, &txt, ids, B, N);
    if (tu_check(rc == 0, "text features (ids padded with 0, pooled at the end token)%s%s",
                 rc ? ": " : "", rc ? ap_errmsg() : ""))
        tu_compare("normalised text features vs open_clip", txt.data, tref.data, B * E, F_ATOL, F_RTOL);
    ap_hps_saved sv;
    ap_tensor sc = ap_t1(tu_alloc(B), B), lo = ap_t1(tu_alloc(B), B), dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    ap_tape tp = ap_tape_on(&tape);
    rc = ap_hps_forward(ctx, &tp, &m, &sv, &sc, &lo, &image, &txt);
    if (tu_check(rc == 0, "forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_compare("encode_image vs open_clip", sv.f.data, fref.data, B * E, F_ATOL, F_RTOL);
        tu_compare("score = diag(img @ txt.T)", sc.data, sref.data, B, F_ATOL, F_RTOL);
        tu_compare("loss = 1 - score", lo.data, lref.data, B, F_ATOL, F_RTOL);
        tu_check(tape.used <= tape.cap && tmp.used == 0, "tape %zu of %zu bytes planned; tmp released",
                 tape.used, tape.cap);
        rc = ap_hps_backward(ctx, &tp, &m, &sv, &dimage, &dloss);
        if (tu_check(rc == 0, "backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare("d(sum c*loss)/d(image) vs autograd", dimage.data, gref.data,
                       ap_numel(&image), G_ATOL, G_RTOL);
        tu_check(tmp.used == 0, "backward released tmp");
    }
    ap_tensor s2 = ap_t1(tu_alloc(B), B);
    rc = ap_hps_forward(ctx, NULL, &m, NULL, &s2, NULL, &image, &txt);
    tu_check(rc == 0 && memcmp(s2.data, sc.data, (size_t)B * sizeof(float)) == 0,
             "inference score equals the tape forward bit for bit");
    int S = m.visual.image_size;
    resample(ctx, &m, &txt, S - 8, S - 8, 7);   /* up-sampling */
    resample(ctx, &m, &txt, S + 12, S + 13, 8); /* down-sampling, near-square */
    ctx->tmp = &tmp;
    ap_tensor badt = ap_t2(txt.data, B, E - 1);
    tu_expect_error("text features of the wrong width",
                    ap_hps_forward(ctx, NULL, &m, NULL, &s2, NULL, &image, &badt), "hps_forward",
                    "text", NULL);
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(ids), free(txt.data), free(sc.data), free(lo.data), free(s2.data), free(dimage.data);
    free(idsf.data), free(tref.data), free(image.data), free(fref.data), free(sref.data);
    free(lref.data), free(dloss.data), free(gref.data);
    ap_hps_free(&m);
}

/* HPSv2.1 (tools/fixtures/hps_v21.py): the v2.0 architecture and key set,
 * stored like HPS_v2.1_compressed.pt: {'state_dict': fp16 tensors} in a zip
 * whose top folder is "HPS_v2.1_compressed". The file must really hold
 * HalfStorage; the widened weights must sum to open_clip's (exact values,
 * the golden is stored as float32: rel 2e-7, 3 ulp); features, score, loss and the
 * image gradient against open_clip after load_state_dict into fp32, with the
 * v2.0 tolerances (same fp32 arithmetic on other weights). */
static void v21(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char cfg[1024], ckpt[1024];
    snprintf(cfg, sizeof cfg, "%s/hps/open_clip_tiny.json", dir);
    snprintf(ckpt, sizeof ckpt, "%s/hps_v21/HPS_v2.1_compressed.pt", dir);
    ap_pth_file *pf = NULL;
    int rc = ap_pth_open(&pf, ckpt);
    if (!tu_check(rc == 0, "open %s%s%s", ckpt, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    int n16 = 0, n = ap_pth_count(pf);
    for (int i = 0; i < n; i++) {
        int dt = -1;
        ap_pth_info(pf, ap_pth_name(pf, i), &dt, NULL, NULL);
        n16 += dt == AP_DT_F16;
    }
    tu_check(n > 0 && n16 == n && ap_pth_find(pf, "state_dict.logit_scale") >= 0,
             "v2.1 storage form: %d of %d tensors fp16, under state_dict.", n16, n);
    ap_pth_close(pf);
    ap_hps m;
    rc = ap_hps_load(&m, cfg, ckpt);
    if (!tu_check(rc == 0, "load HPSv2.1 layout (%s)%s%s", ckpt, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    ap_tensor wsum, idsf, tref, image, fref, sref, lref, dloss, gref;
    tu_fixture(f, "hps21.weight_sum", &wsum);
    tu_fixture(f, "hps21.ids", &idsf);
    tu_fixture(f, "hps21.text_features", &tref);
    tu_fixture(f, "hps21.image", &image);
    tu_fixture(f, "hps21.image_embeds", &fref);
    tu_fixture(f, "hps21.score", &sref);
    tu_fixture(f, "hps21.loss", &lref);
    tu_fixture(f, "hps21.dloss", &dloss);
    tu_fixture(f, "hps21.grad_image", &gref);
    double sum = 0;
    int all_f32 = 1;
    for (int i = 0; i < m.params.count; i++) {
        const ap_tensor *t = &m.params.items[i].t;
        all_f32 &= t->dtype == AP_F32;
        if (t->dtype == AP_F32)
            for (int64_t e = 0; e < ap_numel(t); e++) sum += t->data[e];
    }
    tu_check(all_f32 && fabs(sum - wsum.data[0]) <= 2e-7 * fabs((double)wsum.data[0]),
             "fp16 weights widened: sum %.9g vs open_clip %.9g (float32 golden, rel 2e-7)", sum, (double)wsum.data[0]);
    int64_t B = idsf.shape[0], N = idsf.shape[1], E = m.embed_dim;
    int64_t H = image.shape[2], W = image.shape[3];
    int32_t *ids = malloc((size_t)(B * N) * sizeof *ids);
    for (int64_t i = 0; i < B * N; i++) ids[i] = (int32_t)idsf.data[i];
    ap_arena tape, tmp;
    ap_plan plan;
    ap_hps_plan_measure(ctx, &m, B, H, W, N, &plan);
    ap_arena_init(&tape, plan.tape_bytes, "hps tape");
    ap_arena_init(&tmp, plan.tmp_bytes, "hps tmp");
    ap_tensor txt = ap_t2(tu_alloc(B * E), B, E);
    ctx->tmp = &tmp;
    rc = ap_hps_encode_text(ctx, &m, &txt, ids, B, N);
    if (tu_check(rc == 0, "v2.1 text features%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
        tu_compare("v2.1 normalised text features vs open_clip", txt.data, tref.data, B * E,
                   F_ATOL, F_RTOL);
    ap_hps_saved sv;
    ap_tensor sc = ap_t1(tu_alloc(B), B), lo = ap_t1(tu_alloc(B), B), dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    ap_tape tp = ap_tape_on(&tape);
    rc = ap_hps_forward(ctx, &tp, &m, &sv, &sc, &lo, &image, &txt);
    if (tu_check(rc == 0, "v2.1 forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_compare("v2.1 encode_image vs open_clip", sv.f.data, fref.data, B * E, F_ATOL, F_RTOL);
        tu_compare("v2.1 score", sc.data, sref.data, B, F_ATOL, F_RTOL);
        tu_compare("v2.1 loss = 1 - score", lo.data, lref.data, B, F_ATOL, F_RTOL);
        rc = ap_hps_backward(ctx, &tp, &m, &sv, &dimage, &dloss);
        if (tu_check(rc == 0, "v2.1 backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare("v2.1 d(sum c*loss)/d(image) vs autograd", dimage.data, gref.data,
                       ap_numel(&image), G_ATOL, G_RTOL);
    }
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(ids), free(txt.data), free(sc.data), free(lo.data), free(dimage.data), free(wsum.data);
    free(idsf.data), free(tref.data), free(image.data), free(fref.data), free(sref.data);
    free(lref.data), free(dloss.data), free(gref.data);
    ap_hps_free(&m);
}

static void manifest(void) {
    const char *dir = tu_fixtures_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/manifests/open_clip_vit_h14.json", dir);
    ap_json *cfg = NULL;
    if (!tu_check(ap_json_parse_file(&cfg, path) == 0, "read %s", path)) return;
    ap_hps m;
    memset(&m, 0, sizeof m);
    int rc = ap_hps_config(&m, cfg, path);
    rc = rc ? rc : ap_hps_declare(&m);
    if (tu_check(rc == 0, "declare ViT-H-14%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_manifest_check("open_clip ViT-H-14", &m.params, "open_clip_vit_h14.txt", NULL, 986109441LL);
        tu_check(m.visual.heads == 16 && m.visual.F == 5120 && m.visual.layers == 32 &&
                     m.text.heads == 16 && m.text.F == 4096 && m.text.layers == 24 &&
                     m.visual.act == AP_ACT_GELU && m.embed_dim == 1024,
                 "ViT-H-14 dims: vision 16 heads of 80, mlp 5120, 32 layers; text 16 heads, mlp "
                 "4096, 24 layers; GELU; embed 1024");
        tu_check(m.params.flat == NULL, "declared without allocating");
    }
    ap_hps_free(&m);
    ap_json_free(cfg);
}

static void errors(const char *dir) {
    const char *txt = "{\"embed_dim\": 8, \"vision_cfg\": {\"ls_init_value\": 0.1}, \"text_cfg\": {}}";
    ap_json *cfg = NULL;
    ap_json_parse(&cfg, txt, strlen(txt), "ls.json");
    ap_hps m;
    memset(&m, 0, sizeof m);
    tu_expect_error("layer scale config", ap_hps_config(&m, cfg, "ls.json"), "ls.json",
                    "ls_init_value", "not supported", NULL);
    ap_json_free(cfg);
    txt = "{\"vision_cfg\": {}, \"text_cfg\": {}}";
    ap_json_parse(&cfg, txt, strlen(txt), "noembed.json");
    tu_expect_error("missing embed_dim", ap_hps_config(&m, cfg, "noembed.json"), "embed_dim", NULL);
    ap_json_free(cfg);
    char cpath[1024], wrong[1024];
    snprintf(cpath, sizeof cpath, "%s/hps/open_clip_tiny.json", dir);
    snprintf(wrong, sizeof wrong, "%s/clip/aesthetic_mlp.pth", dir);
    tu_expect_error("checkpoint of another model", ap_hps_load(&m, cpath, wrong), "missing tensors",
                    "visual.proj", NULL);
}

int main(void) {
    printf("test_hps: HPSv2 (open_clip 2.20.0 CLIP) reward vs AlignProp hps_loss_fn under torch\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR is not set");
    ap_st_file *f = tu_fixture_open("hps");
    if (f) {
        tiny(&ctx, f, dir);
        ap_st_close(f);
    }
    ap_st_file *f21 = tu_fixture_open("hps_v21");
    if (f21) {
        v21(&ctx, f21, dir);
        ap_st_close(f21);
    }
    manifest();
    errors(dir);
    ap_ctx_free(&ctx);
    return tu_exit();
}
