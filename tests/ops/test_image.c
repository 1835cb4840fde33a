/* test_image.c: the pixel ops (ops/image.h): the [-1, 1] -> [0, 1] clamp
 * and the per-channel Normalize, backward against central differences of
 * the forward (points away from the clamp's kinks), clamped points' zero
 * gradient, in-place forms bit for bit, argument errors; the demo reward's
 * colourfulness by central differences. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/image.h"
#include "testutil.h"

enum { B = 2, C = 3, H = 3, W = 4, N = B * C * H * W };

static const float mean[C] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float stdv[C] = {0.26862954f, 0.26130258f, 0.27577711f};

typedef struct {
    ap_ctx *ctx;
    int normalize;
    ap_tensor x, out;
    const float *proj;
} img_case;

static double loss(void *p) {
    img_case *c = p;
    if (c->normalize) ap_channel_normalize_forward(c->ctx, &c->out, &c->x, mean, stdv);
    else ap_to_unit_range_forward(c->ctx, &c->out, &c->x);
    return tu_dot(c->out.data, c->proj, N);
}

static void gradcheck(ap_ctx *ctx, int normalize) {
    float x[N], out[N], proj[N], dx[N];
    tu_fill_uniform(x, N, 101, -1.6f, 1.6f);
    tu_fill_uniform(proj, N, 102, -1, 1);
    for (int i = 0; i < N; i++) /* away from the clamp's kinks at +-1 */
        if (fabsf(fabsf(x[i]) - 1.0f) < 0.05f) x[i] *= 0.9f;
    img_case c = {ctx, normalize, ap_t4(x, B, C, H, W), ap_t4(out, B, C, H, W), proj};
    ap_tensor tdx = ap_t4(dx, B, C, H, W), tp = ap_t4(proj, B, C, H, W);
    int rc = normalize ? ap_channel_normalize_backward(ctx, &tdx, &tp, stdv)
                       : ap_to_unit_range_backward(ctx, &tdx, &tp, &c.x);
    const char *what = normalize ? "channel_normalize (2, 3, 3, 4)" : "to_unit_range (2, 3, 3, 4)";
    tu_check(rc == 0, "%s backward runs%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    if (!normalize) {
        int z = 0;
        for (int i = 0; i < N; i++) z += dx[i] == 0;
        tu_check(z > 0 && z < N, "%s: %d of %d points clamped (both sides tested)", what, z, N);
    }
    /* linear (piecewise): central differences exact up to fp32 rounding,
     * 1e-3 * max(1, max|ana|) */
    char name[96];
    snprintf(name, sizeof name, "%s d(x)", what);
    tu_gradcheck(name, loss, &c, x, N, dx, 1e-2, 1e-3, N);
}

static void in_place(ap_ctx *ctx) {
    float x[N], a[N], b[N];
    tu_fill_uniform(x, N, 103, -1.5f, 1.5f);
    ap_tensor tx = ap_t4(x, B, C, H, W), ta = ap_t4(a, B, C, H, W), tb = ap_t4(b, B, C, H, W);
    memcpy(b, x, sizeof x);
    int rc = ap_channel_normalize_forward(ctx, &ta, &tx, mean, stdv);
    rc |= ap_channel_normalize_forward(ctx, &tb, &tb, mean, stdv);
    int ok = rc == 0 && !memcmp(a, b, sizeof a);
    for (int i = 0; i < N && ok; i++) ok = a[i] == (x[i] - mean[(i / (H * W)) % C]) / stdv[(i / (H * W)) % C];
    tu_check(ok, "channel_normalize: (x - mean[c]) / std[c] bit for bit, in place the same");
    memcpy(b, x, sizeof x);
    rc = ap_to_unit_range_forward(ctx, &ta, &tx);
    rc |= ap_to_unit_range_forward(ctx, &tb, &tb);
    tu_check(rc == 0 && !memcmp(a, b, sizeof a), "to_unit_range in place: the same bits");
}

static void errors(ap_ctx *ctx) {
    float buf[N];
    ap_tensor x = ap_t4(buf, B, C, H, W), y = ap_t4(buf, B, C, H, 3);
    tu_expect_error("to_unit_range shapes", ap_to_unit_range_forward(ctx, &y, &x),
                    "to_unit_range_forward", "out", "(2, 3, 3, 3)", NULL);
    tu_expect_error("normalize without mean", ap_channel_normalize_forward(ctx, &x, &x, NULL, stdv),
                    "channel_normalize_forward", "mean, std", NULL);
    const float zero[C] = {1, 0, 1};
    tu_expect_error("normalize std 0", ap_channel_normalize_backward(ctx, &x, &x, zero),
                    "channel_normalize_backward", "std[1]", "non-zero", NULL);
}

typedef struct {
    ap_ctx *ctx;
    ap_tensor img, out;
    const float *proj;
} colour_case;

static double colour_loss(void *p) {
    colour_case *c = p;
    ap_colourfulness_forward(c->ctx, &c->out, &c->img);
    return tu_dot(c->out.data, c->proj, B);
}

static void colourfulness(ap_ctx *ctx) {
    float img[N], out[B], proj[B] = {0.7f, -1.3f}, d[N];
    tu_fill_uniform(img, N, 104, -0.9f, 0.9f);
    colour_case c = {ctx, ap_t4(img, B, C, H, W), ap_t1(out, B), proj};
    ap_tensor td = ap_t4(d, B, C, H, W), tp = ap_t1(proj, B);
    int rc = ap_colourfulness_forward(ctx, &c.out, &c.img);
    rc |= ap_colourfulness_backward(ctx, &td, &tp, &c.img);
    tu_check(rc == 0 && out[0] > 0 && out[1] > 0, "colourfulness (2, 3, 3, 4): %g, %g", out[0],
             out[1]);
    /* smooth (sqrt of positive variances): eps 1e-3 in float, 2e-3 relative */
    tu_gradcheck("colourfulness d(image)", colour_loss, &c, img, N, d, 1e-3, 2e-3, N);
    tu_expect_error("colourfulness dout shape", ap_colourfulness_backward(ctx, &td, &c.out, &c.out),
                    "colourfulness_backward", "image", NULL);
}

int main(void) {
    printf("test_image: pixel range clamp and per-channel normalisation\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 2);
    gradcheck(&ctx, 0);
    gradcheck(&ctx, 1);
    in_place(&ctx);
    colourfulness(&ctx);
    errors(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
