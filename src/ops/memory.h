/* memory.h: device memory and the copies between devices and dtypes.
 *
 * Everything a model or the chain needs to move data across the host/device
 * line goes through these, so a device backend knows where the
 * synchronisation points are.
 */
#ifndef AP_OPS_MEMORY_H
#define AP_OPS_MEMORY_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* bytes of the context's device memory; NULL with an error naming what. */
void *ap_dev_alloc(ap_ctx *ctx, size_t bytes, const char *what);
void ap_dev_free(ap_ctx *ctx, void *p);
/* dst = src converted to dst's dtype (F32, F16, BF16; to F16/BF16 rounded to
 * nearest even). Same shape (element count and dims); each tensor on the
 * context's device or on the CPU. dst may equal src only when the dtypes do. */
int ap_tensor_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src);
/* Every element of dst (on the context's device) = value. */
int ap_tensor_fill(ap_ctx *ctx, const ap_tensor *dst, float value);
/* Waits for every op queued on the context. */
int ap_ctx_sync(ap_ctx *ctx);

#endif
