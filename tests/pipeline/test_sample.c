/* test_sample.c: the whole text-to-image pipeline on the tiny in-process model:
 * the model directory it writes loads through the real loaders, sampling is
 * deterministic for a seed, prompts and seeds change the images, and bad
 * inputs give clear errors. (Component goldens against diffusers are in
 * tests/models; this checks the plumbing between them.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/sd.h"
#include "pipeline/tiny.h"
#include "testutil.h"

static double diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

int main(void) {
    printf("test_sample: tiny model pipeline\n");
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ap_test_tiny_%d", (int)getpid());
    int rc = ap_tiny_write(dir, 7);
    if (!tu_check(rc == 0, "tiny model written to %s%s%s", dir, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return tu_exit();
    ap_sd sd;
    rc = ap_sd_open(&sd, dir, NULL);
    if (!tu_check(rc == 0, "tiny model loads through the diffusers loaders%s%s", rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return tu_exit();
    ap_ctx ctx;
    ap_ctx_init(&ctx, 2);
    ap_sample_opts o = {.steps = 3, .guidance = 7.5f, .seed = 11, .height = 32, .width = 32};
    int64_t n = 3 * 32 * 32;
    float *a = tu_alloc(2 * n), *b = tu_alloc(2 * n), *c = tu_alloc(n);
    const char *prompts[2] = {"a photo of a cat", "a dog"};
    rc = ap_sd_sample(&ctx, &sd, prompts, 2, &o, a, NULL, NULL);
    tu_check(rc == 0, "sample 2 prompts, 3 steps%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    int finite = 1;
    for (int64_t i = 0; i < 2 * n; i++) finite &= isfinite(a[i]) != 0;
    tu_check(finite, "all pixels finite");
    ap_ctx_free(&ctx);
    ap_ctx_init(&ctx, 1);
    rc = ap_sd_sample(&ctx, &sd, prompts, 2, &o, b, NULL, NULL);
    /* README: identical images on any thread count (GEMM chunks depend on the
     * shape only, reductions run in a fixed order): bit for bit. */
    tu_check(rc == 0 && memcmp(a, b, (size_t)(2 * n) * sizeof(float)) == 0,
             "same seed, 1 vs 2 threads: bit-identical (max diff %.3g, tolerance 0)",
             diff(a, b, 2 * n));
    /* image k uses seed + k whatever the batch: the batch's second image is
     * the second prompt sampled alone with seed + 1 */
    ap_sample_opts o1 = o;
    o1.seed = o.seed + 1;
    rc = ap_sd_sample(&ctx, &sd, prompts + 1, 1, &o1, c, NULL, NULL);
    tu_check(rc == 0 && memcmp(c, b + n, (size_t)n * sizeof(float)) == 0,
             "batch 2, image 1 == prompt 1 alone with seed + 1: bit-identical (max diff %.3g, "
             "tolerance 0)", diff(c, b + n, n));
    rc = ap_sd_sample(&ctx, &sd, prompts, 1, &o, c, NULL, NULL);
    tu_check(rc == 0 && memcmp(c, b, (size_t)n * sizeof(float)) == 0,
             "batch 2, image 0 == prompt 0 alone (batch 1): bit-identical (max diff %.3g, "
             "tolerance 0)", diff(c, b, n));
    uint64_t seeds[2] = {o.seed + 1, o.seed};
    const char *swapped[2] = {prompts[1], prompts[0]};
    ap_sample_opts o2 = o;
    o2.seeds = seeds;
    float *d = tu_alloc(2 * n);
    rc = ap_sd_sample(&ctx, &sd, swapped, 2, &o2, d, NULL, NULL);
    tu_check(rc == 0 && memcmp(d, b + n, (size_t)n * sizeof(float)) == 0 &&
                 memcmp(d + n, b, (size_t)n * sizeof(float)) == 0,
             "explicit per-image seeds, batch order swapped: the same two images bit for bit");
    free(d);
    /* 64x64: latents 32x32, where the UNet's 3x3 convs take Winograd (>= 128
     * tiles per image): batch 1 vs 2 and 1 vs 3 threads, bit for bit. */
    {
        ap_sample_opts o3 = o;
        o3.height = o3.width = 64;
        int64_t n3 = 3 * 64 * 64;
        float *e = tu_alloc(2 * n3), *f = tu_alloc(n3);
        rc = ap_sd_sample(&ctx, &sd, prompts, 2, &o3, e, NULL, NULL);
        ap_ctx_free(&ctx);
        ap_ctx_init(&ctx, 3);
        o3.seed += 1;
        if (!rc) rc = ap_sd_sample(&ctx, &sd, prompts + 1, 1, &o3, f, NULL, NULL);
        tu_check(rc == 0 && memcmp(e + n3, f, (size_t)n3 * sizeof(float)) == 0,
                 "64x64 (Winograd): image 1 of a batch of 2 on 1 thread == alone on 3 threads "
                 "with seed + 1: bit-identical (max diff %.3g, tolerance 0)",
                 diff(e + n3, f, n3));
        ap_ctx_free(&ctx);
        ap_ctx_init(&ctx, 1);
        free(e), free(f);
    }
    o2.seeds = NULL;
    o2.guidance = NAN;
    tu_expect_error("guidance NaN", ap_sd_sample(&ctx, &sd, prompts, 1, &o2, c, NULL, NULL),
                    "guidance", "nan", NULL);
    rc = ap_sd_sample(&ctx, &sd, prompts + 1, 1, &o, c, NULL, NULL);
    /* a batch element depends only on its own prompt and noise */
    tu_check(rc == 0 && diff(c, b, n) > 1e-3, "a different prompt with the same seed changes the image");
    o.seed = 12;
    rc = ap_sd_sample(&ctx, &sd, prompts, 1, &o, c, NULL, NULL);
    tu_check(rc == 0 && diff(c, b, n) > 1e-3, "a different seed changes the image");
    o.height = 30;
    tu_expect_error("image size not a multiple of the model factor",
                    ap_sd_sample(&ctx, &sd, prompts, 1, &o, c, NULL, NULL), "30x32", "multiples of 4",
                    NULL);
    ap_sd_close(&sd);
    tu_expect_error("directory without model_index.json", ap_sd_open(&sd, "/tmp", NULL), "/tmp",
                    "model_index.json", NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    truncate(path, 1000);
    tu_expect_error("truncated UNet weights", ap_sd_open(&sd, dir, NULL), path, NULL);
    free(a), free(b), free(c);
    ap_ctx_free(&ctx);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("  note: could not remove %s\n", dir);
    return tu_exit();
}
