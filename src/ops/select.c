/* select.c: backend selection by name (select.h, docs/cuda.md §6). */
#include "ops/select.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

static const ap_backend_provider *g_cuda; /* registered by a CUDA build */

void ap_backend_provide(const ap_backend_provider *p) {
    if (p && !strcmp(p->name, "cuda")) g_cuda = p;
}

int ap_backend_check(const char *name) {
    if (!strcmp(name, "cpu")) return AP_OK;
    if (strcmp(name, "cuda") != 0)
        return ap_fail("backend: \"%s\" is not available: expected \"cpu\" or \"cuda\"", name);
    if (!g_cuda)
        return ap_fail("backend: \"cuda\" is not available in this build (built without CUDA: "
                       "meson found no nvcc, cuBLASLt or cuDNN; tools/build -Dcuda=enabled "
                       "where they are installed): expected \"cpu\"");
    if (g_cuda->check() != AP_OK)
        return ap_err_prefix("backend: \"cuda\" is not available: ");
    return AP_OK;
}

int ap_backend_ctx_init(ap_ctx *ctx, const char *name, int n_threads, int allow_tf32) {
    AP_TRY(ap_backend_check(name));
    if (!strcmp(name, "cpu")) return ap_ctx_init(ctx, n_threads);
    return g_cuda->ctx_init(ctx, allow_tf32);
}

void ap_backend_ctx_free(ap_ctx *ctx) {
    if (ctx->device != AP_CPU && g_cuda) g_cuda->ctx_free(ctx);
    else ap_ctx_free(ctx);
}

void ap_backend_describe(char *buf, int len) {
    char cu[256] = "not in this build";
    if (g_cuda) g_cuda->describe(cu, sizeof cu);
    snprintf(buf, (size_t)len, "backends: cpu; cuda: %s", cu);
}
