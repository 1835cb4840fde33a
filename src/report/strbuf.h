/* strbuf.h: a growing text buffer for writing the run report (HTML + SVG),
 * with the escapes it needs: HTML text/attribute escaping and base64 (PNG
 * images inlined as data: URIs). A buffer that failed to grow stays failed:
 * every later append is a no-op and ap_sb_ok() says 0, so a writer appends
 * freely and checks once at the end (docs/report.md). */
#ifndef AP_REPORT_STRBUF_H
#define AP_REPORT_STRBUF_H

#include <stddef.h>

#include "core/err.h"

typedef struct ap_sb {
    char *s;     /* NUL-terminated text (NULL until the first append) */
    size_t len;  /* bytes in s, without the NUL */
    size_t cap;  /* bytes allocated */
    int failed;  /* 1: an allocation failed; the text is incomplete */
} ap_sb;

/* Append formatted text. */
void ap_sb_printf(ap_sb *b, const char *fmt, ...) AP_PRINTF(2, 3);
/* Append n bytes of s as they are. */
void ap_sb_put(ap_sb *b, const char *s, size_t n);
/* Append s with & < > " ' escaped (valid as HTML text and as a quoted
 * attribute value); bytes that are not valid UTF-8 become U+FFFD. */
void ap_sb_html(ap_sb *b, const char *s);
/* Append the standard base64 (RFC 4648, padded) of n bytes. */
void ap_sb_base64(ap_sb *b, const unsigned char *data, size_t n);
/* 1 when every append so far succeeded, else 0 with ap_errmsg() set. */
int ap_sb_ok(const ap_sb *b);
void ap_sb_free(ap_sb *b);

#endif
