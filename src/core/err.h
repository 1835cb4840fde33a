/* err.h: error reporting for every public function of alignprop-mpi.
 *
 * Convention: a function that can fail returns int, 0 on success and
 * AP_ERR (-1) on failure, after recording a message with ap_fail().
 * The message names the operation or file, the argument, and expected vs
 * found. Callers that add context (a file name, a tensor key) use
 * ap_err_prefix(). The message lives in thread-local storage.
 */
#ifndef AP_ERR_H
#define AP_ERR_H

#include <stddef.h>

#define AP_OK 0
#define AP_ERR (-1)

#if defined(__GNUC__)
#define AP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define AP_PRINTF(a, b)
#endif

/* Record a formatted error message; always returns AP_ERR. */
int ap_fail(const char *fmt, ...) AP_PRINTF(1, 2);
/* Put formatted context before the current message ("file.safetensors: " + msg). */
int ap_err_prefix(const char *fmt, ...) AP_PRINTF(1, 2);
/* The last recorded message ("" if none). */
const char *ap_errmsg(void);
/* Forget the last message. */
void ap_err_clear(void);

/* Propagate a failure: AP_TRY(conv2d_forward(...)); */
#define AP_TRY(expr)                                                           \
    do {                                                                       \
        if ((expr) != 0) return AP_ERR;                                        \
    } while (0)

/* Checked allocation: on failure records "out of memory: N bytes for WHAT". */
void *ap_malloc(size_t bytes, const char *what);
void *ap_calloc(size_t n, size_t size, const char *what);

#endif
