/* unicode.c: table look-ups, UTF-8 coding, code-point strings and Python's
 * str.lower(), for the CLIP tokenizers (see unicode.h). */
#include "text/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int ap_uc_in(const ap_uc_range *r, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

const char *ap_uc_map_find(const ap_uc_map *m, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < m[mid].cp) hi = mid - 1;
        else if (cp > m[mid].cp) lo = mid + 1;
        else return m[mid].s;
    }
    return NULL;
}

const char *ap_uc_entity_find(const ap_uc_entity *t, int count, const char *name, size_t n) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strncmp(t[mid].name, name, n);
        if (c == 0 && t[mid].name[n] != '\0') c = 1; /* table name is longer */
        if (c > 0) hi = mid - 1;
        else if (c < 0) lo = mid + 1;
        else return t[mid].value;
    }
    return NULL;
}

uint32_t ap_uc_lower1(uint32_t cp) {
    int lo = 0, hi = ap_uc_lower_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const ap_uc_lower_run *r = &ap_uc_lower[mid];
        if (cp < r->start) hi = mid - 1;
        else if (cp > r->end) lo = mid + 1;
        else return (cp - r->start) % (uint32_t)r->step == 0 ? (uint32_t)((int64_t)cp + r->delta)
                                                              : cp;
    }
    return cp;
}

int ap_uc_fold_eq(uint32_t cp, char letter) {
    if (cp == (uint32_t)letter) return 1;
    if (letter >= 'a' && letter <= 'z' && cp == (uint32_t)(letter - 'a' + 'A')) return 1;
    const char *f = cp >= 0x80 ? ap_uc_map_find(ap_uc_fold_ascii, ap_uc_fold_ascii_n, cp) : NULL;
    return f && f[0] == letter;
}

int ap_ustr_push(ap_ustr *s, uint32_t cp) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint32_t *p = realloc(s->cp, cap * sizeof *p);
        if (!p) return ap_fail("tokenizer: out of memory: %zu bytes for a text buffer",
                               cap * sizeof *p);
        s->cp = p;
        s->cap = cap;
    }
    s->cp[s->n++] = cp;
    return 0;
}

int ap_ustr_append(ap_ustr *s, const uint32_t *cp, size_t n) {
    for (size_t i = 0; i < n; i++) AP_TRY(ap_ustr_push(s, cp[i]));
    return 0;
}

int ap_ustr_push_utf8(ap_ustr *s, const char *utf8) {
    return ap_utf8_decode(s, utf8, strlen(utf8));
}

void ap_ustr_free(ap_ustr *s) {
    free(s->cp);
    s->cp = NULL;
    s->n = s->cap = 0;
}

int ap_utf8_decode(ap_ustr *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned b = s[i];
        if (b < 0x80) {
            AP_TRY(ap_ustr_push(out, b));
            i++;
            continue;
        }
        if (b < 0xC2 || b > 0xF4) { /* continuation or never-valid lead byte */
            AP_TRY(ap_ustr_push(out, 0xFFFD));
            i++;
            continue;
        }
        int need = b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
        unsigned lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
        unsigned hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
        uint32_t cp = b & (0x3F >> need);
        int k = 1;
        for (; k <= need; k++) {
            if (i + k >= n) break;
            unsigned c = s[i + k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
            cp = (cp << 6) | (c & 0x3F);
        }
        if (k <= need) { /* maximal invalid subpart s[i .. i+k) -> one U+FFFD */
            AP_TRY(ap_ustr_push(out, 0xFFFD));
            i += k;
        } else {
            AP_TRY(ap_ustr_push(out, cp));
            i += need + 1;
        }
    }
    return 0;
}

int ap_utf8_encode(uint32_t cp, unsigned char o[4]) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* CPython's handle_capital_sigma: U+03A3 becomes final sigma when preceded by
 * a cased letter and not followed by one, skipping case-ignorable characters. */
static uint32_t lower_sigma(const ap_ustr *s, size_t i) {
    size_t j = i;
    while (j > 0 && AP_UC_IN(case_ignorable, s->cp[j - 1])) j--;
    int final = j > 0 && AP_UC_IN(cased, s->cp[j - 1]);
    if (final) {
        j = i + 1;
        while (j < s->n && AP_UC_IN(case_ignorable, s->cp[j])) j++;
        final = j == s->n || !AP_UC_IN(cased, s->cp[j]);
    }
    return final ? 0x3C2 : 0x3C3;
}

int ap_ustr_lower(ap_ustr *out, const ap_ustr *s) {
    out->n = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->cp[i];
        if (c == 0x130) {
            AP_TRY(ap_ustr_push(out, 'i'));
            AP_TRY(ap_ustr_push(out, 0x307));
        } else if (c == 0x3A3) {
            AP_TRY(ap_ustr_push(out, lower_sigma(s, i)));
        } else {
            AP_TRY(ap_ustr_push(out, ap_uc_lower1(c)));
        }
    }
    return 0;
}
