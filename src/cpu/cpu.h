/* cpu.h: the CPU backend's bodies of the public ops (src/ops/).
 *
 * Each ap_cpu_X has the signature of ap_X and its meaning; it runs after ap_X
 * has checked the arguments, so it trusts them. Kernels are written once per
 * instruction-set variant (core/isa.h) and picked by ctx->isa.
 */
#ifndef AP_CPU_H
#define AP_CPU_H

#include "core/ctx.h"
#include "core/tensor.h"

extern const struct ap_backend ap_cpu_backend;
/* Sets up what the CPU ops rely on (single-threaded BLAS: ops split work
 * across their own threads). Called by ap_ctx_init. */
int ap_cpu_backend_init(ap_ctx *ctx);

/* memory (backend.c) */
int ap_cpu_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
int ap_cpu_fill(ap_ctx *ctx, const ap_tensor *dst, float value);

/* activation.c */
int ap_cpu_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
int ap_cpu_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int tanh_approx);
int ap_cpu_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in, int tanh_approx);
int ap_cpu_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
int ap_cpu_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
/* attention.c */
int ap_cpu_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
int ap_cpu_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
/* conv2d.c */
int ap_cpu_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
int ap_cpu_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
/* elementwise.c */
int ap_cpu_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cpu_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
int ap_cpu_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cpu_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
int ap_cpu_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
int ap_cpu_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);
int ap_cpu_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);
int ap_cpu_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cpu_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
int ap_cpu_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *bias);
int ap_cpu_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias, const ap_tensor *dout);
int ap_cpu_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cpu_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
/* linear.c */
int ap_cpu_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
int ap_cpu_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
/* norm.c */
int ap_cpu_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, int groups, float eps);
int ap_cpu_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
int ap_cpu_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, float eps);
int ap_cpu_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
/* resize.c */
int ap_cpu_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cpu_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
/* softmax.c */
int ap_cpu_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *out);
/* timestep.c */
int ap_cpu_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
int ap_cpu_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);

/* scratch queries (the table's *_scratch entries; ops not listed take none) */
size_t ap_cpu_linear_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
size_t ap_cpu_linear_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
size_t ap_cpu_attention_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
size_t ap_cpu_attention_backward_scratch(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
size_t ap_cpu_conv2d_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
size_t ap_cpu_conv2d_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
size_t ap_cpu_group_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
size_t ap_cpu_layer_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
size_t ap_cpu_resize_bilinear_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cpu_resize_bilinear_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);

#endif
