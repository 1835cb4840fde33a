/* vexp.h: exp(x) written so that loops over it vectorise, shared by the
 * activations and the attention rows (softmax.c keeps its own exp for x <= 0,
 * held to 1 ulp by its tests). Include after core/isa.h. */
#ifndef AP_VEXP_H
#define AP_VEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/isa.h"

/* exp(x) in the style of Cephes expf (x = k ln2 + r, |r| <= ln2 / 2, degree-7
 * polynomial; relative error ~2e-7 against libm's expf): 0 below -87.3 (where
 * expf is denormal), +inf above 88 (true exp is finite up to 88.72: the
 * activations only divide by 1 + exp, where that is a difference of below
 * 4e-37; attention rows pass x <= 0), NaN for NaN. The argument is clamped before the float-to-int
 * conversion (out-of-range conversions are undefined); selects compile to
 * blends. */
AP_ISA_INLINE float ap_vexp(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: round to nearest integer */
    float xc = x > -87.3f ? x : -87.3f; /* NaN -> -87.3 */
    xc = xc < 88.0f ? xc : 88.0f;
    const float t = xc * 1.44269504088896341f + magic;
    const float k = t - magic; /* in [-126, 127] */
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float two_k;
    memcpy(&two_k, &bits, sizeof two_k);
    return x < -87.3f ? 0.0f : x > 88.0f ? INFINITY : (x == x ? y * two_k : x);
}

#endif
