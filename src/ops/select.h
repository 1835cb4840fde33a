/* select.h: which backend a run uses (config `backend:`, sample --backend),
 * checked at start and turned into a context (docs/cuda.md §6).
 *
 * src/ never links the CUDA backend (kernels/ needs nvcc and the CUDA
 * libraries): a program built with it registers it at start
 * (ap_cuda_provide, kernels/cuda_select.c; main.c does when meson defines
 * AP_HAVE_CUDA). Without a registration "cuda" is refused naming the build.
 */
#ifndef AP_OPS_SELECT_H
#define AP_OPS_SELECT_H

#include "core/ctx.h"

/* What a backend other than the CPU's supplies to be selectable. */
typedef struct ap_backend_provider {
    const char *name; /* "cuda" */
    /* AP_OK when this process can run on it (a device for its node-local
     * rank), else AP_ERR with the reason (the driver's, the rank count);
     * makes no context and allocates nothing (dry runs call it) */
    int (*check)(void);
    /* a context on this process's device, printing the card and its memory */
    int (*ctx_init)(ap_ctx *ctx, int allow_tf32);
    void (*ctx_free)(ap_ctx *ctx);
    /* one line: the build's backend and what this machine has */
    void (*describe)(char *buf, int len);
} ap_backend_provider;

void ap_backend_provide(const ap_backend_provider *p);

/* AP_OK when backend name ("cpu" or "cuda") can run here; else AP_ERR with
 * `backend: "NAME" is not available ...: WHY` (not built, no device, more
 * ranks than devices). */
int ap_backend_check(const char *name);
/* A context on backend name: "cpu" is ap_ctx_init(n_threads); "cuda" the
 * provider's (allow_tf32 for its GEMMs and convolutions). */
int ap_backend_ctx_init(ap_ctx *ctx, const char *name, int n_threads, int allow_tf32);
/* Frees a context made by either. */
void ap_backend_ctx_free(ap_ctx *ctx);
/* "cpu" and each registered backend with its state, for --version. */
void ap_backend_describe(char *buf, int len);

#endif
