/* widen.h: reading frozen weights stored as bf16 or f16 as float32.
 *
 * Frozen weights may be kept in 2-byte types (mixed_precision: bf16, docs
 * README "Precision"); the GEMM and conv packers widen them to float32 while
 * packing, and the paths that call BLAS widen them into scratch first. The
 * widening is exact (every bf16 and f16 value is a float32), so an op on a
 * bf16 weight gives the bits the float32 op gives on the widened weight.
 */
#ifndef AP_CPU_WIDEN_H
#define AP_CPU_WIDEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/ctx.h"
#include "core/isa.h"
#include "core/tensor.h"
#include "io/dtype.h"

/* dst[i] = src[i] as float32, for i < n; src of dtype dt (F32: a copy).
 * Vectorised for the variant isa; safe inside OpenMP regions. */
void ap_widen_row(ap_isa isa, float *dst, const void *src, ap_dtype dt, size_t n);
/* The same over ctx's threads (large blocks: a whole weight). */
void ap_widen(const ap_ctx *ctx, float *dst, const void *src, ap_dtype dt, size_t n);

/* Element i of a weight of dtype dt, as float32 (scalar paths). */
static inline float ap_widen_at(const void *src, ap_dtype dt, size_t i) {
    if (dt == AP_F32) return ((const float *)src)[i];
    const uint16_t h = ((const uint16_t *)src)[i];
    if (dt == AP_F16) return ap_f16_to_f32(h);
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* src advanced by i elements of dtype dt. */
static inline const void *ap_elem_ptr(const void *src, ap_dtype dt, size_t i) {
    return (const char *)src + i * ap_dtype_size(dt);
}

#endif
