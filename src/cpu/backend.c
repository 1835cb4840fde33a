/* backend.c: the CPU backend's op table and its memory functions.
 *
 * Memory is host memory (64-byte aligned); copy converts between F32, F16 and
 * BF16 (BF16 and F16 from F32 round to nearest even, as PyTorch's .to()). */
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "core/err.h"
#include "cpu.h"
#include "ddim_step.h"
#include "image.h"
#include "matmul.h"
#include "rows.h"
#include "io/dtype.h"
#include "ops/backend.h"

int ap_cpu_backend_init(ap_ctx *ctx) {
    (void)ctx;
    ap_blas_single_thread();
    return AP_OK;
}

static void *cpu_alloc(ap_ctx *ctx, size_t bytes, const char *what) {
    (void)ctx;
    void *p = NULL;
    if (posix_memalign(&p, 64, ap_align64(bytes ? bytes : 1)) != 0) {
        ap_fail("out of memory: %zu bytes for %s", bytes, what);
        return NULL;
    }
    return p;
}

static void cpu_free(ap_ctx *ctx, void *p) {
    (void)ctx;
    free(p);
}

static int cpu_sync(ap_ctx *ctx) {
    (void)ctx;
    return AP_OK;
}


static float load(const void *p, ap_dtype dt, int64_t i) {
    switch (dt) {
    case AP_BF16: return ap_bf16_to_f32(((const uint16_t *)p)[i]);
    case AP_F16: return ap_f16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static void store(void *p, ap_dtype dt, int64_t i, float v) {
    switch (dt) {
    case AP_BF16: ((uint16_t *)p)[i] = ap_f32_to_bf16(v); break;
    case AP_F16: ((uint16_t *)p)[i] = ap_f32_to_f16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

int ap_cpu_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src) {
    const int64_t n = ap_numel(src);
    if (dst->dtype == src->dtype) {
        if (dst->data != src->data) memmove(dst->data, src->data, ap_nbytes(src));
        return AP_OK;
    }
    void *d = dst->data;
    const void *s = src->data;
    const ap_dtype dt = dst->dtype, st = src->dtype;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) store(d, dt, i, load(s, st, i));
    return AP_OK;
}

int ap_cpu_fill(ap_ctx *ctx, const ap_tensor *dst, float value) {
    const int64_t n = ap_numel(dst);
    void *d = dst->data;
    const ap_dtype dt = dst->dtype;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) store(d, dt, i, value);
    return AP_OK;
}

const ap_backend ap_cpu_backend = {
    .name = "cpu",
    .device = AP_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = ap_cpu_copy,
    .fill = ap_cpu_fill,
    .sync = cpu_sync,
    .silu_forward = ap_cpu_silu_forward,
    .silu_backward = ap_cpu_silu_backward,
    .gelu_forward = ap_cpu_gelu_forward,
    .gelu_backward = ap_cpu_gelu_backward,
    .quick_gelu_forward = ap_cpu_quick_gelu_forward,
    .quick_gelu_backward = ap_cpu_quick_gelu_backward,
    .geglu_forward = ap_cpu_geglu_forward,
    .geglu_backward = ap_cpu_geglu_backward,
    .attention_forward = ap_cpu_attention_forward,
    .attention_backward = ap_cpu_attention_backward,
    .conv2d_forward = ap_cpu_conv2d_forward,
    .conv2d_backward = ap_cpu_conv2d_backward,
    .add_forward = ap_cpu_add_forward,
    .add_backward = ap_cpu_add_backward,
    .mul_forward = ap_cpu_mul_forward,
    .mul_backward = ap_cpu_mul_backward,
    .scale_forward = ap_cpu_scale_forward,
    .scale_backward = ap_cpu_scale_backward,
    .axpy = ap_cpu_axpy,
    .concat_channels_forward = ap_cpu_concat_channels_forward,
    .concat_channels_backward = ap_cpu_concat_channels_backward,
    .add_channel_bias_forward = ap_cpu_add_channel_bias_forward,
    .add_channel_bias_backward = ap_cpu_add_channel_bias_backward,
    .nchw_to_nlc_forward = ap_cpu_nchw_to_nlc_forward,
    .nchw_to_nlc_backward = ap_cpu_nchw_to_nlc_backward,
    .nlc_to_nchw_forward = ap_cpu_nlc_to_nchw_forward,
    .nlc_to_nchw_backward = ap_cpu_nlc_to_nchw_backward,
    .linear_forward = ap_cpu_linear_forward,
    .linear_backward = ap_cpu_linear_backward,
    .group_norm_forward = ap_cpu_group_norm_forward,
    .group_norm_backward = ap_cpu_group_norm_backward,
    .layer_norm_forward = ap_cpu_layer_norm_forward,
    .layer_norm_backward = ap_cpu_layer_norm_backward,
    .upsample_nearest2x_forward = ap_cpu_upsample_nearest2x_forward,
    .upsample_nearest2x_backward = ap_cpu_upsample_nearest2x_backward,
    .resize_bilinear_forward = ap_cpu_resize_bilinear_forward,
    .resize_bilinear_backward = ap_cpu_resize_bilinear_backward,
    .softmax_forward = ap_cpu_softmax_forward,
    .softmax_backward = ap_cpu_softmax_backward,
    .timestep_embedding_forward = ap_cpu_timestep_embedding_forward,
    .timestep_embedding_backward = ap_cpu_timestep_embedding_backward,
    .linear_forward_scratch = ap_cpu_linear_forward_scratch,
    .matmul_scratch = ap_cpu_matmul_scratch,
    .matmul_items_scratch = ap_cpu_matmul_items_scratch,
    .linear_backward_scratch = ap_cpu_linear_backward_scratch,
    .attention_forward_scratch = ap_cpu_attention_forward_scratch,
    .attention_backward_scratch = ap_cpu_attention_backward_scratch,
    .conv2d_forward_scratch = ap_cpu_conv2d_forward_scratch,
    .conv2d_backward_scratch = ap_cpu_conv2d_backward_scratch,
    .group_norm_backward_scratch = ap_cpu_group_norm_backward_scratch,
    .layer_norm_backward_scratch = ap_cpu_layer_norm_backward_scratch,
    .resize_bilinear_forward_scratch = ap_cpu_resize_bilinear_forward_scratch,
    .resize_bilinear_backward_scratch = ap_cpu_resize_bilinear_backward_scratch,
    .matmul = ap_cpu_matmul,
    .matmul_items = ap_cpu_matmul_items,
    .ddim_update_forward = ap_cpu_ddim_update_forward,
    .ddim_update_backward = ap_cpu_ddim_update_backward,
    .guidance_forward = ap_cpu_guidance_forward,
    .guidance_backward = ap_cpu_guidance_backward,
    .tensor_read = ap_cpu_tensor_read,
    .tensor_write = ap_cpu_tensor_write,
    .gather_rows = ap_cpu_gather_rows,
    .gather_rows_backward = ap_cpu_gather_rows_backward,
    .sum_rows = ap_cpu_sum_rows,
    .count_nonfinite = ap_cpu_count_nonfinite,
    .add_broadcast_rows = ap_cpu_add_broadcast_rows,
    .l2norm_forward = ap_cpu_l2norm_forward,
    .l2norm_backward = ap_cpu_l2norm_backward,
    .row_dot_forward = ap_cpu_row_dot_forward,
    .row_dot_backward = ap_cpu_row_dot_backward,
    .abs_diff_forward = ap_cpu_abs_diff_forward,
    .abs_diff_backward = ap_cpu_abs_diff_backward,
    .affine_forward = ap_cpu_affine_forward,
    .divide_forward = ap_cpu_divide_forward,
    .to_unit_range_forward = ap_cpu_to_unit_range_forward,
    .to_unit_range_backward = ap_cpu_to_unit_range_backward,
    .channel_normalize_forward = ap_cpu_channel_normalize_forward,
    .channel_normalize_backward = ap_cpu_channel_normalize_backward,
    .colourfulness_forward = ap_cpu_colourfulness_forward,
    .colourfulness_backward = ap_cpu_colourfulness_backward,
};
