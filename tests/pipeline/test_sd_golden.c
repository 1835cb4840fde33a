/* test_sd_golden.c: text-to-image sampling end to end against diffusers
 * 0.17.1 StableDiffusionPipeline (tools/fixtures/sd_pipeline.py):
 *
 *  1. the tiny pipeline directory tests/fixtures/sd_tiny, two prompts, the
 *     same initial latents (init_noise), 4 DDIM steps, guidance 7.5: final
 *     latents and the decoded [-1, 1] images vs diffusers', without and with
 *     AlignProp's LoRA (sd_tiny/lora);
 *  2. the same weights as one CompVis single file (sd_tiny_single.safetensors,
 *     F16, checked by diffusers' converters) with config_dir = sd_tiny and the
 *     tokenizer folder: the same images as from the directory;
 *  3. the built-in SD v1.5 configs equal the real ones (manifests/);
 *  4. bad input: no tokenizer folder, a file without UNet keys, a file with a
 *     partial checkpoint, a layout that disagrees with the configs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/st_write.h"
#include "pipeline/sd.h"
#include "pipeline/sd_internal.h"
#include "testutil.h"

static const char *const k_prompts[2] = {"a photo of a cat", "a dog"};
enum { N = 2, CL = 4, HL = 8, WL = 8, HI = 16, WI = 16 };
#define NLAT ((int64_t)N * CL * HL * WL)
#define NIMG ((int64_t)N * 3 * HI * WI)

static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static int sample(ap_ctx *ctx, ap_sd *sd, const float *noise, float *lat, float *img) {
    ap_sample_opts o = {.steps = 4, .guidance = 7.5f, .height = HI, .width = WI,
                        .init_noise = noise, .final_latents = lat};
    int rc = ap_sd_sample(ctx, sd, k_prompts, N, &o, img, NULL, NULL);
    tu_check(rc == 0, "sample 2 prompts, 4 steps%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    return rc;
}

static void golden(ap_ctx *ctx, ap_st_file *g, const char *dir, const char *lora,
                   const char *tag, const float *noise, float *lat, float *img) {
    ap_tensor t;
    char name[64];
    snprintf(name, sizeof name, "%slatents", tag);
    float *want_lat = tu_fixture(g, name, &t);
    snprintf(name, sizeof name, "%simages", tag);
    float *want_img = tu_fixture(g, name, &t);
    ap_sd sd;
    int rc = ap_sd_open(&sd, dir, lora);
    if (tu_check(rc == 0, "open %s%s%s%s%s", dir, lora ? " + LoRA " : "", lora ? lora : "",
                 rc ? ": " : "", rc ? ap_errmsg() : "") &&
        sample(ctx, &sd, noise, lat, img) == 0) {
        /* fp32 vs PyTorch fp32 through 4 UNet pairs and CFG with g = 7.5 (which
         * multiplies eps differences by 8): latents reach |13|; measured max
         * abs err 2.0e-5, so 1e-4 abs + 1e-5 rel. Images (|1|): measured
         * 2.3e-6, bound 2e-5 abs. */
        char what[96];
        snprintf(what, sizeof what, "%sfinal latents vs diffusers", tag);
        tu_compare(what, lat, want_lat, NLAT, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%simages vs diffusers", tag);
        tu_compare(what, img, want_img, NIMG, 2e-5, 0);
        ap_sd_close(&sd);
    }
    free(want_lat), free(want_img);
}

static void single(ap_ctx *ctx, const char *file, const char *dir, const char *lora,
                   const float *noise, const float *want_img) {
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer", dir);
    ap_sd sd;
    int rc = ap_sd_open_single(&sd, file, tok, dir, lora);
    if (!tu_check(rc == 0, "open single file %s%s%s", lora ? "+ LoRA" : "", rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    float *lat = tu_alloc(NLAT), *img = tu_alloc(NIMG);
    if (sample(ctx, &sd, noise, lat, img) == 0) {
        /* the same numbers (F16 in the file, fp16-exact weights) through the
         * same code on the same threads: bit-identical. */
        double d = maxdiff(img, want_img, NIMG);
        tu_check(d == 0, "%ssingle file images == directory images (max diff %.3g)",
                 lora ? "LoRA: " : "", d);
    }
    ap_sd_close(&sd);
    free(lat), free(img);
}

static void builtin_configs(const char *fixtures) {
    char path[4096];
    ap_json *j = NULL;
    ap_unet_config a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    snprintf(path, sizeof path, "%s/manifests/sd15_unet_config.json", fixtures);
    int rc = ap_sd15_config_json(&j, "unet");
    if (!rc) rc = ap_unet_config_from_json(&a, j, "built-in");
    ap_json_free(j);
    if (!rc) rc = ap_unet_config_read(&b, path);
    tu_check(rc == 0 && memcmp(&a, &b, sizeof a) == 0,
             "built-in SD v1.5 unet config == manifests/sd15_unet_config.json%s%s",
             rc ? ": " : "", rc ? ap_errmsg() : "");
    ap_clip_text x, y;
    memset(&x, 0, sizeof x), memset(&y, 0, sizeof y);
    snprintf(path, sizeof path, "%s/manifests/sd15_text_encoder_config.json", fixtures);
    rc = ap_sd15_config_json(&j, "text_encoder");
    if (!rc) rc = ap_clip_text_config(&x, j, "built-in");
    ap_json_free(j);
    j = NULL;
    if (!rc) rc = ap_json_parse_file(&j, path);
    if (!rc) rc = ap_clip_text_config(&y, j, path);
    ap_json_free(j);
    const ap_text_tower *p = &x.t, *q = &y.t;
    tu_check(rc == 0 && p->vocab == q->vocab && p->max_pos == q->max_pos && p->C == q->C &&
                 p->F == q->F && p->layers == q->layers && p->heads == q->heads &&
                 p->eps == q->eps && p->act == q->act,
             "built-in SD v1.5 text_encoder config == manifests/sd15_text_encoder_config.json "
             "(%d layers, width %d)%s%s", p->layers, p->C, rc ? ": " : "", rc ? ap_errmsg() : "");
}

static void bad_inputs(const char *fixtures, const char *dir, const char *file) {
    ap_sd sd;
    char tok[4200], path[4096], nodir[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer", dir);
    snprintf(nodir, sizeof nodir, "%s/no_such_tokenizer", dir);
    tu_expect_error("no tokenizer folder given", ap_sd_open_single(&sd, file, NULL, dir, NULL),
                    "carries no tokenizer", "vocab.json", NULL);
    tu_expect_error("tokenizer folder missing", ap_sd_open_single(&sd, file, nodir, dir, NULL),
                    nodir, "expected vocab.json and merges.txt", "neither", NULL);
    snprintf(path, sizeof path, "/tmp/ap_test_sd_golden_%d", (int)getpid());
    char vocab[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", path);
    FILE *f = NULL;
    if (mkdir(path, 0755) == 0 && (f = fopen(vocab, "w"))) {
        fputs("{}", f);
        fclose(f);
        tu_expect_error("tokenizer folder without merges.txt",
                        ap_sd_open_single(&sd, file, path, dir, NULL), path, "no merges.txt", NULL);
    }
    unlink(vocab);
    rmdir(path);
    /* a VAE-only CompVis file */
    snprintf(path, sizeof path, "/tmp/ap_test_sd_golden_%d.safetensors", (int)getpid());
    float v[4] = {1, 2, 3, 4};
    ap_tensor t = ap_t1(v, 4);
    ap_st_entry e[1] = {{"first_stage_model.post_quant_conv.bias", &t}};
    if (ap_st_write(path, e, 1, NULL) == 0)
        tu_expect_error("a file without UNet keys", ap_sd_open_single(&sd, path, tok, dir, NULL),
                        path, "no UNet weights", "model.diffusion_model.input_blocks.0.0.weight",
                        NULL);
    unlink(path);
    /* the tiny VAE's CompVis file: a VAE, one stray UNet key, no text encoder */
    snprintf(path, sizeof path, "%s/vae_tiny_compvis.safetensors", fixtures);
    tu_expect_error("a file with a stray UNet key", ap_sd_open_single(&sd, path, tok, dir, NULL),
                    path, "no UNet weights", NULL);
    /* SD v1.5's configs (2 layers per block) on the tiny file (1) */
    tu_expect_error("built-in configs on a checkpoint of another layout",
                    ap_sd_open_single(&sd, file, tok, NULL, NULL), "built-in SD v1.5 unet config",
                    "layers_per_block 2", "has 1", NULL);
    tu_expect_error("a directory as a single file", ap_sd_open_single(&sd, dir, tok, dir, NULL),
                    dir, NULL);
}

int main(void) {
    printf("test_sd_golden: sampling vs diffusers 0.17.1 StableDiffusionPipeline\n");
    const char *fixtures = tu_fixtures_dir();
    if (!fixtures) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    ap_st_file *g = tu_fixture_open("sd_pipeline");
    if (!g) return tu_skip("sd_pipeline.safetensors missing (tools/make_fixtures.py sd_pipeline)");
    char dir[4096], lora[4096], file[4096];
    snprintf(dir, sizeof dir, "%s/sd_tiny", fixtures);
    snprintf(lora, sizeof lora, "%s/sd_tiny/lora", fixtures);
    snprintf(file, sizeof file, "%s/sd_tiny_single.safetensors", fixtures);
    ap_tensor t;
    float *noise = tu_fixture(g, "noise", &t);
    tu_check(ap_numel(&t) == NLAT, "noise (2, 4, 8, 8)");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 2);
    float *lat = tu_alloc(NLAT), *img = tu_alloc(NIMG), *lat_l = tu_alloc(NLAT),
          *img_l = tu_alloc(NIMG);
    golden(&ctx, g, dir, NULL, "", noise, lat, img);
    golden(&ctx, g, dir, lora, "lora.", noise, lat_l, img_l);
    single(&ctx, file, dir, NULL, noise, img);
    single(&ctx, file, dir, lora, noise, img_l);
    builtin_configs(fixtures);
    bad_inputs(fixtures, dir, file);
    free(noise), free(lat), free(img), free(lat_l), free(img_l);
    ap_ctx_free(&ctx);
    ap_st_close(g);
    return tu_exit();
}
