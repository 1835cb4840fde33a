/* strbuf.c: the report's growing text buffer, HTML escaping and base64
 * (strbuf.h). */
#include "report/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(ap_sb *b, size_t extra) {
    if (b->failed) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        ap_fail("out of memory: %zu bytes for the report text", cap);
        b->failed = 1;
        return 0;
    }
    b->s = s;
    b->cap = cap;
    return 1;
}

void ap_sb_put(ap_sb *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    memmove(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void ap_sb_printf(ap_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return n;
}

void ap_sb_html(ap_sb *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        switch (*p) {
        case '&': ap_sb_put(b, "&amp;", 5); p++; continue;
        case '<': ap_sb_put(b, "&lt;", 4); p++; continue;
        case '>': ap_sb_put(b, "&gt;", 4); p++; continue;
        case '"': ap_sb_put(b, "&quot;", 6); p++; continue;
        case '\'': ap_sb_put(b, "&#39;", 5); p++; continue;
        default: break;
        }
        int n = utf8_len(p);
        if (n == 0) {
            ap_sb_put(b, "\xef\xbf\xbd", 3); /* U+FFFD */
            p++;
        } else if (n == 1 && *p < 0x20 && *p != '\n' && *p != '\t') {
            ap_sb_put(b, "\xef\xbf\xbd", 3); /* control characters are not allowed in HTML */
            p++;
        } else {
            ap_sb_put(b, (const char *)p, (size_t)n);
            p += n;
        }
    }
}

void ap_sb_base64(ap_sb *b, const unsigned char *d, size_t n) {
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!grow(b, (n + 2) / 3 * 4)) return;
    char *o = b->s + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = k[v >> 18];
        *o++ = k[(v >> 12) & 63];
        *o++ = k[(v >> 6) & 63];
        *o++ = k[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        *o++ = k[v >> 18];
        *o++ = k[(v >> 12) & 63];
        *o++ = i + 1 < n ? k[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->s);
    b->s[b->len] = '\0';
}

int ap_sb_ok(const ap_sb *b) { return !b->failed; }

void ap_sb_free(ap_sb *b) {
    free(b->s);
    *b = (ap_sb){0};
}
