/* testutil.h: helpers shared by the tests.
 *
 * Every comparison prints what it compared (name, element count, max abs and
 * rel error, tolerance, first mismatches) and counts failures; a test's main
 * returns tu_exit() which is non-zero when anything failed. A test that cannot
 * run returns tu_skip(reason): it prints the reason and exits 77, which meson
 * reports as SKIP (never a silent pass).
 */
#ifndef AP_TESTUTIL_H
#define AP_TESTUTIL_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/err.h"
#include "core/tensor.h"

#define TU_SKIP 77

/* Deterministic uniform floats in [lo, hi) from a seed (splitmix64). */
void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* Deterministic approximately normal floats (mean 0, std sd). */
void tu_fill_normal(float *x, int64_t n, uint64_t seed, float sd);
float *tu_alloc(int64_t n); /* calloc'd floats, aborts with a message on OOM */

/* Pass when |got - want| <= atol + rtol * |want| elementwise. Returns 1 on pass. */
int tu_compare(const char *what, const float *got, const float *want, int64_t n,
               double atol, double rtol);
/* Record a check of a condition with a message. Returns cond. */
int tu_check(int cond, const char *fmt, ...);
/* Expect fn's result to be an error whose message contains every needle
 * (NULL-terminated list). */
int tu_expect_error(const char *what, int rc, ...);

/* Finite-difference gradient check in double.
 * loss(state) must run the op's forward and return sum(out * proj) in double.
 * x (n floats) is perturbed in place by +-eps; analytic holds dloss/dx from the
 * op's backward. Checks up to max_points coordinates spread over x.
 * Passes when |num - ana| <= tol * max(1, max|ana|) at every point checked. */
typedef double (*tu_loss_fn)(void *state);
int tu_gradcheck(const char *what, tu_loss_fn loss, void *state, float *x, int64_t n,
                 const float *analytic, double eps, double tol, int max_points);
/* sum(out * proj) in double: the projection used by gradchecks. */
double tu_dot(const float *a, const float *b, int64_t n);

/* Fixtures directory ($AP_FIXTURES_DIR, set by meson) and shared data dir
 * ($AP_SHARED_DIR); NULL when unset or missing. */
const char *tu_fixtures_dir(void);
const char *tu_shared_dir(void);

/* Fixture file $AP_FIXTURES_DIR/<module>.safetensors (written by
 * tools/make_fixtures.py <module>); NULL with the reason printed when absent. */
struct ap_st_file *tu_fixture_open(const char *module);
/* Load a fixture tensor as float32 (any shape) into *t; a missing or
 * non-float tensor fails the test at once with the reader's message. */
float *tu_fixture(struct ap_st_file *f, const char *name, ap_tensor *t);

int tu_skip(const char *fmt, ...);
/* Print the summary line "N passed, N failed" and return the exit code. */
int tu_exit(void);

#endif
