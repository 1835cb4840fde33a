/* textclean_nfc.c: Unicode NFC, as unicodedata.normalize("NFC") of the
 * reference Python (Unicode 14.0): full canonical decomposition, canonical
 * ordering of combining marks, canonical composition (UAX #15), with the
 * tables of unicode_data.c and the Hangul syllables computed. */
#include "text/textclean.h"

#include <stddef.h>

#include "core/err.h"

enum {
    S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
    L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
    S_COUNT = L_COUNT * N_COUNT
};

static uint32_t ccc(uint32_t cp) {
    int lo = 0, hi = ap_uc_ccc_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < ap_uc_ccc[mid].lo) hi = mid - 1;
        else if (cp > ap_uc_ccc[mid].hi) lo = mid + 1;
        else return ap_uc_ccc[mid].val;
    }
    return 0;
}

static const ap_uc_triple *decomp(uint32_t cp) {
    int lo = 0, hi = ap_uc_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < ap_uc_decomp[mid].a) hi = mid - 1;
        else if (cp > ap_uc_decomp[mid].a) lo = mid + 1;
        else return &ap_uc_decomp[mid];
    }
    return NULL;
}

/* The primary composite of the pair (a, b), 0 when there is none. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    int lo = 0, hi = ap_uc_comp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const ap_uc_triple *t = &ap_uc_comp[mid];
        if (a < t->a || (a == t->a && b < t->b)) hi = mid - 1;
        else if (a > t->a || b > t->b) lo = mid + 1;
        else return t->c;
    }
    return 0;
}

static int decompose(ap_ustr *out, uint32_t cp) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        AP_TRY(ap_ustr_push(out, L_BASE + s / N_COUNT));
        AP_TRY(ap_ustr_push(out, V_BASE + (s % N_COUNT) / T_COUNT));
        return s % T_COUNT ? ap_ustr_push(out, T_BASE + s % T_COUNT) : 0;
    }
    const ap_uc_triple *d = cp >= 0xC0 ? decomp(cp) : NULL;
    if (!d) return ap_ustr_push(out, cp);
    AP_TRY(decompose(out, d->b));
    return d->c ? decompose(out, d->c) : 0;
}

int ap_nfc(ap_ustr *out, const ap_ustr *s) {
    out->n = 0;
    size_t i = 0;
    while (i < s->n && s->cp[i] < 0x300) i++; /* below U+0300 every string is NFC */
    if (i == s->n) return ap_ustr_append(out, s->cp, s->n);
    ap_ustr d = {0};
    int rc = 0;
    for (i = 0; i < s->n && rc == 0; i++) rc = decompose(&d, s->cp[i]);
    /* canonical ordering: stable sort of each run of non-starters by class */
    for (size_t k = 1; k < d.n && rc == 0; k++) {
        uint32_t c = d.cp[k], cc = ccc(c);
        size_t j = k;
        while (cc && j > 0 && ccc(d.cp[j - 1]) > cc) {
            d.cp[j] = d.cp[j - 1];
            j--;
        }
        d.cp[j] = c;
    }
    /* composition: out holds what is not composed; starter indexes the last
     * starter in it; a mark is blocked by an uncomposed character between
     * whose class is 0 or not lower than its own. */
    ptrdiff_t starter = -1;
    uint32_t last_cc = 0;
    for (i = 0; i < d.n && rc == 0; i++) {
        uint32_t c = d.cp[i], cc = ccc(c);
        if (starter >= 0 && ((size_t)starter == out->n - 1 || (last_cc && last_cc < cc))) {
            uint32_t k = compose(out->cp[starter], c);
            if (k) {
                out->cp[starter] = k;
                continue;
            }
        }
        if (cc == 0) starter = (ptrdiff_t)out->n;
        last_cc = cc;
        rc = ap_ustr_push(out, c);
    }
    ap_ustr_free(&d);
    return rc;
}
