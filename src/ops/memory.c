/* memory.c: device memory, copies with cast, fill and sync (memory.h). */
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

static int on_host_or_ctx(const ap_ctx *ctx, const char *arg, const ap_tensor *t) {
    if (t->device == AP_CPU || t->device == ctx->device) return AP_OK;
    char s[200];
    return ap_fail("tensor_copy: %s: expected a tensor on cpu or %s, found %s", arg,
                   ap_device_name(ctx->device), ap_tensor_str(t, s, sizeof s));
}

int ap_tensor_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src) {
    const char *op = "tensor_copy";
    if (!ap_present(dst)) return ap_fail("%s: dst: expected a tensor, found none", op);
    if (!ap_present(src)) return ap_fail("%s: src: expected a tensor, found none", op);
    int same = dst->ndim == src->ndim;
    for (int i = 0; same && i < dst->ndim; i++) same = dst->shape[i] == src->shape[i];
    if (!same) {
        char a[200], b[200];
        return ap_fail("%s: dst is %s but src is %s (expected the same shape)", op,
                       ap_tensor_str(dst, a, sizeof a), ap_tensor_str(src, b, sizeof b));
    }
    AP_TRY(on_host_or_ctx(ctx, "dst", dst));
    AP_TRY(on_host_or_ctx(ctx, "src", src));
    if (dst->data == src->data && dst->dtype != src->dtype)
        return ap_fail("%s: dst and src share a buffer but differ in dtype", op);
    return AP_DISPATCH(ctx, copy, dst, src);
}

int ap_tensor_fill(ap_ctx *ctx, const ap_tensor *dst, float value) {
    if (!ap_present(dst)) return ap_fail("tensor_fill: dst: expected a tensor, found none");
    if (dst->device != ctx->device) {
        char s[200];
        return ap_fail("tensor_fill: dst: expected a tensor on %s, found %s",
                       ap_device_name(ctx->device), ap_tensor_str(dst, s, sizeof s));
    }
    return AP_DISPATCH(ctx, fill, dst, value);
}

int ap_ctx_sync(ap_ctx *ctx) {
    if (!ctx->be || !ctx->be->sync) return ap_backend_lacks(ctx, "sync");
    return ctx->be->sync(ctx);
}
