/* cuda_backend.cu: the CUDA backend's op table (ops/backend.h): memory
 * entries from cuda_memory.cu, op bodies from cuda_pointwise.cu,
 * cuda_reduce.cu, cuda_gemm.cu, cuda_conv.cu and cuda_attention.cu.
 * Entries left NULL ("OP: not available on the cuda backend"):
 *   attention_forward
 *   attention_backward
 *   conv2d_forward
 *   conv2d_backward
 *   linear_forward
 *   linear_backward
 *   matmul
 *   matmul_items
 * Scratch entries: an op with none takes no device scratch.
 */
#include "cuda_backend.h"
#include "cuda_common.h"
#include "cuda_ops.h"

extern "C" const ap_backend ap_cuda_backend = {
    .name = "cuda",
    .device = AP_CUDA,
    .alloc = ap_cu_alloc,
    .free = ap_cu_free,
    .copy = ap_cu_copy,
    .fill = ap_cu_fill,
    .sync = ap_cu_sync,
    .silu_forward = ap_cu_silu_forward,
    .silu_backward = ap_cu_silu_backward,
    .gelu_forward = ap_cu_gelu_forward,
    .gelu_backward = ap_cu_gelu_backward,
    .quick_gelu_forward = ap_cu_quick_gelu_forward,
    .quick_gelu_backward = ap_cu_quick_gelu_backward,
    .geglu_forward = ap_cu_geglu_forward,
    .geglu_backward = ap_cu_geglu_backward,
    .add_forward = ap_cu_add_forward,
    .add_backward = ap_cu_add_backward,
    .mul_forward = ap_cu_mul_forward,
    .mul_backward = ap_cu_mul_backward,
    .scale_forward = ap_cu_scale_forward,
    .scale_backward = ap_cu_scale_backward,
    .axpy = ap_cu_axpy,
    .concat_channels_forward = ap_cu_concat_channels_forward,
    .concat_channels_backward = ap_cu_concat_channels_backward,
    .add_channel_bias_forward = ap_cu_add_channel_bias_forward,
    .add_channel_bias_backward = ap_cu_add_channel_bias_backward,
    .nchw_to_nlc_forward = ap_cu_nchw_to_nlc_forward,
    .nchw_to_nlc_backward = ap_cu_nchw_to_nlc_backward,
    .nlc_to_nchw_forward = ap_cu_nlc_to_nchw_forward,
    .nlc_to_nchw_backward = ap_cu_nlc_to_nchw_backward,
    .group_norm_forward = ap_cu_group_norm_forward,
    .group_norm_backward = ap_cu_group_norm_backward,
    .layer_norm_forward = ap_cu_layer_norm_forward,
    .layer_norm_backward = ap_cu_layer_norm_backward,
    .upsample_nearest2x_forward = ap_cu_upsample_nearest2x_forward,
    .upsample_nearest2x_backward = ap_cu_upsample_nearest2x_backward,
    .resize_bilinear_forward = ap_cu_resize_bilinear_forward,
    .resize_bilinear_backward = ap_cu_resize_bilinear_backward,
    .softmax_forward = ap_cu_softmax_forward,
    .softmax_backward = ap_cu_softmax_backward,
    .timestep_embedding_forward = ap_cu_timestep_embedding_forward,
    .timestep_embedding_backward = ap_cu_timestep_embedding_backward,
    .ddim_update_forward = ap_cu_ddim_update_forward,
    .ddim_update_backward = ap_cu_ddim_update_backward,
    .guidance_forward = ap_cu_guidance_forward,
    .guidance_backward = ap_cu_guidance_backward,
    .tensor_read = ap_cu_tensor_read,
    .tensor_write = ap_cu_tensor_write,
    .gather_rows = ap_cu_gather_rows,
    .gather_rows_backward = ap_cu_gather_rows_backward,
    .sum_rows = ap_cu_sum_rows,
    .count_nonfinite = ap_cu_count_nonfinite,
    .add_broadcast_rows = ap_cu_add_broadcast_rows,
    .l2norm_forward = ap_cu_l2norm_forward,
    .l2norm_backward = ap_cu_l2norm_backward,
    .row_dot_forward = ap_cu_row_dot_forward,
    .row_dot_backward = ap_cu_row_dot_backward,
    .abs_diff_forward = ap_cu_abs_diff_forward,
    .abs_diff_backward = ap_cu_abs_diff_backward,
    .affine_forward = ap_cu_affine_forward,
    .divide_forward = ap_cu_divide_forward,
    .to_unit_range_forward = ap_cu_to_unit_range_forward,
    .to_unit_range_backward = ap_cu_to_unit_range_backward,
    .channel_normalize_forward = ap_cu_channel_normalize_forward,
    .channel_normalize_backward = ap_cu_channel_normalize_backward,
    .colourfulness_forward = ap_cu_colourfulness_forward,
    .colourfulness_backward = ap_cu_colourfulness_backward,
    .count_nonfinite_scratch = ap_cu_count_nonfinite_scratch,
};
