/* backend.c: dispatch helpers shared by the public ops (backend.h). */
#include "backend.h"

#include <stdarg.h>

#include "core/err.h"

int ap_backend_lacks(const ap_ctx *ctx, const char *op) {
    return ap_fail("%s: not available on the %s backend", op,
                   ctx->be ? ctx->be->name : "(none: context not initialised)");
}

int ap_dry_note(ap_ctx *ctx, size_t scratch_bytes) {
    if (scratch_bytes > ctx->scratch_peak) ctx->scratch_peak = scratch_bytes;
    return AP_OK;
}

int ap_expect_on(const ap_ctx *ctx, const char *op, ...) {
    va_list ap;
    va_start(ap, op);
    int rc = AP_OK;
    for (const char *name; !rc && (name = va_arg(ap, const char *));) {
        const ap_tensor *t = va_arg(ap, const ap_tensor *);
        if (!ap_present(t) || (t->device == ctx->device && t->dtype == AP_F32)) continue;
        char s[200];
        rc = ap_fail("%s: %s: expected f32 on %s (the context's backend), found %s", op, name,
                     ap_device_name(ctx->device), ap_tensor_str(t, s, sizeof s));
    }
    va_end(ap);
    return rc;
}

int ap_expect_weight_on(const ap_ctx *ctx, const char *op, const ap_tensor *w,
                        const ap_tensor *dw) {
    char s[200];
    if (ap_present(w) && w->device != ctx->device)
        return ap_fail("%s: weight: expected on %s (the context's backend), found %s", op,
                       ap_device_name(ctx->device), ap_tensor_str(w, s, sizeof s));
    if (ap_present(w) && ap_present(dw) && w->dtype != AP_F32)
        return ap_fail("%s: dweight: the weight is %s (frozen, mixed precision): no "
                       "gradient; pass dweight NULL or keep the weight f32",
                       op, ap_dtype_name(w->dtype));
    return AP_OK;
}
