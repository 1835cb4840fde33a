/* image.c: argument checks of the pixel ops (image.h); the bodies are in
 * cpu/image.c.
 *
 * Accumulation rule: activation grads = (every output here).
 */
#include "ops/image.h"

#include "core/err.h"
#include "backend.h"

int ap_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x) {
    AP_TRY(ap_expect_same("to_unit_range_forward", "x", x, "out", out));
    AP_TRY(ap_expect_on(ctx, "to_unit_range_forward", "out", out, "x", x, NULL));
    return AP_DISPATCH(ctx, to_unit_range_forward, out, x);
}

int ap_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                              const ap_tensor *x) {
    AP_TRY(ap_expect_same("to_unit_range_backward", "x", x, "dout", dout));
    AP_TRY(ap_expect_same("to_unit_range_backward", "x", x, "dx", dx));
    AP_TRY(ap_expect_on(ctx, "to_unit_range_backward", "dx", dx, "dout", dout, "x", x, NULL));
    return AP_DISPATCH(ctx, to_unit_range_backward, dx, dout, x);
}

static int check_stats(const char *op, int need_mean, const float *mean, const float *std,
                       int64_t C) {
    if (!std || (need_mean && !mean))
        return ap_fail("%s: mean, std: expected %lld host floats each, found none", op,
                       (long long)C);
    for (int64_t c = 0; c < C; c++)
        if (!(std[c] != 0.0f))
            return ap_fail("%s: std[%lld]: expected a non-zero number, found %g", op, (long long)c,
                           (double)std[c]);
    return AP_OK;
}

int ap_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                 const float *mean, const float *std) {
    const char *op = "channel_normalize_forward";
    AP_TRY(ap_expect(op, "x", x, 4, (int64_t[]){-1, -1, -1, -1}));
    AP_TRY(ap_expect_same(op, "x", x, "out", out));
    AP_TRY(check_stats(op, 1, mean, std, x->shape[1]));
    AP_TRY(ap_expect_on(ctx, "channel_normalize_forward", "out", out, "x", x, NULL));
    return AP_DISPATCH(ctx, channel_normalize_forward, out, x, mean, std);
}

int ap_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                  const float *std) {
    const char *op = "channel_normalize_backward";
    AP_TRY(ap_expect(op, "dout", dout, 4, (int64_t[]){-1, -1, -1, -1}));
    AP_TRY(ap_expect_same(op, "dout", dout, "dx", dx));
    AP_TRY(check_stats(op, 0, NULL, std, dout->shape[1]));
    AP_TRY(ap_expect_on(ctx, "channel_normalize_backward", "dx", dx, "dout", dout, NULL));
    return AP_DISPATCH(ctx, channel_normalize_backward, dx, dout, std);
}

int ap_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image) {
    const char *op = "colourfulness_forward";
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    AP_TRY(ap_expect1(op, "out", out, image->shape[0]));
    AP_TRY(ap_expect_on(ctx, "colourfulness_forward", "out", out, "image", image, NULL));
    return AP_DISPATCH(ctx, colourfulness_forward, out, image);
}

int ap_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout,
                              const ap_tensor *image) {
    const char *op = "colourfulness_backward";
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    AP_TRY(ap_expect_same(op, "image", image, "dimage", dimage));
    AP_TRY(ap_expect1(op, "dout", dout, image->shape[0]));
    if (dimage->data == image->data) return ap_fail("%s: dimage: must not alias image", op);
    AP_TRY(ap_expect_on(ctx, "colourfulness_backward", "dimage", dimage, "dout", dout, "image", image, NULL));
    return AP_DISPATCH(ctx, colourfulness_backward, dimage, dout, image);
}
