/* cuda_ops.h: the CUDA bodies of the public ops (the entries of
 * ap_cuda_backend, kernels/cuda_backend.cu), with exactly the public ops'
 * signatures (ops/backend.h); they trust their arguments, which the public
 * ops in src/ops/ checked. Declared for every entry; an entry the backend
 * lacks is declared here but neither defined nor in the table (docs/cuda.md
 * lists them). */
#ifndef AP_CUDA_OPS_H
#define AP_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/ctx.h"
#include "core/tensor.h"
#include "ops/backend.h"

/* memory (cuda_memory.cu) */
void *ap_cu_alloc(ap_ctx *ctx, size_t bytes, const char *what);
void ap_cu_free(ap_ctx *ctx, void *p);
int ap_cu_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
int ap_cu_fill(ap_ctx *ctx, const ap_tensor *dst, float value);
int ap_cu_sync(ap_ctx *ctx);
/* dst (n elements of dt) = src (n of st) converted, on the device. */
int ap_cu_cast(ap_ctx *ctx, void *dst, ap_dtype dt, const void *src, ap_dtype st, int64_t n);

/* ops */
int ap_cu_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
int ap_cu_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int tanh_approx);
int ap_cu_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in, int tanh_approx);
int ap_cu_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
int ap_cu_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
int ap_cu_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
int ap_cu_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
int ap_cu_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
int ap_cu_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
int ap_cu_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cu_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
int ap_cu_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cu_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
int ap_cu_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
int ap_cu_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);
int ap_cu_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);
int ap_cu_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cu_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
int ap_cu_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *bias);
int ap_cu_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias, const ap_tensor *dout);
int ap_cu_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cu_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cu_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
int ap_cu_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
int ap_cu_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, int groups, float eps);
int ap_cu_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
int ap_cu_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, float eps);
int ap_cu_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
int ap_cu_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cu_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
int ap_cu_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *out);
int ap_cu_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
int ap_cu_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
int ap_cu_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int ta, int tb, float alpha, float beta);
int ap_cu_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int tb, float alpha, float beta);
int ap_cu_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise, const ap_ddim_scalars *c);
int ap_cu_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x, const ap_tensor *eps, const ap_ddim_scalars *c);
int ap_cu_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u, const ap_tensor *eps_c, float guidance);
int ap_cu_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c, const ap_tensor *deps, float guidance);
int ap_cu_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t);
int ap_cu_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host);
int ap_cu_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx, int m);
int ap_cu_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const int *idx, int m);
int ap_cu_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);
int ap_cu_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cu_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cu_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm, const ap_tensor *v, float eps);
int ap_cu_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du, const ap_tensor *u, const ap_tensor *norm, float eps);
int ap_cu_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
int ap_cu_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
int ap_cu_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
int ap_cu_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x, float target);
int ap_cu_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b);
int ap_cu_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);
int ap_cu_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
int ap_cu_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x);
int ap_cu_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, const float *mean, const float *std);
int ap_cu_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const float *std);
int ap_cu_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
int ap_cu_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout, const ap_tensor *image);
size_t ap_cu_copy_scratch(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
size_t ap_cu_fill_scratch(ap_ctx *ctx, const ap_tensor *dst, float value);
size_t ap_cu_silu_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_silu_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
size_t ap_cu_gelu_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int tanh_approx);
size_t ap_cu_gelu_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in, int tanh_approx);
size_t ap_cu_quick_gelu_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_quick_gelu_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
size_t ap_cu_geglu_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_geglu_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in);
size_t ap_cu_attention_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, int n_heads, float scale, int causal);
size_t ap_cu_attention_backward_scratch(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk, const ap_tensor *dv, const ap_tensor *dout, const ap_tensor *q, const ap_tensor *k, const ap_tensor *v, const ap_tensor *out, const ap_tensor *lse, int n_heads, float scale, int causal);
size_t ap_cu_conv2d_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b, int stride, int pad);
size_t ap_cu_conv2d_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride, int pad);
size_t ap_cu_add_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_add_backward_scratch(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
size_t ap_cu_mul_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_mul_backward_scratch(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_scale_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s);
size_t ap_cu_scale_backward_scratch(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s);
size_t ap_cu_axpy_scratch(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x);
size_t ap_cu_concat_channels_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_concat_channels_backward_scratch(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout);
size_t ap_cu_add_channel_bias_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *bias);
size_t ap_cu_add_channel_bias_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias, const ap_tensor *dout);
size_t ap_cu_nchw_to_nlc_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_nchw_to_nlc_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
size_t ap_cu_nlc_to_nchw_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_nlc_to_nchw_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
size_t ap_cu_linear_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w, const ap_tensor *b);
size_t ap_cu_linear_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w);
size_t ap_cu_group_norm_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, int groups, float eps);
size_t ap_cu_group_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma, int groups);
size_t ap_cu_layer_norm_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *in, const ap_tensor *gamma, const ap_tensor *beta, float eps);
size_t ap_cu_layer_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma, const ap_tensor *dbeta, const ap_tensor *dout, const ap_tensor *in, const ap_tensor *mean, const ap_tensor *rstd, const ap_tensor *gamma);
size_t ap_cu_upsample_nearest2x_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_upsample_nearest2x_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
size_t ap_cu_resize_bilinear_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_resize_bilinear_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout);
size_t ap_cu_softmax_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_softmax_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *out);
size_t ap_cu_timestep_embedding_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
size_t ap_cu_timestep_embedding_backward_scratch(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout, const ap_tensor *t, int flip_sin_to_cos, float downscale_freq_shift, float scale, int max_period);
size_t ap_cu_matmul_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int ta, int tb, float alpha, float beta);
size_t ap_cu_matmul_items_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int tb, float alpha, float beta);
size_t ap_cu_ddim_update_forward_scratch(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise, const ap_ddim_scalars *c);
size_t ap_cu_ddim_update_backward_scratch(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x, const ap_tensor *eps, const ap_ddim_scalars *c);
size_t ap_cu_guidance_forward_scratch(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u, const ap_tensor *eps_c, float guidance);
size_t ap_cu_guidance_backward_scratch(ap_ctx *ctx, const ap_tensor *deps_u, const ap_tensor *deps_c, const ap_tensor *deps, float guidance);
size_t ap_cu_tensor_read_scratch(ap_ctx *ctx, float *host, const ap_tensor *t);
size_t ap_cu_tensor_write_scratch(ap_ctx *ctx, const ap_tensor *t, const float *host);
size_t ap_cu_gather_rows_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx, int m);
size_t ap_cu_gather_rows_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const int *idx, int m);
size_t ap_cu_sum_rows_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);
size_t ap_cu_count_nonfinite_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
size_t ap_cu_add_broadcast_rows_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_l2norm_forward_scratch(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm, const ap_tensor *v, float eps);
size_t ap_cu_l2norm_backward_scratch(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du, const ap_tensor *u, const ap_tensor *norm, float eps);
size_t ap_cu_row_dot_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_row_dot_backward_scratch(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db, const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
size_t ap_cu_abs_diff_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
size_t ap_cu_abs_diff_backward_scratch(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x, float target);
size_t ap_cu_affine_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b);
size_t ap_cu_divide_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);
size_t ap_cu_to_unit_range_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
size_t ap_cu_to_unit_range_backward_scratch(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const ap_tensor *x);
size_t ap_cu_channel_normalize_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, const float *mean, const float *std);
size_t ap_cu_channel_normalize_backward_scratch(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout, const float *std);
size_t ap_cu_colourfulness_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
size_t ap_cu_colourfulness_backward_scratch(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout, const ap_tensor *image);

#ifdef __cplusplus
}
#endif

#endif
