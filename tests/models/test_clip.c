/* test_clip.c: CLIP text encoder (transformers CLIPTextModel) loaded from a
 * tiny save_pretrained directory (safetensors, with position_ids) against its
 * last_hidden_state; CLIP vision tower + visual_projection loaded from a tiny
 * CLIPModel directory (pytorch_model.bin, text_model.* present and unused)
 * against get_image_features; real-size declarations against the manifests
 * of SD v1.5's text encoder and openai/clip-vit-large-patch14 (vision side),
 * without allocating; loader and input errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "manifest.h"
#include "models/clip_text.h"
#include "models/clip_vision.h"
#include "testutil.h"

/* fp32 vs fp32 through 2 encoder layers and LayerNorms (O(1) values after the
 * final LayerNorm): observed max abs error ~1e-6; 2e-5 leaves a 10x margin
 * for thread-count and BLAS-kernel differences. */
#define TEXT_ATOL 2e-5
#define TEXT_RTOL 1e-4
/* image features: same path plus conv + projection on O(1) values. */
#define VIS_ATOL 2e-5
#define VIS_RTOL 1e-4

static void text_golden(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip/text_encoder", dir);
    ap_clip_text m;
    int rc = ap_clip_text_load(&m, path);
    if (!tu_check(rc == 0, "load CLIPTextModel dir %s%s%s", path, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    ap_tensor idsf, ref;
    tu_fixture(f, "text.ids", &idsf);
    tu_fixture(f, "text.last_hidden_state", &ref);
    int64_t B = idsf.shape[0], N = idsf.shape[1], C = m.t.C;
    int32_t *ids = malloc((size_t)(B * N) * sizeof *ids);
    for (int64_t i = 0; i < B * N; i++) ids[i] = (int32_t)idsf.data[i];
    ap_arena tmp;
    ap_plan tp;
    ap_text_tower_plan_measure(ctx, &m.t, B, N, &tp);
    ap_arena_init(&tmp, tp.tmp_bytes, "text tmp");
    ap_tensor out = ap_t3(tu_alloc(B * N * C), B, N, C);
    ctx->tmp = &tmp;
    rc = ap_text_tower_forward(ctx, &m.t, &out, ids, B, N);
    if (tu_check(rc == 0, "text forward (B %lld, N %lld, C %lld)%s%s", (long long)B, (long long)N,
                 (long long)C, rc ? ": " : "", rc ? ap_errmsg() : ""))
        tu_compare("last_hidden_state vs transformers", out.data, ref.data, ap_numel(&ref),
                   TEXT_ATOL, TEXT_RTOL);
    tu_check(tmp.used == 0, "text forward released tmp");
    /* input errors */
    ids[3] = m.t.vocab;
    tu_expect_error("token id out of range", ap_text_tower_forward(ctx, &m.t, &out, ids, B, N),
                    "ids[0][3]", "[0, 100)", "found 100", NULL);
    ids[3] = 1;
    tu_expect_error("sequence longer than the position table",
                    ap_text_tower_forward(ctx, &m.t, &out, ids, 1, 78), "1 <= N <= 77", NULL);
    ctx->tmp = NULL;
    ap_arena_free(&tmp);
    free(ids), free(out.data), free(idsf.data), free(ref.data);
    ap_clip_text_free(&m);
}

static void vision_golden(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip/clip_model", dir);
    ap_clip_vision m;
    int rc = ap_clip_vision_load(&m, path);
    if (!tu_check(rc == 0, "load CLIPModel dir %s (vision side)%s%s", path, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    ap_tensor px, ref;
    tu_fixture(f, "vision.pixel_values", &px);
    tu_fixture(f, "vision.image_embeds", &ref);
    int64_t B = px.shape[0], P = m.v.proj_dim;
    ap_arena tmp;
    ap_plan vp;
    ap_vit_plan_measure(ctx, &m.v, B, &vp);
    ap_arena_init(&tmp, vp.tmp_bytes, "vision tmp");
    ap_tensor out = ap_t2(tu_alloc(B * P), B, P);
    ctx->tmp = &tmp;
    rc = ap_vit_forward(ctx, NULL, &m.v, NULL, &out, &px);
    if (tu_check(rc == 0, "image features forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
        tu_compare("get_image_features vs transformers", out.data, ref.data, ap_numel(&ref),
                   VIS_ATOL, VIS_RTOL);
    ap_tensor bad = ap_t4(px.data, B, 3, 27, 28);
    tu_expect_error("pixels of the wrong size", ap_vit_forward(ctx, NULL, &m.v, NULL, &out, &bad),
                    "vit_forward", "pixels", "(*, 3, 28, 28)", "(2, 3, 27, 28)", NULL);
    ctx->tmp = NULL;
    ap_arena_free(&tmp);
    free(out.data), free(px.data), free(ref.data);
    ap_clip_vision_free(&m);
}

static void manifests(void) {
    const char *dir = tu_fixtures_dir();
    char path[1024];
    ap_json *cfg = NULL;
    /* SD v1.5 text encoder: 196 parameter tensors, 123,060,480 parameters */
    snprintf(path, sizeof path, "%s/manifests/sd15_text_encoder_config.json", dir);
    if (tu_check(ap_json_parse_file(&cfg, path) == 0, "read %s", path)) {
        ap_clip_text m;
        memset(&m, 0, sizeof m);
        int rc = ap_clip_text_config(&m, cfg, path);
        rc = rc ? rc : ap_clip_text_declare(&m);
        if (tu_check(rc == 0, "declare SD v1.5 text encoder%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_manifest_check("sd15 text encoder", &m.params, "sd15_text_encoder.txt", NULL,
                              123060480LL);
        tu_check(m.params.flat == NULL, "declared without allocating");
        ap_clip_text_free(&m);
        ap_json_free(cfg);
    }
    /* SD 2.1 text encoder (OpenCLIP ViT-H text, 23 layers, gelu): 372
     * parameter tensors, 340,387,840 parameters (docs/clip.md §2) */
    snprintf(path, sizeof path, "%s/manifests/sd21_text_encoder_config.json", dir);
    if (tu_check(ap_json_parse_file(&cfg, path) == 0, "read %s", path)) {
        ap_clip_text m;
        memset(&m, 0, sizeof m);
        int rc = ap_clip_text_config(&m, cfg, path);
        rc = rc ? rc : ap_clip_text_declare(&m);
        if (tu_check(rc == 0, "declare SD 2.1 text encoder%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_manifest_check("sd21 text encoder", &m.params, "sd21_text_encoder.txt", NULL,
                              340387840LL);
        tu_check(m.t.C == 1024 && m.t.F == 4096 && m.t.layers == 23 && m.t.heads == 16 &&
                     m.t.act == AP_ACT_GELU,
                 "SD 2.1 text encoder dims (1024, 4096, 23 layers, 16 heads, gelu)");
        ap_clip_text_free(&m);
        ap_json_free(cfg);
    }
    /* openai/clip-vit-large-patch14: vision tower 303,179,776 + projection 786,432 */
    snprintf(path, sizeof path, "%s/manifests/clip_vit_l14_config.json", dir);
    if (tu_check(ap_json_parse_file(&cfg, path) == 0, "read %s", path)) {
        ap_clip_vision m;
        memset(&m, 0, sizeof m);
        int rc = ap_clip_vision_config(&m, cfg, path);
        rc = rc ? rc : ap_clip_vision_declare(&m);
        if (tu_check(rc == 0, "declare CLIP ViT-L/14 vision side%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
            static const char *const pre[] = {"vision_model.", "visual_projection.", NULL};
            tu_manifest_check("clip-vit-large-patch14 vision", &m.params, "clip_vit_l14.txt", pre,
                              303179776LL + 786432LL);
            tu_check(m.v.C == 1024 && m.v.F == 4096 && m.v.layers == 24 && m.v.heads == 16 &&
                         m.v.patch == 14 && m.v.image_size == 224 && m.v.proj_dim == 768 &&
                         m.v.act == AP_ACT_QUICK_GELU,
                     "ViT-L/14 dims from config.json (1024, 4096, 24 layers, 16 heads, 14/224, 768)");
        }
        ap_clip_vision_free(&m);
        ap_json_free(cfg);
    }
}

static void loader_errors(void) {
    ap_clip_text m;
    tu_expect_error("missing directory", ap_clip_text_load(&m, "/nonexistent/text_encoder"),
                    "/nonexistent/text_encoder/config.json", NULL);
    ap_json *cfg = NULL;
    const char *txt = "{\"hidden_size\": 30, \"num_attention_heads\": 4}";
    ap_json_parse(&cfg, txt, strlen(txt), "bad.json");
    memset(&m, 0, sizeof m);
    tu_expect_error("width not divisible by heads", ap_clip_text_config(&m, cfg, "bad.json"),
                    "bad.json", "30", "4", NULL);
    ap_json_free(cfg);
    txt = "{\"hidden_act\": \"relu\"}";
    ap_json_parse(&cfg, txt, strlen(txt), "act.json");
    tu_expect_error("unknown activation", ap_clip_text_config(&m, cfg, "act.json"), "act.json",
                    "hidden_act", "relu", NULL);
    ap_json_free(cfg);
    /* the text encoder's weights lack vision tensors: all of them are named */
    const char *dir = tu_fixtures_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/clip/text_encoder", dir);
    ap_clip_vision v;
    tu_expect_error("vision tower from a text-only directory", ap_clip_vision_load(&v, path),
                    "vision_config", NULL);
}

int main(void) {
    printf("test_clip: CLIP text encoder and vision tower vs transformers 4.30.2\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR is not set");
    ap_st_file *f = tu_fixture_open("clip");
    if (f) {
        text_golden(&ctx, f, dir);
        vision_golden(&ctx, f, dir);
        ap_st_close(f);
    }
    manifests();
    loader_errors();
    ap_ctx_free(&ctx);
    return tu_exit();
}
