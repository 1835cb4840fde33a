/* memory.h: device memory and synchronisation. Copies between devices and
 * dtypes, fills and host transfers are ops in rows.h (ap_copy, ap_fill,
 * ap_tensor_read, ap_tensor_write), so a device backend knows where the
 * synchronisation points are. */
#ifndef AP_OPS_MEMORY_H
#define AP_OPS_MEMORY_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/weights.h"

/* bytes of the context's device memory; NULL with an error naming what. */
void *ap_dev_alloc(ap_ctx *ctx, size_t bytes, const char *what);
void ap_dev_free(ap_ctx *ctx, void *p);
/* Waits for every op queued on the context. */
int ap_ctx_sync(ap_ctx *ctx);

/* Model parameters on the context's device (docs/cuda.md §6). On the CPU
 * nothing changes: the slots keep pointing into p->flat, where they are.
 * Elsewhere one backend allocation takes a copy of the whole block (bits
 * as they are: 2-byte slots stay 2-byte), and every slot and the model field
 * bound to it (ap_param.dst) point there with the context's device; p->flat
 * stays as the host copy (LoRA: the optimizer's master, written back with
 * ap_params_upload). Unbacked blocks (dry runs) are left alone. */
int ap_params_place(ap_ctx *ctx, ap_params *p);
/* p->flat -> the device copy (after the host copy changed: an optimizer
 * step, a loaded checkpoint); a no-op on the CPU. */
int ap_params_upload(ap_ctx *ctx, const ap_params *p);
/* Frees the device copy and points the slots back at p->flat. */
void ap_params_unplace(ap_ctx *ctx, ap_params *p);
/* bytes ap_params_place took on devices in this process (tests) */
size_t ap_params_placed_bytes(void);

#endif
