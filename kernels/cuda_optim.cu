/* cuda_optim.cu: AdamW and the gradient norm on the device (cuda_optim.h).
 * The per-element update is ap_cu_adamw_elem (cuda_index.h), which the CPU
 * test checks bit for bit against train/adamw.c; the norm sums squares in
 * double in a fixed two-pass order (deterministic; equal to the CPU's
 * index-order sum up to double rounding). */
#include "cuda_common.h"
#include "cuda_optim.h"

__global__ void adamw_kernel(ap_cu_adamw_k k, float *param, const float *grad, float *m, float *v,
                             int64_t n) {
    AP_GRID_LOOP(i, n) {
        float p = param[i], mi = m[i], vi = v[i];
        ap_cu_adamw_elem(&k, &p, &mi, &vi, grad[i]);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" int ap_cuda_adamw_step(ap_ctx *ctx, int64_t t, double lr, double beta1, double beta2,
                                  double eps, double weight_decay, float *param, const float *grad,
                                  float *m, float *v, int64_t n) {
    const ap_cu_adamw_k k = ap_cu_adamw_scalars(lr, beta1, beta2, eps, weight_decay, t);
    AP_LAUNCH(ctx, adamw_kernel, n, k, param, grad, m, v, n);
    return AP_OK;
}

/* Pass 1: block b sums squares of its grid-stride share into part[b]. */
__global__ void sumsq_kernel(double *part, const float *g, int64_t n) {
    __shared__ double sh[256];
    double s = 0;
    AP_GRID_LOOP(i, n) s += (double)g[i] * (double)g[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

/* Pass 2: one thread sums the partials in block order. */
__global__ void sum_parts_kernel(double *out, const double *part, int nb) {
    double s = 0;
    for (int b = 0; b < nb; b++) s += part[b];
    *out = s;
}

__global__ void scale_kernel(float *g, float c, int64_t n) {
    AP_GRID_LOOP(i, n) g[i] = __fmul_rn(g[i], c);
}

extern "C" int ap_cuda_grad_norm(ap_ctx *ctx, const float *g, int64_t n, double *norm) {
    double *part = (double *)ap_cu_scratch(ctx, 64 + 8 * AP_CU_NORM_BLOCKS, "gradient norm");
    if (!part) return AP_ERR;
    double *total = part + AP_CU_NORM_BLOCKS;
    AP_LAUNCH_GRID(ctx, sumsq_kernel, AP_CU_NORM_BLOCKS, 256, "gradient norm pass 1", part, g, n);
    AP_LAUNCH_GRID(ctx, sum_parts_kernel, 1, 1, "gradient norm pass 2", total, part,
                   AP_CU_NORM_BLOCKS);
    double s = 0;
    CUDA_CHECK(cudaMemcpyAsync(&s, total, sizeof s, cudaMemcpyDeviceToHost, AP_STREAM(ctx)));
    CUDA_CHECK(cudaStreamSynchronize(AP_STREAM(ctx)));
    *norm = sqrt(s);
    return AP_OK;
}

extern "C" int ap_cuda_clip_grad_norm(ap_ctx *ctx, float *g, int64_t n, double max_norm,
                                      double *norm) {
    AP_TRY(ap_cuda_grad_norm(ctx, g, n, norm));
    const double coef = max_norm / (*norm + 1e-6);
    if (coef < 1.0) AP_LAUNCH(ctx, scale_kernel, n, g, (float)coef, n);
    return AP_OK;
}
