/* resize.c: argument checks and dispatch of bilinear resize (antialias off)
 * and nearest 2x upsampling; the CPU bodies are in cpu/resize.c. */
#include "resize.h"

#include "backend.h"
#include "core/err.h"

static int bilinear_check(const char *op, const char *name_in, const ap_tensor *in,
                          const char *name_out, const ap_tensor *out) {
    AP_TRY(ap_expect4(op, name_in, in, -1, -1, -1, -1));
    AP_TRY(ap_expect4(op, name_out, out, in->shape[0], in->shape[1], -1, -1));
    return AP_OK;
}

int ap_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "resize_bilinear_forward";
    AP_TRY(bilinear_check(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, resize_bilinear_forward, out, in);
}

int ap_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    const char *op = "resize_bilinear_backward";
    AP_TRY(bilinear_check(op, "din", din, "dout", dout));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, NULL));
    return AP_DISPATCH(ctx, resize_bilinear_backward, din, dout);
}

int ap_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "upsample_nearest2x_forward";
    AP_TRY(ap_expect4(op, "in", in, -1, -1, -1, -1));
    AP_TRY(ap_expect4(op, "out", out, in->shape[0], in->shape[1], 2 * in->shape[2],
                      2 * in->shape[3]));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, upsample_nearest2x_forward, out, in);
}

int ap_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    const char *op = "upsample_nearest2x_backward";
    AP_TRY(ap_expect4(op, "din", din, -1, -1, -1, -1));
    AP_TRY(ap_expect4(op, "dout", dout, din->shape[0], din->shape[1], 2 * din->shape[2],
                      2 * din->shape[3]));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, NULL));
    return AP_DISPATCH(ctx, upsample_nearest2x_backward, din, dout);
}

void ap_resize_shorter_side(int H, int W, int size, int *Ho, int *Wo) {
    int shorter = W <= H ? W : H, longer = W <= H ? H : W;
    /* Python: int(size * long / short): exact int product, true division. */
    int new_long = (int)((double)((int64_t)size * longer) / (double)shorter);
    if (W <= H) {
        *Wo = size;
        *Ho = new_long;
    } else {
        *Ho = size;
        *Wo = new_long;
    }
}
