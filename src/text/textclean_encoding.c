/* textclean_encoding.c: ftfy 6.1.1's fix_encoding (mojibake repair) with its
 * default options, step by step as ftfy/__init__.py
 * (_fix_encoding_one_step_and_explain), badness.py (is_bad), chardata.py
 * (possible_encoding, ALTERED_UTF8_RE, LOSSY_UTF8_RE, UTF8_DETECTOR_RE),
 * fixes.py (restore_byte_a0, replace_lossy_sequences,
 * decode_inconsistent_utf8) and bad_codecs/ (sloppy codecs, utf-8-variants)
 * define it. The character classes and BADNESS_RE's alternatives are data
 * generated from ftfy itself (unicode_data.c); the byte expressions, being
 * short and fixed, are written out here as range lists. */
#include "text/textclean.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum { BIT_ANY = 1, BIT_SPACE = 2, BIT_WORD = 4, BIT_NOTALPHA = 8 };
enum { F2 = 1 << 4, F3 = 1 << 5, F4 = 1 << 6, CONT = 1 << 7, STRICT = 1 << 8 };
enum { ENC_LATIN1 = 0, ENC_FIRST_NOT_SLOPPY = 6 }; /* indexes of ap_uc_charmap */

typedef struct {
    unsigned char *b;
    size_t n, cap;
} bytes;

static int bpush(bytes *s, const char *p, size_t n) {
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + n) cap *= 2;
        unsigned char *q = realloc(s->b, cap);
        if (!q) return ap_fail("tokenizer: out of memory: %zu bytes for ftfy's re-encoding", cap);
        s->b = q;
        s->cap = cap;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
    return 0;
}

/* Class bits of code point cp (ap_uc_mojibake plus the computed bits). */
static uint64_t class_bits(uint32_t cp) {
    uint64_t m = 0;
    if (cp != '\n') m |= BIT_ANY;
    if (!((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')) m |= BIT_NOTALPHA;
    if (AP_UC_IN(pyspace, cp)) m |= BIT_SPACE;
    if (AP_UC_IN(re_word, cp)) m |= BIT_WORD;
    if (cp < 0x10000) {
        int lo = 0, hi = ap_uc_mojibake_n - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (cp < ap_uc_mojibake[mid].cp) hi = mid - 1;
            else if (cp > ap_uc_mojibake[mid].cp) lo = mid + 1;
            else return m | ap_uc_mojibake[mid].mask;
        }
    }
    return m;
}

/* ftfy.badness.is_bad: does BADNESS_RE match anywhere in s[0, n)? */
static int is_bad(const uint32_t *s, size_t n, int *bad) {
    uint64_t *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return ap_fail("tokenizer: out of memory: %zu bytes for ftfy's badness", n * 8);
    for (size_t i = 0; i < n; i++) m[i] = class_bits(s[i]);
    *bad = 0;
    for (size_t i = 0; i < n && !*bad; i++) {
        for (int p = 0; p < ap_uc_badness_n && !*bad; p++) {
            const ap_uc_pattern *pt = &ap_uc_badness[p];
            if ((pt->anchored && i > 0) || i + pt->len > n) continue;
            int k = 0;
            while (k < pt->len && (m[i + (size_t)k] & pt->pos[k])) k++;
            *bad = k == pt->len;
        }
    }
    free(m);
    return 0;
}

/* chardata.possible_encoding: every character is ASCII other than 0x1A, or
 * a character of byte 0x80..0xFF or 0x1A in encoding enc. */
static int byte_of(int enc, uint32_t cp) {
    if (cp < 0x80 && cp != 0x1A) return (int)cp;
    for (int b = 0; b < 129; b++)
        if (ap_uc_charmap[enc][b] == cp) return b == 128 ? 0x1A : 0x80 + b;
    return -1;
}

static int possible_encoding(const uint32_t *s, size_t n, int enc) {
    for (size_t i = 0; i < n; i++)
        if (byte_of(enc, s[i]) < 0) return 0;
    return 1;
}

/* A byte expression: one range list per position, each "lo hi" byte pairs. */
typedef struct {
    int len;
    const char *pos[6];
} byte_pat;

static int byte_in(const char *ranges, unsigned char b) {
    for (; ranges[0]; ranges += 2)
        if (b >= (unsigned char)ranges[0] && b <= (unsigned char)ranges[1]) return 1;
    return 0;
}

/* Length of the first alternative of pats that matches at s + i, 0 if none. */
static int match_at(const byte_pat *pats, int np, const unsigned char *s, size_t n, size_t i) {
    for (int p = 0; p < np; p++) {
        int k = 0;
        while (k < pats[p].len && i + (size_t)k < n && byte_in(pats[p].pos[k], s[i + (size_t)k]))
            k++;
        if (k == pats[p].len) return k;
    }
    return 0;
}

#define CONT_NOT_85_A0 "\x80\x84\x86\x9f\xa1\xbf"
/* chardata.ALTERED_UTF8_RE */
static const byte_pat altered_utf8[] = {
    {2, {"\xc2\xc3\xc5\xc5\xce\xce\xd0\xd0\xd9\xd9", "  "}},
    {3, {"\xe2\xe3", "  ", CONT_NOT_85_A0}},
    {3, {"\xe0\xe3", CONT_NOT_85_A0, "  "}},
    {4, {"\xf0\xf0", "  ", "\x80\xbf", "\x80\xbf"}},
    {4, {"\xf0\xf0", "\x80\xbf", "  ", "\x80\xbf"}},
    {4, {"\xf0\xf0", "\x80\xbf", "\x80\xbf", "  "}},
};
#define SUB "\x1a\x1a"
/* chardata.LOSSY_UTF8_RE */
static const byte_pat lossy_utf8[] = {
    {2, {"\xc2\xdf", SUB}},
    {2, {"\xc2\xc3", "??"}},
    {6, {"\xed\xed", "\xa0\xaf", SUB "??", "\xed\xed", "\xb0\xbf", SUB "??\x80\xbf"}},
    {6, {"\xed\xed", "\xa0\xaf", SUB "??\x80\xbf", "\xed\xed", "\xb0\xbf", SUB "??"}},
    {3, {"\xe0\xef", SUB "??", SUB "\x80\xbf"}},
    {3, {"\xe0\xef", SUB "\x80\xbf", SUB "??"}},
    {4, {"\xf0\xf4", SUB "??", SUB "\x80\xbf", SUB "\x80\xbf"}},
    {4, {"\xf0\xf4", SUB "\x80\xbf", SUB "??", SUB "\x80\xbf"}},
    {4, {"\xf0\xf4", SUB "\x80\xbf", SUB "\x80\xbf", SUB "??"}},
    {1, {SUB}},
};
#define NPAT(a) ((int)(sizeof a / sizeof a[0]))

/* fixes.restore_byte_a0 (applied when ALTERED_UTF8_RE finds something):
 * A_GRAVE_WORD_RE b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 ", then
 * the spaces inside ALTERED_UTF8_RE matches become 0xA0. */
static int restore_byte_a0(bytes *out, const bytes *in) {
    static const char *const keep[] = {" ", "quele", "quela", "quilo", "s "};
    bytes t = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && rc == 0; i++) {
        if (in->b[i] == 0xC3 && i + 1 < in->n && in->b[i + 1] == ' ') {
            int grave = 1;
            for (int k = 0; k < 5; k++) {
                size_t l = strlen(keep[k]);
                if (i + 2 + l <= in->n && !memcmp(in->b + i + 2, keep[k], l)) grave = 0;
            }
            if (grave) {
                rc = bpush(&t, "\xc3\xa0 ", 3);
                i++;
                continue;
            }
        }
        rc = bpush(&t, (const char *)in->b + i, 1);
    }
    out->n = 0;
    for (size_t i = 0; i < t.n && rc == 0;) {
        int l = match_at(altered_utf8, NPAT(altered_utf8), t.b, t.n, i);
        if (!l) {
            rc = bpush(out, (const char *)t.b + i++, 1);
            continue;
        }
        for (int k = 0; k < l && rc == 0; k++, i++)
            rc = bpush(out, t.b[i] == ' ' ? "\xa0" : (const char *)t.b + i, 1);
    }
    free(t.b);
    return rc;
}

/* Decode like ftfy's "utf-8-variants" codec (strict UTF-8 plus C0 80 as
 * U+0000 and CESU-8 surrogate pairs); 0 with *ok = 0 when it would raise. */
static int decode_utf8_variants(ap_ustr *out, const bytes *in, int *ok) {
    const unsigned char *b = in->b;
    size_t n = in->n, i = 0;
    out->n = 0;
    *ok = 0;
    while (i < n) {
        unsigned c = b[i];
        if (c < 0x80) {
            AP_TRY(ap_ustr_push(out, c));
            i++;
            continue;
        }
        /* The codec's expressions end their alternatives with "|$", and
         * Python's $ also matches before a final b"\n": then C0 0A and a
         * CESU-8 pair whose last byte is that final newline decode too (the
         * newline is consumed, as by ftfy). */
        int last_nl = i + 2 == n && b[n - 1] == '\n';
        if (c == 0xC0 && i + 1 < n && (b[i + 1] == 0x80 || last_nl)) {
            AP_TRY(ap_ustr_push(out, 0));
            i += 2;
            continue;
        }
        if (c == 0xED && i + 5 < n && b[i + 1] >= 0xA0 && b[i + 1] <= 0xAF &&
            (b[i + 2] & 0xC0) == 0x80 && b[i + 3] == 0xED && b[i + 4] >= 0xB0 &&
            b[i + 4] <= 0xBF && ((b[i + 5] & 0xC0) == 0x80 || (i + 6 == n && b[i + 5] == '\n'))) {
            uint32_t cp = ((uint32_t)(b[i + 1] & 0x0F) << 16) + ((uint32_t)(b[i + 2] & 0x3F) << 10) +
                          ((uint32_t)(b[i + 4] & 0x0F) << 6) + (b[i + 5] & 0x3F) + 0x10000;
            AP_TRY(ap_ustr_push(out, cp));
            i += 6;
            continue;
        }
        int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + (size_t)len > n) return 0;
        unsigned lo = 0x80, hi = 0xBF; /* second-byte limits of well-formed UTF-8 */
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (b[i + 1] < lo || b[i + 1] > hi) return 0;
        uint32_t cp = c & (0xFF >> (len + 1));
        for (int k = 1; k < len; k++) {
            if ((b[i + (size_t)k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (b[i + (size_t)k] & 0x3F);
        }
        AP_TRY(ap_ustr_push(out, cp));
        i += (size_t)len;
    }
    *ok = 1;
    return 0;
}

static int same(const ap_ustr *a, const uint32_t *b, size_t n) {
    return a->n == n && (n == 0 || !memcmp(a->cp, b, n * sizeof *b));
}

static int fix_encoding_span(ap_ustr *out, const uint32_t *s, size_t n);

/* fixes.decode_inconsistent_utf8: UTF8_DETECTOR_RE's matches
 *   (?<![strict])([f2][cont] | [f3][cont]{2} | [f4][cont]{3})+
 * shorter than the text and is_bad are replaced by their fix_encoding. */
static int decode_inconsistent_utf8(ap_ustr *out, const uint32_t *s, size_t n) {
    static const uint64_t lead[3] = {F2, F3, F4};
    out->n = 0;
    ap_ustr fixed = {0};
    int rc = 0;
    size_t i = 0;
    while (i < n && rc == 0) {
        size_t j = i;
        if (i == 0 || !(class_bits(s[i - 1]) & STRICT)) {
            for (;;) { /* greedy repetition, alternatives in order */
                size_t step = 0;
                for (int a = 0; a < 3 && !step; a++) {
                    if (j + (size_t)a + 2 > n || !(class_bits(s[j]) & lead[a])) continue;
                    int k = 1;
                    while (k <= a + 1 && (class_bits(s[j + (size_t)k]) & CONT)) k++;
                    if (k == a + 2) step = (size_t)a + 2;
                }
                if (!step) break;
                j += step;
            }
        }
        if (j == i) {
            rc = ap_ustr_push(out, s[i++]);
            continue;
        }
        int bad = 0;
        if (j - i < n) rc = is_bad(s + i, j - i, &bad);
        if (rc == 0 && bad) {
            rc = fix_encoding_span(&fixed, s + i, j - i);
            if (rc == 0) rc = ap_ustr_append(out, fixed.cp, fixed.n);
        } else if (rc == 0) {
            rc = ap_ustr_append(out, s + i, j - i);
        }
        i = j;
    }
    ap_ustr_free(&fixed);
    return rc;
}

/* One step of _fix_encoding_one_step_and_explain; out = s when nothing applies. */
static int fix_encoding_step(ap_ustr *out, const uint32_t *s, size_t n) {
    out->n = 0;
    int ascii = 1, bad = 0;
    for (size_t i = 0; i < n; i++) ascii &= s[i] < 0x80;
    if (n == 0 || ascii) return ap_ustr_append(out, s, n);
    AP_TRY(is_bad(s, n, &bad));
    if (!bad) return ap_ustr_append(out, s, n);
    int rc = 0, ok = 0;
    bytes enc = {0}, tmp = {0};
    for (int e = 0; e < AP_UC_NCHARMAP && rc == 0 && !ok; e++) {
        if (!possible_encoding(s, n, e)) continue;
        enc.n = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            char b = (char)byte_of(e, s[i]);
            rc = bpush(&enc, &b, 1);
        }
        int altered = 0;
        for (size_t i = 0; i < enc.n && !altered; i++)
            altered = match_at(altered_utf8, NPAT(altered_utf8), enc.b, enc.n, i) > 0;
        if (rc == 0 && altered) {
            rc = restore_byte_a0(&tmp, &enc);
            bytes t = enc;
            enc = tmp;
            tmp = t;
        }
        if (rc == 0 && e < ENC_FIRST_NOT_SLOPPY && e != ENC_LATIN1) { /* sloppy-* only */
            tmp.n = 0;
            for (size_t i = 0; i < enc.n && rc == 0;) {
                int l = match_at(lossy_utf8, NPAT(lossy_utf8), enc.b, enc.n, i);
                rc = l ? bpush(&tmp, "\xef\xbf\xbd", 3) : bpush(&tmp, (const char *)enc.b + i, 1);
                i += l ? (size_t)l : 1;
            }
            bytes t = enc;
            enc = tmp;
            tmp = t;
        }
        if (rc == 0) rc = decode_utf8_variants(out, &enc, &ok);
    }
    free(enc.b);
    free(tmp.b);
    if (rc || ok) return rc;
    AP_TRY(decode_inconsistent_utf8(out, s, n));
    if (!same(out, s, n)) return 0;
    /* Then ftfy tries latin-1 -> windows-1252 when latin-1 was possible
     * (the "windows-1252" it tests for first is never in its list, only
     * "sloppy-windows-1252"), then fix_c1_controls: both map the C1 controls
     * that windows-1252 defines and nothing else (strict windows-1252 raises
     * on the 5 it leaves undefined, then the sloppy map keeps them). */
    out->n = 0;
    for (size_t i = 0; i < n; i++)
        AP_TRY(ap_ustr_push(out, s[i] >= 0x80 && s[i] <= 0x9F ? ap_uc_c1_cp1252[s[i] - 0x80] : s[i]));
    return 0;
}

static int fix_encoding_span(ap_ustr *out, const uint32_t *s, size_t n) {
    ap_ustr cur = {0}, next = {0};
    int rc = ap_ustr_append(&cur, s, n);
    while (rc == 0) {
        rc = fix_encoding_step(&next, cur.cp, cur.n);
        if (rc || same(&next, cur.cp, cur.n)) break;
        ap_ustr t = cur;
        cur = next;
        next = t;
    }
    out->n = 0;
    if (rc == 0) rc = ap_ustr_append(out, cur.cp, cur.n);
    ap_ustr_free(&cur);
    ap_ustr_free(&next);
    return rc;
}

int ap_ftfy_fix_encoding(ap_ustr *out, const ap_ustr *s) {
    return fix_encoding_span(out, s->cp, s->n);
}
