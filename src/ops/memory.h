/* memory.h: device memory and synchronisation. Copies between devices and
 * dtypes, fills and host transfers are ops in rows.h (ap_copy, ap_fill,
 * ap_tensor_read, ap_tensor_write), so a device backend knows where the
 * synchronisation points are. */
#ifndef AP_OPS_MEMORY_H
#define AP_OPS_MEMORY_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* bytes of the context's device memory; NULL with an error naming what. */
void *ap_dev_alloc(ap_ctx *ctx, size_t bytes, const char *what);
void ap_dev_free(ap_ctx *ctx, void *p);
/* Waits for every op queued on the context. */
int ap_ctx_sync(ap_ctx *ctx);

#endif
