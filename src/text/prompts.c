/* prompts.c: prompt files (prompts.h): size cap, text check, lines. */
#include "text/prompts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

long ap_text_check(const char *str, long len) {
    const unsigned char *s = (const unsigned char *)str;
    long i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0) return i;
        if (c < 0x80) { i++; continue; }
        int k;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (i + k >= len) return i; /* truncated sequence */
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return -1;
}

void ap_prompts_free(char **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* Whole file into a NUL-terminated buffer, at most AP_PROMPTS_MAX_BYTES. */
static int slurp(const char *path, char **buf, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open the prompt file: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    int rc = b ? AP_OK : ap_fail("%s: out of memory reading the prompt file", path);
    while (!rc) {
        if (n == cap) {
            if (cap >= AP_PROMPTS_MAX_BYTES) {
                rc = ap_fail("%s: prompt file larger than %d MiB; expected a text file of one "
                             "prompt per line (split it)",
                             path, AP_PROMPTS_MAX_BYTES >> 20);
                break;
            }
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) { rc = ap_fail("%s: out of memory reading the prompt file", path); break; }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = ap_fail("%s: cannot read the prompt file: %s", path,
                             errno ? strerror(errno) : "read error");
            break;
        }
    }
    fclose(f);
    if (rc) { free(b); return rc; }
    b[n] = '\0';
    *buf = b, *len = (long)n;
    return AP_OK;
}

static int read_prompts(const char *path, char ***out, int *n, int keep_blank) {
    char *b = NULL;
    long len = 0;
    AP_TRY(slurp(path, &b, &len));
    long bad = ap_text_check(b, len);
    if (bad >= 0) {
        long line = 1, col = 0;
        for (long i = 0; i < bad; i++) {
            if (b[i] == '\n') line++, col = 0;
            else col++;
        }
        int rc = ap_fail("%s: line %ld, byte %ld (offset %ld in the file): %s 0x%02x; expected "
                         "UTF-8 text, one prompt per line",
                         path, line, col + 1, bad, b[bad] ? "invalid UTF-8 byte" : "NUL byte",
                         (unsigned char)b[bad]);
        free(b);
        return rc;
    }
    long start = (len >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    int count = 0, lines = 0, nonblank = 0;
    for (long i = start; i < len; i++) count += b[i] == '\n';
    char **arr = realloc(*out, ((size_t)*n + (size_t)count + 1) * sizeof *arr);
    if (!arr) {
        free(b);
        return ap_fail("%s: out of memory for %d prompts", path, count + 1);
    }
    *out = arr;
    int m = *n, rc = AP_OK;
    for (long i = start; i < len && !rc;) {
        long e = i;
        while (e < len && b[e] != '\n') e++;
        lines++;
        long s = i, t = e;
        while (s < t && is_space(b[s])) s++;
        while (t > s && is_space(b[t - 1])) t--;
        nonblank += t > s;
        if (t > s || keep_blank) {
            char *p = malloc((size_t)(t - s) + 1);
            if (!p) rc = ap_fail("%s: out of memory for line %d", path, lines);
            else memcpy(p, b + s, (size_t)(t - s)), p[t - s] = '\0', arr[m++] = p;
        }
        i = e + 1;
    }
    free(b);
    if (!rc && !nonblank)
        rc = ap_fail("%s: no prompt in the file (%d line%s, all blank); expected one prompt per "
                     "line",
                     path, lines, lines == 1 ? "" : "s");
    if (rc) {
        for (int i = *n; i < m; i++) free(arr[i]);
        return rc;
    }
    *n = m;
    return AP_OK;
}

int ap_prompts_read(const char *path, char ***out, int *n) {
    return read_prompts(path, out, n, 0);
}

int ap_prompts_read_lines(const char *path, char ***out, int *n) {
    return read_prompts(path, out, n, 1);
}
