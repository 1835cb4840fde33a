/* elementwise_cu.h: CUDA launchers of the elementwise ops (same meaning as
 * src/ops/elementwise.c and src/ops/activation.c). All pointers are device
 * pointers; stream is a cudaStream_t. Return 0 or -1 with ap_errmsg() set. */
#ifndef AP_ELEMENTWISE_CU_H
#define AP_ELEMENTWISE_CU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int ap_cu_add(float *out, const float *a, const float *b, int64_t n, void *stream);
int ap_cu_scale(float *out, const float *a, float s, int64_t n, void *stream);
int ap_cu_silu_forward(float *out, const float *in, int64_t n, void *stream);
int ap_cu_silu_backward(float *din, const float *dout, const float *in, int64_t n,
                        void *stream);

#ifdef __cplusplus
}
#endif

#endif
