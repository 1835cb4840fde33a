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
    /* Thread count changes GEMM splits, not the math: allow fp32 reassociation. */
    tu_check(rc == 0 && diff(a, b, 2 * n) < 1e-3, "same seed, 1 vs 2 threads: max diff %.3g (< 1e-3)",
             diff(a, b, 2 * n));
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
