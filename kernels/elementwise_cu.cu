/* elementwise_cu.cu: elementwise kernels (grid-stride loops). */
#include "cuda_common.h"
#include "elementwise_cu.h"

static int blocks_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (int)(b > 65535 ? 65535 : (b < 1 ? 1 : b));
}

__global__ void add_kernel(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float *out, const float *a, float s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] * s;
}

__global__ void silu_forward_kernel(float *out, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = in[i];
        out[i] = x / (1.0f + expf(-x));
    }
}

__global__ void silu_backward_kernel(float *din, const float *dout, const float *in,
                                     int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = in[i];
        float s = 1.0f / (1.0f + expf(-x));
        din[i] = dout[i] * s * (1.0f + x * (1.0f - s));
    }
}

extern "C" int ap_cu_add(float *out, const float *a, const float *b, int64_t n,
                         void *stream) {
    add_kernel<<<blocks_for(n), 256, 0, (cudaStream_t)stream>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int ap_cu_scale(float *out, const float *a, float s, int64_t n,
                           void *stream) {
    scale_kernel<<<blocks_for(n), 256, 0, (cudaStream_t)stream>>>(out, a, s, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int ap_cu_silu_forward(float *out, const float *in, int64_t n,
                                  void *stream) {
    silu_forward_kernel<<<blocks_for(n), 256, 0, (cudaStream_t)stream>>>(out, in, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int ap_cu_silu_backward(float *din, const float *dout, const float *in,
                                   int64_t n, void *stream) {
    silu_backward_kernel<<<blocks_for(n), 256, 0, (cudaStream_t)stream>>>(din, dout,
                                                                          in, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
