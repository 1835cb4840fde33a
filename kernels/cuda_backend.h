/* cuda_backend.h: the CUDA backend's C API: contexts on a GPU, device
 * arenas, and the op table (ops/backend.h) behind them (docs/cuda.md).
 *
 * One GPU per MPI rank: ap_cuda_ctx_init(ctx, -1) takes the device of the
 * node-local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID or
 * MPI_LOCALRANKID) and refuses when the ranks of a node outnumber its GPUs.
 * A context made here runs every public op on its stream; its tensors must
 * be on AP_CUDA (the public ops refuse host tensors by name).
 */
#ifndef AP_CUDA_BACKEND_H
#define AP_CUDA_BACKEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/ctx.h"
#include "ops/backend.h"

extern const ap_backend ap_cuda_backend;

/* Number of CUDA devices; 0 (not an error) when there is none or no driver,
 * and then why (if non-NULL, len bytes) says why. */
int ap_cuda_device_count(char *why, int len);

/* A context on CUDA device `device` (-1: the node-local rank's, above):
 * creates (once per process) the stream, the cuBLASLt and cuDNN handles
 * and the cuBLASLt workspace, and prints the card and its memory to stdout
 * on the first call. Scratch (ap_scratch) is then device memory. TF32 for
 * f32 GEMMs and convolutions follows allow_tf32 (0: exact f32). */
int ap_cuda_ctx_init(ap_ctx *ctx, int device, int allow_tf32);
/* Frees the context's scratch and, with the last context, the device state. */
void ap_cuda_ctx_free(ap_ctx *ctx);

/* A device arena (core/ctx.h's bump allocator over one cudaMalloc): the
 * tape and tmp of a measured plan live in these, so nothing is allocated
 * inside the sampling loop. Free with ap_cuda_arena_free (not ap_arena_free). */
int ap_cuda_arena_init(ap_ctx *ctx, ap_arena *a, size_t bytes, const char *what);
void ap_cuda_arena_free(ap_ctx *ctx, ap_arena *a);

/* Registers this backend with src/ops/select.h, so `backend: cuda` and
 * sample --backend cuda select it (kernels/cuda_select.cu); once, at start. */
void ap_cuda_provide(void);

/* cudaMalloc calls made by this process through the backend (alloc,
 * arenas, scratch): tests check it does not grow inside a loop. */
long ap_cuda_malloc_count(void);

#ifdef __cplusplus
}
#endif

#endif
