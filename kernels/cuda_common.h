/* cuda_common.h: error checks shared by every CUDA source (C-callable API). */
#ifndef AP_CUDA_COMMON_H
#define AP_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records "FILE:LINE: CALL: cudaErrorName (message)" with ap_fail. Returns -1. */
int ap_cuda_fail(cudaError_t err, const char *call, const char *file, int line);

/* Device/driver description for logs, e.g. "NVIDIA H100 80GB HBM3 (sm_90)". */
int ap_cuda_describe(char *buf, int len);

#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call)                                                       \
    do {                                                                       \
        cudaError_t err_ = (call);                                             \
        if (err_ != cudaSuccess)                                               \
            return ap_cuda_fail(err_, #call, __FILE__, __LINE__);              \
    } while (0)

/* After every launch: catches launch-configuration errors at once. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#endif
