/* tokenizer.c: the CLIP BPE tokenizer (tokenizer.h): symbol tables, the
 * pre-tokenizer pattern, byte-level BPE and the HF / open_clip assembly.
 *
 * Pipeline per prompt (docs/clip.md s6, docs/hps.md s6):
 *   UTF-8 -> code points (errors="replace")
 *   HF: split around literal <|startoftext|> / <|endoftext|>, then per piece
 *       fix_text -> whitespace_clean -> lower
 *   open_clip: fix_text -> html.unescape x2 -> strip -> whitespace_clean -> lower
 *   -> pattern  special | 's|'t|'re|'ve|'m|'ll|'d | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
 *      ((?i), first alternative wins, unmatched characters skipped)
 *   -> UTF-8 bytes -> byte characters -> BPE by merge rank -> ids.
 * Later tokens never change earlier ids, so work stops once enough content
 * ids for the context are known.
 */
#include "text/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "text/bpe_impl.h"
#include "text/textclean.h"
#include "text/unicode.h"

/* ---- symbols and merges ------------------------------------------------- */

uint32_t ap_bpe_byte_char(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return (uint32_t)b;
    int n = 0; /* rank of b among the other 68 bytes */
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
    return 256u + (uint32_t)n;
}

int ap_bpe_byte_order(int i) {
    static const int ranges[3][2] = {{33, 126}, {161, 172}, {174, 255}};
    for (int r = 0; r < 3; r++) {
        int len = ranges[r][1] - ranges[r][0] + 1;
        if (i < len) return ranges[r][0] + i;
        i -= len;
    }
    for (int b = 0; b < 256; b++) /* then the other bytes in increasing order */
        if (ap_bpe_byte_char(b) >= 256 && i-- == 0) return b;
    return -1;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

ap_tokenizer *ap_bpe_new(int flavour) {
    ap_tokenizer *t = ap_calloc(1, sizeof *t, "tokenizer");
    if (!t) return NULL;
    t->flavour = flavour;
    t->slot_cap = 1 << 16;
    t->sym_slot = ap_malloc(t->slot_cap * sizeof *t->sym_slot, "tokenizer symbol table");
    t->pair_cap = 1 << 16;
    t->pairs = ap_malloc(t->pair_cap * sizeof *t->pairs, "tokenizer merge table");
    if (!t->sym_slot || !t->pairs) {
        ap_tokenizer_free(t);
        return NULL;
    }
    memset(t->sym_slot, 0xff, t->slot_cap * sizeof *t->sym_slot);
    for (size_t i = 0; i < t->pair_cap; i++) t->pairs[i].a = -1;
    return t;
}

int32_t ap_bpe_find(const ap_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->slot_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t k = t->sym_slot[i];
        if (k < 0) return -1;
        if (t->syms[k].len == n && !memcmp(t->arena + t->syms[k].off, s, n)) return k;
    }
}

static int grow_sym_slots(ap_tokenizer *t) {
    size_t cap = t->slot_cap * 2;
    int32_t *slot = ap_malloc(cap * sizeof *slot, "tokenizer symbol table");
    if (!slot) return AP_ERR;
    memset(slot, 0xff, cap * sizeof *slot);
    for (int32_t k = 0; k < t->nsym; k++) {
        size_t i = hash_bytes(t->arena + t->syms[k].off, t->syms[k].len) & (cap - 1);
        while (slot[i] >= 0) i = (i + 1) & (cap - 1);
        slot[i] = k;
    }
    free(t->sym_slot);
    t->sym_slot = slot;
    t->slot_cap = cap;
    return 0;
}

int32_t ap_bpe_intern(ap_tokenizer *t, const char *s, size_t n) {
    int32_t k = ap_bpe_find(t, s, n);
    if (k >= 0) return k;
    if (n > UINT32_MAX / 2 || t->nsym == INT32_MAX / 2)
        return ap_fail("tokenizer: symbol table full (%d symbols)", t->nsym);
    if ((size_t)t->nsym * 2 >= t->slot_cap) AP_TRY(grow_sym_slots(t));
    if (t->nsym == t->sym_cap) {
        int32_t cap = t->sym_cap ? 2 * t->sym_cap : 1024;
        ap_bpe_sym *p = realloc(t->syms, (size_t)cap * sizeof *p);
        if (!p) return ap_fail("tokenizer: out of memory for %d symbols", cap);
        t->syms = p;
        t->sym_cap = cap;
    }
    if (t->arena_n + n > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_n + n) cap *= 2;
        if (cap > UINT32_MAX) return ap_fail("tokenizer: symbol strings exceed 4 GB");
        char *p = realloc(t->arena, cap);
        if (!p) return ap_fail("tokenizer: out of memory: %zu bytes of symbol strings", cap);
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_n, s, n);
    k = t->nsym++;
    t->syms[k] = (ap_bpe_sym){(uint32_t)t->arena_n, (uint32_t)n, -1};
    t->arena_n += n;
    size_t mask = t->slot_cap - 1, i = hash_bytes(s, n) & mask;
    while (t->sym_slot[i] >= 0) i = (i + 1) & mask;
    t->sym_slot[i] = k;
    return k;
}

static ap_bpe_pair *pair_slot(const ap_tokenizer *t, int32_t a, int32_t b) {
    size_t mask = t->pair_cap - 1;
    for (size_t i = hash_pair(a, b) & mask;; i = (i + 1) & mask) {
        ap_bpe_pair *p = &t->pairs[i];
        if (p->a < 0 || (p->a == a && p->b == b)) return p;
    }
}

static int grow_pairs(ap_tokenizer *t) {
    ap_bpe_pair *old = t->pairs;
    size_t old_cap = t->pair_cap;
    t->pair_cap *= 2;
    t->pairs = ap_malloc(t->pair_cap * sizeof *t->pairs, "tokenizer merge table");
    if (!t->pairs) {
        t->pairs = old;
        t->pair_cap = old_cap;
        return AP_ERR;
    }
    for (size_t i = 0; i < t->pair_cap; i++) t->pairs[i].a = -1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].a >= 0) *pair_slot(t, old[i].a, old[i].b) = old[i];
    free(old);
    return 0;
}

int ap_bpe_add_merge(ap_tokenizer *t, int32_t a, int32_t b, int32_t rank) {
    size_t la = t->syms[a].len, lb = t->syms[b].len;
    char *buf = ap_malloc(la + lb, "merge string");
    if (!buf) return AP_ERR;
    memcpy(buf, t->arena + t->syms[a].off, la); /* copy first: intern may move the arena */
    memcpy(buf + la, t->arena + t->syms[b].off, lb);
    int32_t m = ap_bpe_intern(t, buf, la + lb);
    free(buf);
    if (m < 0) return AP_ERR;
    if (t->pair_n * 2 >= t->pair_cap) AP_TRY(grow_pairs(t));
    ap_bpe_pair *p = pair_slot(t, a, b);
    if (p->a < 0) t->pair_n++;
    *p = (ap_bpe_pair){a, b, rank, m};
    return 0;
}

int ap_bpe_add_byte_syms(ap_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        unsigned char u[8];
        int n = ap_utf8_encode(ap_bpe_byte_char(b), u);
        memcpy(u + n, "</w>", 4);
        if ((t->byte_sym[b] = ap_bpe_intern(t, (const char *)u, (size_t)n)) < 0) return AP_ERR;
        if ((t->byte_sym_end[b] = ap_bpe_intern(t, (const char *)u, (size_t)n + 4)) < 0)
            return AP_ERR;
    }
    return 0;
}

void ap_tokenizer_free(ap_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->syms);
    free(t->sym_slot);
    free(t->pairs);
    free(t);
}

int ap_tokenizer_vocab_size(const ap_tokenizer *t) { return t ? t->vocab_size : 0; }

/* ---- encoding ------------------------------------------------------------ */

typedef struct {
    const ap_tokenizer *t;
    int32_t *ids; /* content ids (cap) */
    int n, cap;   /* stop once n == cap */
    int32_t *word; /* BPE work buffer (word_cap symbols) */
    size_t word_cap;
    unsigned char *bytes;
    size_t bytes_cap;
} encoder;

static int emit(encoder *e, int32_t sym) {
    if (e->n == e->cap) return 0;
    int32_t id = e->t->syms[sym].id;
    if (id < 0) id = e->t->unk_id;
    if (id < 0) {
        const ap_bpe_sym *s = &e->t->syms[sym];
        return ap_fail("tokenize: symbol '%.*s' is not in the vocabulary (open_clip raises "
                       "KeyError here; the merges file is inconsistent)",
                       (int)s->len, e->t->arena + s->off);
    }
    e->ids[e->n++] = id;
    return 0;
}

static int32_t pair_rank(const ap_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    const ap_bpe_pair *p = pair_slot(t, a, b);
    if (p->a < 0) return INT32_MAX;
    *merged = p->merged;
    return p->rank;
}

/* BPE of the byte string bytes[0, n) (one pre-token), ids appended to e. */
static int bpe_word(encoder *e, const unsigned char *bytes, size_t n) {
    const ap_tokenizer *t = e->t;
    for (int k = 0; k < 2; k++) { /* the tokenizers' cache holds the special tokens */
        size_t len = strlen(t->special[k]);
        if (n == len && !memcmp(bytes, t->special[k], n)) {
            int32_t sym = ap_bpe_find(t, t->special[k], n);
            if (sym >= 0 && t->syms[sym].id >= 0) return emit(e, sym);
            if (t->unk_id < 0) return ap_fail("tokenize: '%s' is not in the vocabulary", t->special[k]);
            if (e->n < e->cap) e->ids[e->n++] = t->unk_id;
            return 0;
        }
    }
    if (n > e->word_cap) {
        size_t cap = n + n / 2 + 16;
        int32_t *w = realloc(e->word, cap * sizeof *w);
        if (!w) return ap_fail("tokenize: out of memory for a word of %zu bytes", n);
        e->word = w;
        e->word_cap = cap;
    }
    int32_t *w = e->word;
    size_t m = n;
    for (size_t i = 0; i < n; i++) w[i] = i + 1 < n ? t->byte_sym[bytes[i]] : t->byte_sym_end[bytes[i]];
    while (m > 1) {
        int32_t best = INT32_MAX, a = -1, b = -1, merged = -1;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t mg, r = pair_rank(t, w[i], w[i + 1], &mg);
            if (r < best) best = r, a = w[i], b = w[i + 1], merged = mg;
        }
        if (best == INT32_MAX) break;
        size_t o = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && w[i] == a && w[i + 1] == b) {
                w[o++] = merged;
                i += 2;
            } else {
                w[o++] = w[i++];
            }
        }
        m = o;
    }
    for (size_t i = 0; i < m; i++) AP_TRY(emit(e, w[i]));
    return 0;
}

static int encode_token(encoder *e, const uint32_t *cp, size_t n) {
    if (4 * n > e->bytes_cap) {
        size_t cap = 4 * n + 64;
        unsigned char *p = realloc(e->bytes, cap);
        if (!p) return ap_fail("tokenize: out of memory for a token of %zu characters", n);
        e->bytes = p;
        e->bytes_cap = cap;
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += (size_t)ap_utf8_encode(cp[i], e->bytes + nb);
    return bpe_word(e, e->bytes, nb);
}

/* Does the (?i) literal lit (ASCII) match s at i? Returns its length or 0. */
static size_t match_literal(const ap_ustr *s, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= s->n) return 0;
        char c = lit[k];
        if (c >= 'a' && c <= 'z' ? !ap_uc_fold_eq(s->cp[i + k], c) : s->cp[i + k] != (uint32_t)c)
            return 0;
    }
    return k;
}

/* re.findall of the tokenizer pattern over the lower-cased text s. */
static int pretokenize(encoder *e, const ap_ustr *s) {
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < s->n && e->n < e->cap) {
        size_t len = 0;
        for (int k = 0; k < 2 && !len; k++) len = match_literal(s, i, e->t->special[k]);
        for (int k = 0; k < 7 && !len; k++) len = match_literal(s, i, contractions[k]);
        if (!len) {
            uint32_t c = s->cp[i];
            if (AP_UC_IN(letter, c)) {
                while (i + len < s->n && AP_UC_IN(letter, s->cp[i + len])) len++;
            } else if (AP_UC_IN(number, c)) {
                len = 1;
            } else if (AP_UC_IN(other, c)) {
                while (i + len < s->n && AP_UC_IN(other, s->cp[i + len])) len++;
            } else { /* whitespace: no alternative matches here */
                i++;
                continue;
            }
        }
        AP_TRY(encode_token(e, s->cp + i, len));
        i += len;
    }
    return 0;
}

/* Clean-up of one piece of text as the flavour does it, then lower(). */
static int clean_and_lower(const ap_tokenizer *t, ap_ustr *out, const uint32_t *cp, size_t n) {
    ap_ustr a = {0}, b = {0};
    int rc = ap_ustr_append(&a, cp, n);
    if (rc == 0) rc = ap_ftfy_fix_text(&b, &a);
    if (rc == 0 && t->flavour == AP_TOK_OPENCLIP) { /* basic_clean */
        rc = ap_html_unescape(&a, &b);
        if (rc == 0) rc = ap_html_unescape(&b, &a);
        if (rc == 0) ap_py_strip(&b);
    }
    if (rc == 0) {
        ap_whitespace_clean(&b);
        rc = ap_ustr_lower(out, &b);
    }
    ap_ustr_free(&a);
    ap_ustr_free(&b);
    return rc;
}

static int encode_piece(encoder *e, const uint32_t *cp, size_t n) {
    ap_ustr low = {0};
    int rc = clean_and_lower(e->t, &low, cp, n);
    if (rc == 0) rc = pretokenize(e, &low);
    ap_ustr_free(&low);
    return rc;
}

/* Length of the literal special token of t at raw[i] (HF's no-split split). */
static size_t special_at(const ap_tokenizer *t, const ap_ustr *raw, size_t i, int *which) {
    for (int k = 0; k < 2; k++) {
        const char *s = t->special[k];
        size_t j = 0;
        while (s[j] && i + j < raw->n && raw->cp[i + j] == (uint32_t)s[j]) j++;
        if (!s[j]) {
            *which = k;
            return j;
        }
    }
    return 0;
}

static int encode_text(encoder *e, const ap_ustr *raw) {
    if (e->t->flavour == AP_TOK_OPENCLIP) return encode_piece(e, raw->cp, raw->n);
    size_t start = 0;
    for (size_t i = 0; i < raw->n && e->n < e->cap;) {
        int which = 0;
        size_t len = special_at(e->t, raw, i, &which);
        if (!len) {
            i++;
            continue;
        }
        if (i > start) AP_TRY(encode_piece(e, raw->cp + start, i - start));
        if (e->n < e->cap) e->ids[e->n++] = which == 0 ? e->t->start_id : e->t->end_id;
        i += len;
        start = i;
    }
    if (start < raw->n && e->n < e->cap) AP_TRY(encode_piece(e, raw->cp + start, raw->n - start));
    return 0;
}

int ap_tokenize(const ap_tokenizer *t, const char *text, int32_t *ids, int context_len) {
    if (!t || !text || !ids)
        return ap_fail("tokenize: NULL argument (tokenizer %p, text %p, ids %p)", (const void *)t,
                       (const void *)text, (void *)ids);
    if (context_len < 2)
        return ap_fail("tokenize: context_len must be >= 2 (start + end token), found %d",
                       context_len);
    ap_ustr raw = {0};
    encoder e = {.t = t, .cap = context_len};
    e.ids = ap_malloc((size_t)context_len * sizeof *e.ids, "tokenize ids");
    int rc = e.ids ? ap_utf8_decode(&raw, text, strlen(text)) : AP_ERR;
    if (rc == 0) rc = encode_text(&e, &raw);
    if (rc == 0) {
        int L = context_len, k = 0;
        ids[k++] = t->start_id;
        if (t->flavour == AP_TOK_HF) { /* truncate content to L-2, then add the end */
            for (int i = 0; i < e.n && i < L - 2; i++) ids[k++] = e.ids[i];
            ids[k++] = t->end_id;
        } else { /* [sot] + content + [eot], cut to L with eot last */
            for (int i = 0; i < e.n && k < L; i++) ids[k++] = e.ids[i];
            if (k < L) ids[k++] = t->end_id;
            else ids[L - 1] = t->end_id;
        }
        while (k < L) ids[k++] = t->pad_id;
    }
    free(e.ids);
    free(e.word);
    free(e.bytes);
    ap_ustr_free(&raw);
    return rc;
}
