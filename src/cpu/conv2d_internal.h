/* conv2d_internal.h: what cpu/conv2d.c and cpu/conv2d_winograd.c share:
 * the dims of a validated call, the path modes and the Winograd entry points. */
#ifndef AP_CPU_CONV2D_INTERNAL_H
#define AP_CPU_CONV2D_INTERNAL_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/isa.h"
#include "ops/conv2d.h"

typedef struct {
    int B, C, H, W;  /* input (B, C, H, W) */
    int O, kh, kw;   /* weight (O, C, kh, kw) */
    int s, ph, pw;   /* stride, pad along H and W (equal for the public API) */
    int Ho, Wo;      /* output (B, O, Ho, Wo) */
    int K;           /* C * kh * kw: GEMM depth, rows of col */
    int rows;        /* output rows per chunk */
    int direct;      /* 1x1 / s1 / p0: no im2col */
    ap_isa isa;      /* the context's kernel variant (pack callbacks) */
    ap_dtype wdt;    /* the weight's dtype: f32, or bf16 / f16 widened on the fly */
} conv_dims;

/* Path modes (the "pg" argument below): */
enum {
    PG_OFF = 0,   /* im2col + BLAS (generic variant, or AP_CONV2D_BLAS=1) */
    PG_DIRECT,    /* packed GEMM, im2col gathered (AP_CONV2D_DIRECT=1) */
    PG_WINO,      /* packed GEMM, Winograd where wg_eligible (default) */
    PG_WINO_ALL,  /* Winograd for every 3x3/s1/p1 conv (AP_CONV2D_WINOGRAD=1) */
};

/* Winograd output tiles (2x2) along H and W. */
static inline int wg_tiles_h(const conv_dims *d) { return (d->Ho + 1) / 2; }
static inline int wg_tiles_w(const conv_dims *d) { return (d->Wo + 1) / 2; }

/* Scratch floats ap_wg_run needs for d. */
size_t ap_wg_floats(const conv_dims *d);
/* out (B, O, Ho, Wo) = conv3x3/s1/p1(xs, w (O, C*9)) (+ bias), w of dtype
 * d->wdt (widened as it is transformed); scr holds ap_wg_floats(d) floats.
 * Packed-GEMM variants only (PG_HAVE). */
void ap_wg_run(const ap_ctx *ctx, const conv_dims *d, const float *xs, const void *w,
               const float *bias, float *out, float *scr);

#endif
