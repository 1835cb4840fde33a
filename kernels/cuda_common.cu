/* cuda_common.cu: CUDA, cuBLAS and cuDNN error reporting through the
 * project's error channel (core/err.h). */
#include <cublasLt.h>
#include <cudnn.h>

#include "cuda_common.h"

extern "C" {
#include "core/err.h"
}

extern "C" int ap_cuda_fail(cudaError_t err, const char *call, const char *file, int line) {
    return ap_fail("%s:%d: %s: %s (%s)", file, line, call, cudaGetErrorName(err),
                   cudaGetErrorString(err));
}

extern "C" int ap_cublas_fail(int status, const char *call, const char *file, int line) {
    return ap_fail("%s:%d: %s: cuBLAS status %d (%s)", file, line, call, status,
                   cublasGetStatusString((cublasStatus_t)status));
}

extern "C" int ap_cudnn_fail(int status, const char *call, const char *file, int line) {
    return ap_fail("%s:%d: %s: %s", file, line, call,
                   cudnnGetErrorString((cudnnStatus_t)status));
}

extern "C" int ap_cuda_describe(char *buf, int len) {
    int dev = 0;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    snprintf(buf, (size_t)len, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major,
             prop.minor, (double)prop.totalGlobalMem / (1 << 30));
    return 0;
}

extern "C" void *ap_cu_scratch(ap_ctx *ctx, size_t bytes, const char *what) {
    return ap_scratch(ctx, bytes ? bytes : 1, what);
}
