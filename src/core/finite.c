/* finite.c: non-finite value scans (finite.h). */
#include "core/finite.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

/* A float is non-finite when its exponent bits are all ones; testing bits
 * keeps this correct under -ffast-math and lets the loop vectorise. */
static inline int bad_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

int64_t ap_first_nonfinite(const float *x, int64_t n) {
    const int64_t blk = 4096;
    for (int64_t i0 = 0; i0 < n; i0 += blk) {
        int64_t i1 = i0 + blk < n ? i0 + blk : n;
        int any = 0;
        for (int64_t i = i0; i < i1; i++) any |= bad_bits(x[i]);
        if (!any) continue;
        for (int64_t i = i0; i < i1; i++)
            if (bad_bits(x[i])) return i;
    }
    return -1;
}

int ap_check_finite(const float *x, int64_t n, const char *what) {
    int64_t i = ap_first_nonfinite(x, n);
    if (i < 0) return AP_OK;
    int64_t more = 0;
    for (int64_t j = i + 1; j < n; j++) more += bad_bits(x[j]);
    return ap_fail("%s: non-finite value %g at index %lld of %lld (%lld more non-finite after it; "
                   "expected finite numbers)",
                   what, (double)x[i], (long long)i, (long long)n, (long long)more);
}
