/* textclean.c: ftfy.fix_text (see textclean.h; fix_encoding and NFC live in
 * textclean_encoding.c and textclean_nfc.c), html.unescape and
 * whitespace_clean on code-point strings, following the Python sources of
 * ftfy 6.1.1 (__init__.fix_text / fix_and_explain, fixes.py) and Python 3.11
 * html/__init__.py step by step. */
#include "text/textclean.h"

#include <string.h>

#include "core/err.h"

static int is_alnum_ascii(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The characters html's [^\t\n\f <&#;] excludes. */
static int is_charref_stop(uint32_t c) {
    return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
           c == ';';
}

/* s[a, b) as a NUL-terminated ASCII name in buf (cap bytes); 0 when it holds
 * a non-ASCII code point or does not fit. */
static int ascii_name(const uint32_t *s, size_t a, size_t b, char *buf, size_t cap) {
    if (b - a + 1 > cap) return 0;
    for (size_t i = a; i < b; i++) {
        if (s[i] >= 0x80 || s[i] == 0) return 0;
        buf[i - a] = (char)s[i];
    }
    buf[b - a] = '\0';
    return 1;
}

/* html._replace_charref for a numeric reference with value num (saturated). */
static int numeric_charref(ap_ustr *out, uint32_t num) {
    const char *fix = ap_uc_map_find(ap_uc_html_charref, ap_uc_html_charref_n, num);
    if (fix) return ap_ustr_push_utf8(out, fix);
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return ap_ustr_push(out, 0xFFFD);
    if (AP_UC_IN(html_invalid, num)) return 0;
    return ap_ustr_push(out, num);
}

/* Python html.unescape: the _charref pattern
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * with _replace_charref. Numbers too long for int() in Python are saturated. */
int ap_html_unescape(ap_ustr *out, const ap_ustr *in) {
    const uint32_t *s = in->cp;
    size_t n = in->n, i = 0;
    out->n = 0;
    while (i < n) {
        if (s[i] != '&' || i + 1 >= n) {
            AP_TRY(ap_ustr_push(out, s[i++]));
            continue;
        }
        size_t j = i + 1;
        if (s[j] == '#') {
            int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X') ? 1 : 0;
            size_t d = j + 1;
            if (d < n && s[d] >= '0' && s[d] <= '9') hex = 0; /* first alternative wins */
            d += (size_t)hex;
            size_t k = d;
            uint32_t num = 0;
            while (k < n && (hex ? is_hex(s[k]) : (s[k] >= '0' && s[k] <= '9'))) {
                uint32_t v = s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
                num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + v;
                k++;
            }
            if (k == d) { /* "&#" without digits: no match here */
                AP_TRY(ap_ustr_push(out, s[i++]));
                continue;
            }
            if (k < n && s[k] == ';') k++;
            AP_TRY(numeric_charref(out, num));
            i = k;
            continue;
        }
        size_t k = j;
        while (k < n && k - j < 32 && !is_charref_stop(s[k])) k++;
        if (k == j) {
            AP_TRY(ap_ustr_push(out, s[i++]));
            continue;
        }
        if (k < n && s[k] == ';') k++;
        /* s[j, k) is the name; exact look-up, then the longest prefix >= 2. */
        char name[40];
        const char *val = NULL;
        size_t x = k - j;
        if (ascii_name(s, j, k, name, sizeof name))
            val = ap_uc_entity_find(ap_uc_html5, ap_uc_html5_n, name, x);
        if (!val) {
            for (x = k - j - 1; x >= 2; x--) {
                if (!ascii_name(s, j, j + x, name, sizeof name)) continue;
                if ((val = ap_uc_entity_find(ap_uc_html5, ap_uc_html5_n, name, x))) break;
            }
        }
        if (val) {
            AP_TRY(ap_ustr_push_utf8(out, val));
            AP_TRY(ap_ustr_append(out, s + j + x, k - j - x));
        } else {
            AP_TRY(ap_ustr_append(out, s + i, k - i));
        }
        i = k;
    }
    return 0;
}

/* ftfy.fixes._unescape_fixup for the match s[a, b) of &#?[0-9A-Za-z]{1,24}; */
static int ftfy_entity(ap_ustr *out, const uint32_t *s, size_t a, size_t b) {
    char name[32];
    ascii_name(s, a + 1, b, name, sizeof name); /* always ASCII, <= 26 bytes */
    const char *val = ap_uc_entity_find(ap_uc_html5, ap_uc_html5_n, name, b - a - 1);
    if (!val) val = ap_uc_entity_find(ap_uc_ftfy_upper, ap_uc_ftfy_upper_n, name, b - a - 1);
    if (val) return ap_ustr_push_utf8(out, val);
    if (s[a + 1] != '#') return ap_ustr_append(out, s + a, b - a);
    ap_ustr m = {0}, u = {0};
    int rc = ap_ustr_append(&m, s + a, b - a);
    if (rc == 0) rc = ap_html_unescape(&u, &m);
    if (rc == 0) {
        int semi = 0;
        for (size_t i = 0; i < u.n; i++) semi |= u.cp[i] == ';';
        rc = semi ? ap_ustr_append(out, s + a, b - a) : ap_ustr_append(out, u.cp, u.n);
    }
    ap_ustr_free(&m);
    ap_ustr_free(&u);
    return rc;
}

/* ftfy.fixes.unescape_html */
static int ftfy_unescape_html(ap_ustr *out, const ap_ustr *in) {
    const uint32_t *s = in->cp;
    size_t n = in->n, i = 0;
    out->n = 0;
    while (i < n) {
        if (s[i] == '&') {
            size_t j = i + 1 + (i + 1 < n && s[i + 1] == '#');
            size_t k = j;
            while (k < n && k - j < 25 && is_alnum_ascii(s[k])) k++;
            if (k > j && k - j <= 24 && k < n && s[k] == ';') {
                AP_TRY(ftfy_entity(out, s, i, k + 1));
                i = k + 1;
                continue;
            }
        }
        AP_TRY(ap_ustr_push(out, s[i++]));
    }
    return 0;
}

/* The character-level fixers of fix_and_explain after fix_encoding, in order:
 * fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
 * fix_line_breaks, (fix_surrogates), remove_terminal_escapes,
 * remove_control_chars. Each is a pass of its own, as in ftfy. */
static int ftfy_char_fixers(ap_ustr *a, ap_ustr *b) {
    for (size_t i = 0; i < a->n; i++) /* fix_c1_controls: C1 as windows-1252 */
        if (a->cp[i] >= 0x80 && a->cp[i] <= 0x9F) a->cp[i] = ap_uc_c1_cp1252[a->cp[i] - 0x80];
    for (int pass = 0; pass < 2; pass++) { /* ligatures, then character width */
        const ap_uc_map *m = pass == 0 ? ap_uc_ligature : ap_uc_width;
        int mn = pass == 0 ? ap_uc_ligature_n : ap_uc_width_n;
        b->n = 0;
        for (size_t i = 0; i < a->n; i++) {
            const char *r = ap_uc_map_find(m, mn, a->cp[i]);
            AP_TRY(r ? ap_ustr_push_utf8(b, r) : ap_ustr_push(b, a->cp[i]));
        }
        ap_ustr t = *a;
        *a = *b;
        *b = t;
    }
    b->n = 0;
    for (size_t i = 0; i < a->n; i++) { /* uncurl_quotes, fix_line_breaks */
        uint32_t c = a->cp[i];
        if (c >= 0x201C && c <= 0x201F) c = '"';
        else if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c == '\r' && i + 1 < a->n && a->cp[i + 1] == '\n') continue;
        else if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        AP_TRY(ap_ustr_push(b, c));
    }
    a->n = 0;
    for (size_t i = 0; i < b->n; i++) { /* remove_terminal_escapes */
        if (b->cp[i] == 0x1B && i + 1 < b->n && b->cp[i + 1] == '[') {
            size_t k = i + 2;
            while (k < b->n && (b->cp[k] == ';' || AP_UC_IN(re_digit, b->cp[k]))) k++;
            uint32_t c = k < b->n ? b->cp[k] : 0;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                i = k;
                continue;
            }
        }
        AP_TRY(ap_ustr_push(a, b->cp[i]));
    }
    size_t w = 0; /* remove_control_chars */
    for (size_t i = 0; i < a->n; i++)
        if (!AP_UC_IN(ftfy_control, a->cp[i])) a->cp[w++] = a->cp[i];
    a->n = w;
    return 0;
}

/* ftfy.fix_and_explain on one segment, repeated until nothing changes. */
static int fix_segment(ap_ustr *out, const uint32_t *seg, size_t n, int unescape) {
    ap_ustr cur = {0}, prev = {0}, tmp = {0};
    int rc = ap_ustr_append(&cur, seg, n);
    while (rc == 0) {
        prev.n = 0;
        if ((rc = ap_ustr_append(&prev, cur.cp, cur.n))) break;
        if (unescape) {
            if ((rc = ftfy_unescape_html(&tmp, &cur))) break;
            ap_ustr t = cur;
            cur = tmp;
            tmp = t;
        }
        if ((rc = ap_ftfy_fix_encoding(&tmp, &cur))) break;
        if ((rc = ftfy_char_fixers(&tmp, &cur))) break;
        if ((rc = ap_nfc(&cur, &tmp))) break;
        if (cur.n == prev.n && (cur.n == 0 || !memcmp(cur.cp, prev.cp, cur.n * sizeof *cur.cp)))
            break;
    }
    if (rc == 0) rc = ap_ustr_append(out, cur.cp, cur.n);
    ap_ustr_free(&cur);
    ap_ustr_free(&prev);
    ap_ustr_free(&tmp);
    return rc;
}

int ap_ftfy_fix_text(ap_ustr *out, const ap_ustr *s) {
    const size_t max_decode_length = 1000000;
    int unescape = 1; /* unescape_html="auto", switched off for good by a '<' */
    size_t pos = 0;
    out->n = 0;
    while (pos < s->n) {
        size_t brk = pos;
        while (brk < s->n && s->cp[brk] != '\n') brk++;
        brk = brk < s->n ? brk + 1 : s->n;
        if (brk - pos > max_decode_length) brk = pos + max_decode_length;
        for (size_t i = pos; i < brk && unescape; i++)
            if (s->cp[i] == '<') unescape = 0;
        AP_TRY(fix_segment(out, s->cp + pos, brk - pos, unescape));
        pos = brk;
    }
    return 0;
}

void ap_py_strip(ap_ustr *s) {
    size_t a = 0, b = s->n;
    while (a < b && AP_UC_IN(pyspace, s->cp[a])) a++;
    while (b > a && AP_UC_IN(pyspace, s->cp[b - 1])) b--;
    if (a > 0) memmove(s->cp, s->cp + a, (b - a) * sizeof *s->cp);
    s->n = b - a;
}

void ap_whitespace_clean(ap_ustr *s) {
    size_t w = 0;
    for (size_t i = 0; i < s->n;) {
        if (AP_UC_IN(rspace, s->cp[i])) {
            while (i < s->n && AP_UC_IN(rspace, s->cp[i])) i++;
            s->cp[w++] = ' ';
        } else {
            s->cp[w++] = s->cp[i++];
        }
    }
    s->n = w;
    ap_py_strip(s);
}
