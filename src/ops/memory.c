/* memory.c: device memory and sync (memory.h). */
#include "memory.h"

#include "backend.h"
#include "core/err.h"

void *ap_dev_alloc(ap_ctx *ctx, size_t bytes, const char *what) {
    if (!ctx->be || !ctx->be->alloc) {
        ap_backend_lacks(ctx, "alloc");
        return NULL;
    }
    return ctx->be->alloc(ctx, bytes, what);
}

void ap_dev_free(ap_ctx *ctx, void *p) {
    if (p && ctx->be && ctx->be->free) ctx->be->free(ctx, p);
}

int ap_ctx_sync(ap_ctx *ctx) {
    if (!ctx->be || !ctx->be->sync) return ap_backend_lacks(ctx, "sync");
    return ctx->be->sync(ctx);
}
