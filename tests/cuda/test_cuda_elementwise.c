/* test_cuda_elementwise.c: the CUDA elementwise kernels against the CPU
 * reference ops, op by op. Skips (exit 77, with the reason) without a GPU. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "elementwise_cu.h"
#include "ops/activation.h"
#include "testutil.h"

#define N 100003 /* odd, spans several blocks */

static float *to_dev(const float *h, int64_t n) {
    float *d = NULL;
    if (cudaMalloc((void **)&d, (size_t)n * 4) != cudaSuccess) return NULL;
    cudaMemcpy(d, h, (size_t)n * 4, cudaMemcpyHostToDevice);
    return d;
}

static void from_dev(float *h, const float *d, int64_t n) {
    cudaMemcpy(h, d, (size_t)n * 4, cudaMemcpyDeviceToHost);
}

int main(void) {
    printf("test_cuda_elementwise: CUDA kernels vs the CPU reference\n");
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return tu_skip("no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    float *x = tu_alloc(N), *dy = tu_alloc(N), *ref = tu_alloc(N), *got = tu_alloc(N);
    tu_fill_uniform(x, N, 1, -8, 8);
    tu_fill_uniform(dy, N, 2, -1, 1);
    float *dx = to_dev(x, N), *ddy = to_dev(dy, N), *dout = to_dev(x, N);
    if (!tu_check(dx && ddy && dout, "cudaMalloc of 3 x %d floats", N)) return tu_exit();

    ap_tensor tx = ap_t1(x, N), tdy = ap_t1(dy, N), tref = ap_t1(ref, N);
    /* expf on the GPU differs from glibc's by a few ulp: 1e-6 relative. */
    ap_silu_forward(&ctx, &tref, &tx);
    tu_check(ap_cu_silu_forward(dout, dx, N, NULL) == 0 && cudaDeviceSynchronize() == cudaSuccess,
             "silu_forward launch");
    from_dev(got, dout, N);
    tu_compare("silu forward cuda vs cpu", got, ref, N, 1e-6, 1e-5);
    ap_silu_backward(&ctx, &tref, &tdy, &tx);
    tu_check(ap_cu_silu_backward(dout, ddy, dx, N, NULL) == 0 && cudaDeviceSynchronize() == cudaSuccess,
             "silu_backward launch");
    from_dev(got, dout, N);
    tu_compare("silu backward cuda vs cpu", got, ref, N, 1e-6, 1e-5);
    for (int i = 0; i < N; i++) ref[i] = x[i] + dy[i];
    ap_cu_add(dout, dx, ddy, N, NULL);
    from_dev(got, dout, N);
    tu_compare("add cuda vs cpu (exact)", got, ref, N, 0, 0);
    cudaFree(dx);
    cudaFree(ddy);
    cudaFree(dout);
    free(x), free(dy), free(ref), free(got);
    ap_ctx_free(&ctx);
    return tu_exit();
}
