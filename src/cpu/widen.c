/* widen.c: bf16 / f16 -> float32 rows (widen.h). bf16 is the high half of a
 * float32 (a 16-bit shift: plain C the compiler vectorises per variant); f16
 * uses F16C's vcvtph2ps on the AVX2 and AVX-512 variants (exact, like the
 * scalar ap_f16_to_f32 for every non-NaN value). */
#include "widen.h"

#if AP_ISA_X86
#include <immintrin.h>
#endif

AP_ISA_INLINE void widen_bf16_body(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) { /* memcpy: no type punning through pointers */
        const uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}
AP_ISA_KERNEL(widen_bf16, (float *dst, const uint16_t *src, size_t n), (dst, src, n));

static void widen_f16_generic(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ap_f16_to_f32(src[i]);
}
#if AP_ISA_X86
AP_TARGET_AVX2 static void widen_f16_avx2(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = ap_f16_to_f32(src[i]);
}
AP_TARGET_AVX512 static void widen_f16_avx512(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = ap_f16_to_f32(src[i]);
}
#else
#define widen_f16_avx2 widen_f16_generic
#define widen_f16_avx512 widen_f16_generic
#endif
static void (*const widen_f16_tab[AP_ISA_COUNT])(float *, const uint16_t *, size_t) = {
    widen_f16_generic, widen_f16_avx2, widen_f16_avx512};

void ap_widen_row(ap_isa isa, float *dst, const void *src, ap_dtype dt, size_t n) {
    if (dt == AP_F32) memcpy(dst, src, n * sizeof(float));
    else if (dt == AP_BF16) widen_bf16_tab[isa](dst, src, n);
    else widen_f16_tab[isa](dst, src, n);
}

void ap_widen(const ap_ctx *ctx, float *dst, const void *src, ap_dtype dt, size_t n) {
    enum { BLK = 1 << 16 };
    const int64_t nblk = (int64_t)((n + BLK - 1) / BLK);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (nblk > 1)
    for (int64_t b = 0; b < nblk; b++) {
        size_t i0 = (size_t)b * BLK, m = n - i0 < BLK ? n - i0 : BLK;
        ap_widen_row(ctx->isa, dst + i0, ap_elem_ptr(src, dt, i0), dt, m);
    }
}
