/* test_resize.c: nearest 2x upsample and bilinear resize: gradchecks,
 * PyTorch goldens (tools/fixtures/ops_misc.py), docs/clip.md §4's 512 -> 224 check
 * values, torchvision's size rule, thread determinism and shape errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "ops/resize.h"
#include "testutil.h"

typedef int (*fwd_fn)(ap_ctx *, const ap_tensor *, const ap_tensor *);
typedef int (*bwd_fn)(ap_ctx *, const ap_tensor *, const ap_tensor *);

typedef struct {
    ap_ctx *ctx;
    fwd_fn fwd;
    ap_tensor in, out;
    const float *proj;
} lin_case;

static double lin_loss(void *p) {
    lin_case *c = p;
    c->fwd(c->ctx, &c->out, &c->in);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

/* Gradcheck of a linear resampling op: in (B, C, H, W) -> out (B, C, Ho, Wo). */
static void gradcheck_resample(ap_ctx *ctx, const char *what, fwd_fn fwd, bwd_fn bwd, int64_t B,
                               int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
    int64_t n = B * C * H * W, m = B * C * Ho * Wo;
    float *x = tu_alloc(n), *y = tu_alloc(m), *proj = tu_alloc(m), *dx = tu_alloc(n);
    tu_fill_uniform(x, n, 11, -2, 2);
    tu_fill_uniform(proj, m, 12, -1, 1);
    lin_case c = {ctx, fwd, ap_t4(x, B, C, H, W), ap_t4(y, B, C, Ho, Wo), proj};
    ap_tensor tdx = ap_t4(dx, B, C, H, W), tdy = ap_t4(proj, B, C, Ho, Wo);
    tu_check(bwd(ctx, &tdx, &tdy) == 0, "%s backward runs (%s)", what, ap_errmsg());
    /* The ops are linear: central differences are exact up to the fp32
     * rounding of the loss terms (~1e-7 * sum|proj*out| / eps). */
    tu_gradcheck(what, lin_loss, &c, x, n, dx, 1e-2, 1e-3, 200);
    free(x), free(y), free(proj), free(dx);
}

static void test_gradchecks(ap_ctx *ctx) {
    gradcheck_resample(ctx, "bilinear din 7x5 -> 3x4", ap_resize_bilinear_forward,
                       ap_resize_bilinear_backward, 2, 3, 7, 5, 3, 4);
    gradcheck_resample(ctx, "bilinear din 3x4 -> 7x9", ap_resize_bilinear_forward,
                       ap_resize_bilinear_backward, 2, 3, 3, 4, 7, 9);
    gradcheck_resample(ctx, "bilinear din 16x16 -> 7x7", ap_resize_bilinear_forward,
                       ap_resize_bilinear_backward, 1, 3, 16, 16, 7, 7);
    gradcheck_resample(ctx, "bilinear din 5x6 -> 5x3 (one axis identity)",
                       ap_resize_bilinear_forward, ap_resize_bilinear_backward, 1, 2, 5, 6, 5, 3);
    gradcheck_resample(ctx, "nearest2x din 3x5", ap_upsample_nearest2x_forward,
                       ap_upsample_nearest2x_backward, 2, 3, 3, 5, 6, 10);
}

/* Golden case <name>: in, out, proj, grad_in from PyTorch; out (Ho, Wo) from
 * the fixture's shape. Expected bit-exact: the C arithmetic reproduces
 * PyTorch 1.13's CPU kernel operation for operation (see resize.c). */
static void golden(ap_ctx *ctx, ap_st_file *f, const char *name, fwd_fn fwd, bwd_fn bwd) {
    char key[128];
    ap_tensor in, out, proj, gin;
    snprintf(key, sizeof key, "%s.in", name);
    tu_fixture(f, key, &in);
    snprintf(key, sizeof key, "%s.out", name);
    tu_fixture(f, key, &out);
    snprintf(key, sizeof key, "%s.proj", name);
    tu_fixture(f, key, &proj);
    snprintf(key, sizeof key, "%s.grad_in", name);
    tu_fixture(f, key, &gin);
    int64_t n = ap_numel(&in), m = ap_numel(&out);
    float *y = tu_alloc(m), *dx = tu_alloc(n);
    ap_tensor ty = ap_tn(y, out.ndim, out.shape), tdx = ap_tn(dx, in.ndim, in.shape);
    tu_check(fwd(ctx, &ty, &in) == 0, "%s forward runs (%s)", name, ap_errmsg());
    snprintf(key, sizeof key, "%s forward vs torch (bit-exact)", name);
    tu_compare(key, y, out.data, m, 0, 0);
    tu_check(bwd(ctx, &tdx, &proj) == 0, "%s backward runs (%s)", name, ap_errmsg());
    snprintf(key, sizeof key, "%s backward vs torch (bit-exact)", name);
    tu_compare(key, dx, gin.data, n, 0, 0);
    free(y), free(dx);
    free(in.data), free(out.data), free(proj.data), free(gin.data);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_misc");
    if (!f) return;
    const char *bl[] = {"bl_down", "bl_up", "bl_16to7", "bl_512w", "bl_512h", "tv_resize7"};
    for (size_t i = 0; i < sizeof bl / sizeof bl[0]; i++)
        golden(ctx, f, bl[i], ap_resize_bilinear_forward, ap_resize_bilinear_backward);
    golden(ctx, f, "nearest2x", ap_upsample_nearest2x_forward, ap_upsample_nearest2x_backward);
    ap_st_close(f);
}

/* docs/clip.md §4: resizing a ramp 0..511 to 224 samples it
 * at src(d) = (d + 0.5) * 512/224 - 0.5. */
static void test_spec_ramp(ap_ctx *ctx) {
    float ramp[512], y[224];
    for (int i = 0; i < 512; i++) ramp[i] = (float)i;
    ap_tensor in = ap_t4(ramp, 1, 1, 1, 512), out = ap_t4(y, 1, 1, 1, 224);
    tu_check(ap_resize_bilinear_forward(ctx, &out, &in) == 0, "ramp resize runs");
    float got[5] = {y[0], y[1], y[2], y[3], y[223]};
    const float want[5] = {0.642857f, 2.928571f, 5.214286f, 7.5f, 510.357143f};
    /* The docs' 6-decimal values; fp32 spacing at 510 is 3.1e-5. */
    tu_compare("512 -> 224 ramp at d = 0, 1, 2, 3, 223 vs docs", got, want, 5, 4e-5, 0);
    int Ho = 0, Wo = 0;
    ap_resize_shorter_side(512, 512, 224, &Ho, &Wo);
    tu_check(Ho == 224 && Wo == 224, "shorter side 512x512 -> 224: %dx%d", Ho, Wo);
    ap_resize_shorter_side(16, 12, 7, &Ho, &Wo);
    tu_check(Ho == 9 && Wo == 7, "shorter side 16x12 -> 7: %dx%d (want 9x7)", Ho, Wo);
    ap_resize_shorter_side(12, 16, 7, &Ho, &Wo);
    tu_check(Ho == 7 && Wo == 9, "shorter side 12x16 -> 7: %dx%d (want 7x9)", Ho, Wo);
    ap_resize_shorter_side(480, 640, 224, &Ho, &Wo);
    tu_check(Ho == 224 && Wo == 298, "shorter side 480x640 -> 224: %dx%d (want 224x298)", Ho, Wo);
}

/* The backward must not depend on the thread count (planes are split whole). */
static void test_threads(void) {
    int64_t B = 2, C = 3, H = 64, W = 48, Ho = 29, Wo = 37;
    int64_t n = B * C * H * W, m = B * C * Ho * Wo;
    float *g = tu_alloc(m), *d1 = tu_alloc(n), *d4 = tu_alloc(n);
    tu_fill_uniform(g, m, 5, -1, 1);
    ap_ctx c1, c4;
    ap_ctx_init(&c1, 1);
    ap_ctx_init(&c4, 4);
    ap_tensor tg = ap_t4(g, B, C, Ho, Wo), t1 = ap_t4(d1, B, C, H, W), t4 = ap_t4(d4, B, C, H, W);
    ap_resize_bilinear_backward(&c1, &t1, &tg);
    ap_resize_bilinear_backward(&c4, &t4, &tg);
    tu_compare("bilinear backward 4 threads vs 1 thread (exact)", d4, d1, n, 0, 0);
    ap_ctx_free(&c1);
    ap_ctx_free(&c4);
    free(g), free(d1), free(d4);
}

static void test_shapes(ap_ctx *ctx) {
    static float buf[4096];
    ap_tensor in = ap_t4(buf, 2, 3, 7, 5), bad_c = ap_t4(buf, 2, 4, 3, 4);
    ap_tensor v3 = ap_t3(buf, 3, 7, 5);
    tu_expect_error("resize_bilinear_forward with out channels 4 for in (2, 3, 7, 5)",
                    ap_resize_bilinear_forward(ctx, &bad_c, &in), "resize_bilinear_forward",
                    "out", "(2, 3, *, *)", "(2, 4, 3, 4)", NULL);
    tu_expect_error("resize_bilinear_forward with 3-D in",
                    ap_resize_bilinear_forward(ctx, &bad_c, &v3), "resize_bilinear_forward",
                    "in", "(3, 7, 5)", NULL);
    tu_expect_error("resize_bilinear_backward with dout (2, 4, 3, 4) for din (2, 3, 7, 5)",
                    ap_resize_bilinear_backward(ctx, &in, &bad_c), "resize_bilinear_backward",
                    "dout", "(2, 4, 3, 4)", NULL);
    ap_tensor up_bad = ap_t4(buf, 2, 3, 14, 9);
    tu_expect_error("upsample_nearest2x_forward with out (2, 3, 14, 9)",
                    ap_upsample_nearest2x_forward(ctx, &up_bad, &in), "upsample_nearest2x_forward",
                    "out", "(2, 3, 14, 10)", "(2, 3, 14, 9)", NULL);
    tu_expect_error("upsample_nearest2x_backward with dout (2, 3, 14, 9)",
                    ap_upsample_nearest2x_backward(ctx, &in, &up_bad),
                    "upsample_nearest2x_backward", "dout", "(2, 3, 14, 10)", "(2, 3, 14, 9)",
                    NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_resize: nearest 2x upsample, bilinear resize\n");
    test_gradchecks(&ctx);
    test_goldens(&ctx);
    test_spec_ramp(&ctx);
    test_threads();
    test_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
