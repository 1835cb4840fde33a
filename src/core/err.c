/* err.c: thread-local error message and checked allocation. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AP_ERR_LEN 2048
static _Thread_local char g_msg[AP_ERR_LEN];

int ap_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return AP_ERR;
}

int ap_err_prefix(const char *fmt, ...) {
    char head[AP_ERR_LEN], old[AP_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t hl = strlen(head), ol = strnlen(old, sizeof old - 1);
    if (ol > sizeof g_msg - 1 - hl) ol = sizeof g_msg - 1 - hl;
    memcpy(g_msg, head, hl);
    memcpy(g_msg + hl, old, ol);
    g_msg[hl + ol] = '\0';
    return AP_ERR;
}

const char *ap_errmsg(void) { return g_msg; }

void ap_err_clear(void) { g_msg[0] = '\0'; }

void *ap_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) ap_fail("out of memory: %zu bytes for %s", bytes, what);
    return p;
}

void *ap_calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ap_fail("out of memory: %zu x %zu bytes for %s", n, size, what);
    return p;
}
