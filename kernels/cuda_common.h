/* cuda_common.h: what every CUDA source of the backend shares: the checks of
 * CUDA, cuBLAS(Lt) and cuDNN calls (each failure names the call, and the
 * caller adds the op and shapes with ap_err_prefix), the per-process device
 * state behind a CUDA context, and the launch helpers. C-callable.
 *
 * Where the CUDA backend lives and why: kernels/ (docs/cuda.md). The sources
 * are nvcc-compiled C++ used as C with kernels: extern "C" entry points, no
 * classes, no exceptions, no templates except the head-size dispatch of the
 * attention kernels.
 */
#ifndef AP_CUDA_COMMON_H
#define AP_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_index.h"

#ifdef __cplusplus
extern "C" {
#endif
#include "core/ctx.h"
#include "core/err.h"
#include "core/tensor.h"
#include "ops/backend.h"
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records "FILE:LINE: CALL: cudaErrorName (message)" with ap_fail. Returns -1. */
int ap_cuda_fail(cudaError_t err, const char *call, const char *file, int line);
/* The same for a cuBLAS / cuBLASLt status and a cuDNN status (ints here so
 * this header needs neither library's header). */
int ap_cublas_fail(int status, const char *call, const char *file, int line);
int ap_cudnn_fail(int status, const char *call, const char *file, int line);

/* Device/driver description for logs, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)". */
int ap_cuda_describe(char *buf, int len);

/* The device state of this process (one GPU per rank, docs/cuda.md):
 * created by the first ap_cuda_ctx_init, shared by every CUDA context of the
 * process, released with the last ap_cuda_ctx_free. handles are void * so C
 * callers need no CUDA library headers. */
typedef struct ap_cuda_state {
    int device;        /* CUDA ordinal */
    cudaStream_t stream;
    void *lt;          /* cublasLtHandle_t */
    void *dnn;         /* cudnnHandle_t (bound to stream) */
    void *lt_ws;       /* cuBLASLt workspace, AP_CU_LT_WS_BYTES of device memory */
    int allow_tf32;    /* f32 GEMMs and convolutions may use TF32 tensor cores */
    int users;         /* contexts using it */
} ap_cuda_state;

#define AP_CU_LT_WS_BYTES ((size_t)32 << 20)

/* The process's state; NULL before ap_cuda_ctx_init. */
ap_cuda_state *ap_cuda_state_get(void);

/* Device scratch of the context (ap_scratch), NULL with an error. */
void *ap_cu_scratch(ap_ctx *ctx, size_t bytes, const char *what);

#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call)                                                       \
    do {                                                                       \
        cudaError_t err_ = (call);                                             \
        if (err_ != cudaSuccess)                                               \
            return ap_cuda_fail(err_, #call, __FILE__, __LINE__);              \
    } while (0)

#define CUBLAS_CHECK(call)                                                     \
    do {                                                                       \
        int st_ = (int)(call);                                                 \
        if (st_ != 0) return ap_cublas_fail(st_, #call, __FILE__, __LINE__);   \
    } while (0)

#define CUDNN_CHECK(call)                                                      \
    do {                                                                       \
        int st_ = (int)(call);                                                 \
        if (st_ != 0) return ap_cudnn_fail(st_, #call, __FILE__, __LINE__);    \
    } while (0)

/* After every launch: catches launch-configuration errors at once. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* Launches kernel<<<blocks for n, AP_CU_THREADS>>>(args) on the context's
 * stream (nothing for n = 0) and checks the launch, naming the calling op,
 * the kernel and n. */
#define AP_LAUNCH(ctx, kernel, n, ...)                                                     \
    do {                                                                                   \
        const int64_t n_ = (n);                                                            \
        if (n_ > 0) {                                                                      \
            kernel<<<ap_cu_blocks(n_), AP_CU_THREADS, 0, AP_STREAM(ctx)>>>(__VA_ARGS__);   \
            cudaError_t e_ = cudaGetLastError();                                           \
            if (e_ != cudaSuccess)                                                         \
                return ap_fail("%s: launch of %s over %lld elements: %s (%s)", __func__,   \
                               #kernel, (long long)n_, cudaGetErrorName(e_),               \
                               cudaGetErrorString(e_));                                    \
        }                                                                                  \
    } while (0)

/* The same for an explicit grid and block (row kernels). */
#define AP_LAUNCH_GRID(ctx, kernel, grid, block, what, ...)                                \
    do {                                                                                   \
        kernel<<<(grid), (block), 0, AP_STREAM(ctx)>>>(__VA_ARGS__);                       \
        cudaError_t e_ = cudaGetLastError();                                               \
        if (e_ != cudaSuccess)                                                             \
            return ap_fail("%s: launch of %s (%s): %s (%s)", __func__, #kernel, (what),    \
                           cudaGetErrorName(e_), cudaGetErrorString(e_));                  \
    } while (0)

/* Grid-stride loop over [0, n). */
#define AP_GRID_LOOP(i, n)                                                                 \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)gridDim.x * blockDim.x)

/* The context's stream. */
#define AP_STREAM(ctx) ((cudaStream_t)(ctx)->stream)

#endif
