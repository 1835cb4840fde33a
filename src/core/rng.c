/* rng.c: standard normal draws from a splitmix64 stream (rng.h). */
#include "core/rng.h"

#include <math.h>

void ap_gaussian_fill(float *x, int64_t n, uint64_t key) {
    uint64_t s = key * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r0 = ap_splitmix64(&s), r1 = ap_splitmix64(&s);
        double u1 = ((double)(r0 >> 11) + 0.5) * 0x1.0p-53;
        double u2 = ap_unit53(r1);
        x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}
