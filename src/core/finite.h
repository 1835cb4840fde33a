/* finite.h: checks that a float buffer holds only finite values (no NaN,
 * no +-inf), for loaded weights, sampler latents, decoded images, and the
 * training job's losses and gradients. */
#ifndef AP_FINITE_H
#define AP_FINITE_H

#include <stdint.h>

/* Index of the first non-finite value of x[0..n), or -1 when all are finite.
 * Vectorised scan (one pass, no early exit inside a block). */
int64_t ap_first_nonfinite(const float *x, int64_t n);

/* 0 when x[0..n) is finite; otherwise AP_ERR after ap_fail("WHAT: non-finite
 * value VALUE at index I of N (K more non-finite ...)"). */
int ap_check_finite(const float *x, int64_t n, const char *what);

#endif
