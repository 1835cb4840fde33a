/* cuda_optim.h: AdamW and the gradient norm on the device, the CUDA
 * counterparts of train/adamw.h (same arithmetic; docs/cuda.md). Not ops of
 * the table: the training loop calls these on its flat device buffers of
 * LoRA parameters, gradients and moments when the backend is cuda. */
#ifndef AP_CUDA_OPTIM_H
#define AP_CUDA_OPTIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/ctx.h"

/* One AdamW step t (1 for the first) over n elements of device buffers:
 * train/adamw.h's update, bit for bit. */
int ap_cuda_adamw_step(ap_ctx *ctx, int64_t t, double lr, double beta1, double beta2, double eps,
                       double weight_decay, float *param, const float *grad, float *m, float *v,
                       int64_t n);
/* ||g||_2 of n device floats into *norm, summed in double in a fixed order
 * (AP_CU_NORM_BLOCKS partial sums, then one block); synchronises. Takes
 * 64 + 8 * AP_CU_NORM_BLOCKS bytes of ctx scratch. */
int ap_cuda_grad_norm(ap_ctx *ctx, const float *g, int64_t n, double *norm);
/* clip_grad_norm_: *norm = ||g||_2 before clipping; g *= (float)(max_norm /
 * (norm + 1e-6)) when that is below 1. */
int ap_cuda_clip_grad_norm(ap_ctx *ctx, float *g, int64_t n, double max_norm, double *norm);

#ifdef __cplusplus
}
#endif

#endif
