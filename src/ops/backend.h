/* backend.h: a backend's op table, and how public ops reach it.
 *
 * A backend (after ggml's backend interface) is a struct of function
 * pointers: its name and device, memory (alloc/free, copy with cast between
 * devices and dtypes, fill, sync) and one entry per public op, forward and
 * backward, with exactly the public op's signature. ap_ctx.be points at the
 * table of the backend that runs the context's ops.
 *
 * Public ops in src/ops/ check their arguments (shape, dtype, and the
 * device against the context) and then call AP_DISPATCH, so every backend
 * gets validated arguments and a body never checks again. A NULL entry means
 * "not on this backend": the call fails naming the op and the backend. The
 * CPU table lives in src/cpu/backend.c with the CPU bodies beside it; a CUDA
 * table will sit in kernels/ behind the same struct.
 */
#ifndef AP_OPS_BACKEND_H
#define AP_OPS_BACKEND_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "ops/ddim_step.h" /* ap_ddim_scalars */

typedef struct ap_backend {
    const char *name;  /* "cpu", "cuda" */
    ap_device device;  /* where its tensors live */
    /* memory: bytes on the device (64-byte aligned on the CPU); NULL with an
     * error naming bytes and what when it cannot be had */
    void *(*alloc)(ap_ctx *ctx, size_t bytes, const char *what);
    void (*free)(ap_ctx *ctx, void *p);
    /* dst = src converted to dst's dtype; either may be on this backend's
     * device or on the CPU (host <-> device copies) */
    int (*copy)(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
    /* dst[...] = value (float32) */
    int (*fill)(ap_ctx *ctx, const ap_tensor *dst, float value);
    /* waits until every op queued on the context has finished */
    int (*sync)(ap_ctx *ctx);

    /* activation (ops/activation.h) */
    int (*silu_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*silu_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    int (*gelu_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int tanh_approx);
    int (*gelu_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in, int tanh_approx);
    int (*quick_gelu_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*quick_gelu_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    int (*geglu_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*geglu_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    /* attention (ops/attention.h) */
    int (*attention_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
    int (*attention_backward)(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
    /* conv2d (ops/conv2d.h) */
    int (*conv2d_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
    int (*conv2d_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
    /* elementwise (ops/elementwise.h) */
    int (*add_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    int (*add_backward)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
    int (*mul_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    int (*mul_backward)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
    int (*scale_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
    int (*scale_backward)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);
    int (*axpy)(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);
    int (*concat_channels_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    int (*concat_channels_backward)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
    int (*add_channel_bias_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *bias);
    int (*add_channel_bias_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias, const ap_tensor *dout);
    int (*nchw_to_nlc_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*nchw_to_nlc_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    int (*nlc_to_nchw_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*nlc_to_nchw_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    /* linear (ops/linear.h) */
    int (*linear_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
    int (*linear_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
    /* norm (ops/norm.h) */
    int (*group_norm_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, int groups, float eps);
    int (*group_norm_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
    int (*layer_norm_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, float eps);
    int (*layer_norm_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
    /* resize (ops/resize.h) */
    int (*upsample_nearest2x_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*upsample_nearest2x_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    int (*resize_bilinear_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*resize_bilinear_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    /* softmax (ops/softmax.h) */
    int (*softmax_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*softmax_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *out);
    /* timestep (ops/timestep.h) */
    int (*timestep_embedding_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
    int (*timestep_embedding_backward)(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
    /* matmul (ops/matmul.h) */
    int (*matmul)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int ta, int tb, float alpha, float beta);
    int (*matmul_items)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int tb, float alpha, float beta);
    /* ddim_step (ops/ddim_step.h) */
    int (*ddim_update_forward)(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise, const ap_ddim_scalars *c);
    int (*ddim_update_backward)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x, const ap_tensor *eps, const ap_ddim_scalars *c);
    int (*guidance_forward)(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u, const ap_tensor *eps_c, float guidance);
    int (*guidance_backward)(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c, const ap_tensor *deps, float guidance);
    /* rows (ops/rows.h) */
    int (*tensor_read)(ap_ctx *ctx, float *host, const ap_tensor *t);
    int (*tensor_write)(ap_ctx *ctx, const ap_tensor *t, const float *host);
    int (*gather_rows)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx, int m);
    int (*gather_rows_backward)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const int *idx, int m);
    int (*sum_rows)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);
    int (*count_nonfinite)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    int (*add_broadcast_rows)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    int (*l2norm_forward)(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm, const ap_tensor *v, float eps);
    int (*l2norm_backward)(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du, const ap_tensor *u, const ap_tensor *norm, float eps);
    int (*row_dot_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    int (*row_dot_backward)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
    int (*abs_diff_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
    int (*abs_diff_backward)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x, float target);
    int (*affine_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b);
    int (*divide_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);
    /* image (ops/image.h) */
    int (*to_unit_range_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
    int (*to_unit_range_backward)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x);
    int (*channel_normalize_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, const float *mean, const float *std);
    int (*channel_normalize_backward)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const float *std);
    int (*colourfulness_forward)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
    int (*colourfulness_backward)(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout, const ap_tensor *image);

    /* per-op scratch queries: the bytes of ctx scratch the op takes for these
     * arguments (NULL: none). A dry-run context calls these instead of the
     * ops (core/ctx.h), which is how workspaces are measured. */
    size_t (*copy_scratch)(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
    size_t (*fill_scratch)(ap_ctx *ctx, const ap_tensor *dst, float value);
    size_t (*silu_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*silu_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    size_t (*gelu_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int tanh_approx);
    size_t (*gelu_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in, int tanh_approx);
    size_t (*quick_gelu_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*quick_gelu_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    size_t (*geglu_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*geglu_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
    size_t (*attention_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
    size_t (*attention_backward_scratch)(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
    size_t (*conv2d_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
    size_t (*conv2d_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
    size_t (*add_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    size_t (*add_backward_scratch)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
    size_t (*mul_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    size_t (*mul_backward_scratch)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
    size_t (*scale_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
    size_t (*scale_backward_scratch)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);
    size_t (*axpy_scratch)(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);
    size_t (*concat_channels_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    size_t (*concat_channels_backward_scratch)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
    size_t (*add_channel_bias_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *bias);
    size_t (*add_channel_bias_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias, const ap_tensor *dout);
    size_t (*nchw_to_nlc_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*nchw_to_nlc_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    size_t (*nlc_to_nchw_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*nlc_to_nchw_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    size_t (*linear_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
    size_t (*linear_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
    size_t (*group_norm_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, int groups, float eps);
    size_t (*group_norm_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
    size_t (*layer_norm_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, float eps);
    size_t (*layer_norm_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
    size_t (*upsample_nearest2x_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*upsample_nearest2x_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    size_t (*resize_bilinear_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*resize_bilinear_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
    size_t (*softmax_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*softmax_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *out);
    size_t (*timestep_embedding_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
    size_t (*timestep_embedding_backward_scratch)(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
    size_t (*matmul_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int ta, int tb, float alpha, float beta);
    size_t (*matmul_items_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int tb, float alpha, float beta);
    size_t (*ddim_update_forward_scratch)(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise, const ap_ddim_scalars *c);
    size_t (*ddim_update_backward_scratch)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x, const ap_tensor *eps, const ap_ddim_scalars *c);
    size_t (*guidance_forward_scratch)(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u, const ap_tensor *eps_c, float guidance);
    size_t (*guidance_backward_scratch)(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c, const ap_tensor *deps, float guidance);
    size_t (*tensor_read_scratch)(ap_ctx *ctx, float *host, const ap_tensor *t);
    size_t (*tensor_write_scratch)(ap_ctx *ctx, const ap_tensor *t, const float *host);
    size_t (*gather_rows_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx, int m);
    size_t (*gather_rows_backward_scratch)(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const int *idx, int m);
    size_t (*sum_rows_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);
    size_t (*count_nonfinite_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
    size_t (*add_broadcast_rows_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    size_t (*l2norm_forward_scratch)(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm, const ap_tensor *v, float eps);
    size_t (*l2norm_backward_scratch)(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du, const ap_tensor *u, const ap_tensor *norm, float eps);
    size_t (*row_dot_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
    size_t (*row_dot_backward_scratch)(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
    size_t (*abs_diff_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
    size_t (*abs_diff_backward_scratch)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x, float target);
    size_t (*affine_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b);
    size_t (*divide_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);
    size_t (*to_unit_range_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
    size_t (*to_unit_range_backward_scratch)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x);
    size_t (*channel_normalize_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, const float *mean, const float *std);
    size_t (*channel_normalize_backward_scratch)(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const float *std);
    size_t (*colourfulness_forward_scratch)(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
    size_t (*colourfulness_backward_scratch)(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout, const ap_tensor *image);
} ap_backend;

/* Fails "OP: not available on the NAME backend". */
int ap_backend_lacks(const ap_ctx *ctx, const char *op);

/* Records a dry run's scratch request (ctx->scratch_peak) and returns AP_OK. */
int ap_dry_note(ap_ctx *ctx, size_t scratch_bytes);

/* Calls the context's entry for op with (ctx, args...), or fails naming op
 * and the backend when the backend lacks it. On a dry-run context the op
 * does no arithmetic and touches no tensor: only its scratch query runs. */
#define AP_DISPATCH(ctx, op, ...)                                                      \
    (!(ctx)->be || !(ctx)->be->op ? ap_backend_lacks((ctx), #op)                          \
     : (ctx)->dry_run ? ap_dry_note((ctx), (ctx)->be->op##_scratch                        \
                                               ? (ctx)->be->op##_scratch((ctx), __VA_ARGS__) \
                                               : 0)                                       \
                      : (ctx)->be->op((ctx), __VA_ARGS__))

/* Fails unless every present tensor of the NULL-terminated list of
 * ("name", const ap_tensor *) pairs is float32 and lives on the context's
 * device: "conv2d_forward: weight: expected f32 on cuda (the context's
 * backend), found (320, 4, 3, 3) f32 cpu". Absent tensors (NULL, no data)
 * are skipped: optional arguments are checked when given. */
int ap_expect_on(const ap_ctx *ctx, const char *op, ...);

/* Dtypes a frozen weight may have (linear, conv2d): f32, or bf16 / f16 kept
 * that way at load (mixed_precision) and widened by the backend on the fly. */
#define AP_WEIGHT_DTYPES (1u << AP_F32 | 1u << AP_BF16 | 1u << AP_F16)

/* A weight of any AP_WEIGHT_DTYPES on the context's device; when its dtype
 * is not f32 it is frozen, so a gradient for it (dw present) fails:
 * "conv2d_backward: dweight: the weight is bf16 (frozen, mixed precision):
 * no gradient; pass dweight NULL or keep the weight f32". */
int ap_expect_weight_on(const ap_ctx *ctx, const char *op, const ap_tensor *w,
                        const ap_tensor *dw);

#endif
