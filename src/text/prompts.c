/* prompts.c: reading prompt files (prompts.h). */
#include "text/prompts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define AP_PROMPTS_MAX_BYTES (16 << 20)

static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

int ap_prompts_read(const char *path, char ***out, int *n) {
    *out = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open the prompt file", path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ap_fail("out of memory reading %s", path);
    }
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len > AP_PROMPTS_MAX_BYTES) {
            free(buf);
            fclose(f);
            return ap_fail("%s: prompt file larger than %d MiB: expected a text file of prompts",
                           path, AP_PROMPTS_MAX_BYTES >> 20);
        }
        if (len == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) break;
            buf = nb, cap *= 2;
        }
    }
    fclose(f);
    buf[len] = '\0';
    int rc = AP_OK, line = 1, ncap = 0;
    char **v = NULL;
    for (size_t i = 0; i < len && !rc;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        if (memchr(buf + i, '\0', e - i)) {
            rc = ap_fail("%s:%d: NUL byte in a prompt: expected a UTF-8 text file", path, line);
            break;
        }
        if (!utf8_ok((const unsigned char *)buf + i, e - i)) {
            rc = ap_fail("%s:%d: invalid UTF-8: expected a UTF-8 text file", path, line);
            break;
        }
        size_t a = i, b = e;
        while (a < b && isspace((unsigned char)buf[a])) a++;
        while (b > a && isspace((unsigned char)buf[b - 1])) b--;
        if (b > a) {
            if (*n == ncap) {
                ncap = ncap ? 2 * ncap : 64;
                char **nv = realloc(v, sizeof *v * (size_t)ncap);
                if (!nv) {
                    rc = ap_fail("out of memory reading %s", path);
                    break;
                }
                v = nv;
            }
            v[*n] = malloc(b - a + 1);
            if (!v[*n]) {
                rc = ap_fail("out of memory reading %s", path);
                break;
            }
            memcpy(v[*n], buf + a, b - a);
            v[*n][b - a] = '\0';
            (*n)++;
        }
        i = e + 1, line++;
    }
    free(buf);
    if (!rc && *n == 0) rc = ap_fail("%s: no prompt in the file (expected one prompt per line)", path);
    if (rc) {
        ap_prompts_free(v, *n);
        *n = 0;
        return AP_ERR;
    }
    *out = v;
    return AP_OK;
}

void ap_prompts_free(char **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
}
