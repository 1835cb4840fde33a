/* timestep.c: argument checks and dispatch of the sinusoidal timestep
 * embedding; the CPU body is in cpu/timestep.c. */
#include "timestep.h"

#include "backend.h"
#include "core/err.h"

/* The frequency plan's conditions (cpu/timestep.c divides by half - shift). */
static int check_plan(const char *op, int64_t dim, float shift, int max_period) {
    if (max_period <= 0) return ap_fail("%s: max_period must be > 0, found %d", op, max_period);
    const int half = (int)(dim / 2);
    if (half > 0 && (float)((double)half - (double)shift) == 0.0f)
        return ap_fail("%s: half_dim %d - downscale_freq_shift %g is 0 (division by zero)", op,
                       half, (double)shift);
    return AP_OK;
}

int ap_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t,
                                  int flip_sin_to_cos, float downscale_freq_shift,
                                  float scale, int max_period) {
    const char *op = "timestep_embedding_forward";
    AP_TRY(ap_expect1(op, "t", t, -1));
    AP_TRY(ap_expect2(op, "out", out, t->shape[0], -1));
    AP_TRY(check_plan(op, out->shape[1], downscale_freq_shift, max_period));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "t", t, NULL));
    return AP_DISPATCH(ctx, timestep_embedding_forward, out, t, flip_sin_to_cos,
                       downscale_freq_shift, scale, max_period);
}

int ap_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout,
                                   const ap_tensor *t, int flip_sin_to_cos,
                                   float downscale_freq_shift, float scale, int max_period) {
    const char *op = "timestep_embedding_backward";
    AP_TRY(ap_expect1(op, "t", t, -1));
    AP_TRY(ap_expect1(op, "dt", dt, t->shape[0]));
    AP_TRY(ap_expect2(op, "dout", dout, t->shape[0], -1));
    AP_TRY(check_plan(op, dout->shape[1], downscale_freq_shift, max_period));
    AP_TRY(ap_expect_on(ctx, op, "dt", dt, "dout", dout, "t", t, NULL));
    return AP_DISPATCH(ctx, timestep_embedding_backward, dt, dout, t, flip_sin_to_cos,
                       downscale_freq_shift, scale, max_period);
}
