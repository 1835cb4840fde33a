/* tokenizer_load.c: reading the tokenizer files into the symbol tables.
 *
 *  - vocab.json: a flat JSON object token -> integer id (io/json.h;
 *    duplicate keys: the last wins, as json.load).
 *  - merges.txt: read as CLIPTokenizer does: universal newlines, strip(),
 *    split("\n")[1:48895], each line split on whitespace; a pair's rank is
 *    its line index (a repeated pair keeps the later rank).
 *  - bpe_simple_vocab_16e6.txt.gz: read as open_clip's SimpleTokenizer does:
 *    split("\n")[1:48895] without strip; the vocabulary is the 256 byte
 *    characters, the same with "</w>", the joined merge lines, then
 *    <start_of_text>, <end_of_text> (dict(zip(vocab, range)): last wins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/err.h"
#include "io/json.h"
#include "text/bpe_impl.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

#define AP_CLIP_MERGES (49152 - 256 - 2) /* merges used by both tokenizers */

static int read_file(const char *path, char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open", path);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *p = realloc(buf, 2 * cap + 1);
        if (!p) free(buf);
        buf = p;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return ap_fail("%s: out of memory reading the file", path);
    if (err) {
        free(buf);
        return ap_fail("%s: read error", path);
    }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return 0;
}

static int read_gz(const char *path, char **out, size_t *n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open", path);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    int r = 0;
    while (buf) {
        r = gzread(f, buf + len, (unsigned)(cap - len));
        if (r <= 0) break;
        len += (size_t)r;
        if (len == cap) {
            char *p = realloc(buf, 2 * cap + 1);
            if (!p) free(buf);
            buf = p;
            cap *= 2;
        }
    }
    int zerr = 0;
    const char *zmsg = r < 0 ? gzerror(f, &zerr) : NULL;
    char msg[160] = "";
    if (zmsg) snprintf(msg, sizeof msg, "%s", zmsg);
    gzclose(f);
    if (!buf) return ap_fail("%s: out of memory reading the file", path);
    if (r < 0) {
        free(buf);
        return ap_fail("%s: gzip error: %s", path, msg);
    }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return 0;
}

/* ---- vocab.json ------------------------------------------------------------ */

/* vocab.json: an object token -> non-negative integer id, parsed with
 * io/json.h; a repeated key: the last wins (json.load). */
static int load_vocab_json(ap_tokenizer *t, const char *path) {
    ap_json *j;
    AP_TRY(ap_json_parse_file(&j, path));
    int rc = 0;
    if (j->type != AP_JSON_OBJ)
        rc = ap_fail("%s: expected an object token -> id, found %s", path,
                     ap_json_type_name(j->type));
    for (size_t i = 0; rc == 0 && i < j->len; i++) {
        const ap_json *v = &j->items[i];
        if (v->type != AP_JSON_NUM || !(v->num >= 0 && v->num <= INT32_MAX) ||
            v->num != (double)(int32_t)v->num) {
            rc = ap_fail("%s: token \"%s\": expected a non-negative integer id, found %s%s", path,
                         j->keys[i], ap_json_type_name(v->type),
                         v->type == AP_JSON_NUM ? " (not a non-negative integer)" : "");
            break;
        }
        int32_t sym = ap_bpe_intern(t, j->keys[i], strlen(j->keys[i]));
        if (sym < 0) {
            rc = AP_ERR;
            break;
        }
        t->syms[sym].id = (int32_t)v->num;
        if (t->syms[sym].id >= t->vocab_size) t->vocab_size = t->syms[sym].id + 1;
    }
    ap_json_free(j);
    return rc;
}

/* ---- merges --------------------------------------------------------------- */

/* Python str.split() of one line: the whitespace-separated parts (at most
 * max_parts recorded, the count returned in *np). */
static int split_line(const char *s, size_t n, ap_ustr *u, size_t start[3], size_t end[3], int *np) {
    u->n = 0;
    AP_TRY(ap_utf8_decode(u, s, n));
    *np = 0;
    for (size_t i = 0; i < u->n;) {
        while (i < u->n && AP_UC_IN(pyspace, u->cp[i])) i++;
        if (i == u->n) break;
        size_t a = i;
        while (i < u->n && !AP_UC_IN(pyspace, u->cp[i])) i++;
        if (*np < 3) start[*np] = a, end[*np] = i;
        (*np)++;
    }
    return 0;
}

/* Intern the code points u[a, b) as a UTF-8 symbol. */
static int intern_cps(ap_tokenizer *t, const ap_ustr *u, size_t a, size_t b, int32_t *sym) {
    unsigned char *buf = ap_malloc(4 * (b - a) + 1, "merge part");
    if (!buf) return AP_ERR;
    size_t n = 0;
    for (size_t i = a; i < b; i++) n += (size_t)ap_utf8_encode(u->cp[i], buf + n);
    *sym = ap_bpe_intern(t, (const char *)buf, n);
    free(buf);
    return *sym < 0 ? AP_ERR : 0;
}

/* Lines [1, 1 + AP_CLIP_MERGES) of text (line 0 is the header). A line of
 * two parts is a merge of rank = its index; for open_clip every line also
 * becomes vocabulary entry 512 + index (''.join(line.split())).
 * *nlines: the number of lines used. */
static int add_merges(ap_tokenizer *t, const char *path, const char *text, size_t n, int32_t *nlines) {
    ap_ustr u = {0}, joined = {0};
    int rc = 0;
    int32_t k = -1; /* line index, header = -1 */
    size_t pos = 0;
    while (rc == 0 && k < AP_CLIP_MERGES) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - text) : n;
        if (k >= 0) {
            size_t a[3], b[3];
            int np;
            int32_t sa, sb, sym;
            rc = split_line(text + pos, end - pos, &u, a, b, &np);
            if (rc == 0 && np == 2) {
                rc = intern_cps(t, &u, a[0], b[0], &sa);
                if (rc == 0) rc = intern_cps(t, &u, a[1], b[1], &sb);
                if (rc == 0) rc = ap_bpe_add_merge(t, sa, sb, k);
            }
            if (rc == 0 && t->flavour == AP_TOK_OPENCLIP) {
                joined.n = 0;
                for (size_t i = 0; i < u.n && rc == 0; i++)
                    if (!AP_UC_IN(pyspace, u.cp[i])) rc = ap_ustr_push(&joined, u.cp[i]);
                if (rc == 0) rc = intern_cps(t, &joined, 0, joined.n, &sym);
                if (rc == 0) t->syms[sym].id = 512 + k;
            }
            if (rc) ap_err_prefix("%s: line %d: ", path, k + 2);
        }
        k++;
        if (!nl) break;
        pos = end + 1;
    }
    ap_ustr_free(&u);
    ap_ustr_free(&joined);
    *nlines = k;
    return rc;
}

/* Python's open(encoding="utf-8").read().strip() of merges.txt: universal
 * newlines, then surrounding whitespace removed. In place; returns the length. */
static size_t hf_normalise(char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            s[w++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            s[w++] = s[i];
        }
    }
    size_t a = 0;
    while (a < w && strchr(" \t\n\v\f\x1c\x1d\x1e\x1f", s[a]) && s[a]) a++;
    while (w > a && strchr(" \t\n\v\f\x1c\x1d\x1e\x1f", s[w - 1]) && s[w - 1]) w--;
    memmove(s, s + a, w - a);
    return w - a;
}

/* Python's decode("utf-8") is strict: valid iff decoding with replacement
 * and re-encoding gives the same bytes back. */
static int check_utf8(const char *path, const char *s, size_t n) {
    ap_ustr u = {0};
    int rc = ap_utf8_decode(&u, s, n);
    size_t pos = 0;
    for (size_t i = 0; rc == 0 && i < u.n; i++) {
        unsigned char b[4];
        int m = ap_utf8_encode(u.cp[i], b);
        if (pos + (size_t)m > n || memcmp(s + pos, b, (size_t)m)) {
            rc = ap_fail("%s: byte %zu: not valid UTF-8 (Python's decode('utf-8') raises)", path, pos);
            break;
        }
        pos += (size_t)m;
    }
    ap_ustr_free(&u);
    return rc;
}

int ap_tokenizer_load_hf(ap_tokenizer **out, const char *vocab_json, const char *merges_txt) {
    *out = NULL;
    ap_tokenizer *t = ap_bpe_new(AP_TOK_HF);
    if (!t) return AP_ERR;
    t->special[0] = "<|startoftext|>";
    t->special[1] = "<|endoftext|>";
    char *text = NULL;
    size_t n = 0;
    int32_t nlines;
    int rc = load_vocab_json(t, vocab_json);
    if (rc == 0) rc = ap_bpe_add_byte_syms(t);
    if (rc == 0) rc = read_file(merges_txt, &text, &n);
    if (rc == 0) rc = check_utf8(merges_txt, text, n);
    if (rc == 0) rc = add_merges(t, merges_txt, text, hf_normalise(text, n), &nlines);
    free(text);
    if (rc == 0) {
        int32_t s = ap_bpe_find(t, t->special[0], strlen(t->special[0]));
        int32_t e = ap_bpe_find(t, t->special[1], strlen(t->special[1]));
        if (s < 0 || e < 0 || t->syms[s].id < 0 || t->syms[e].id < 0)
            rc = ap_fail("%s: <|startoftext|> and <|endoftext|> must both be in the vocabulary",
                         vocab_json);
        else {
            t->start_id = t->syms[s].id;
            t->end_id = t->pad_id = t->unk_id = t->syms[e].id; /* SD: pad = unk = eos */
        }
    }
    if (rc) {
        ap_tokenizer_free(t);
        return AP_ERR;
    }
    *out = t;
    return 0;
}

int ap_tokenizer_load_openclip(ap_tokenizer **out, const char *bpe_gz) {
    *out = NULL;
    ap_tokenizer *t = ap_bpe_new(AP_TOK_OPENCLIP);
    if (!t) return AP_ERR;
    t->special[0] = "<start_of_text>";
    t->special[1] = "<end_of_text>";
    t->unk_id = -1;
    char *text = NULL;
    size_t n = 0;
    int32_t nlines = 0;
    int rc = ap_bpe_add_byte_syms(t);
    for (int i = 0; rc == 0 && i < 256; i++) { /* ids 0..511 in bytes_to_unicode order */
        int b = ap_bpe_byte_order(i);
        t->syms[t->byte_sym[b]].id = i;
        t->syms[t->byte_sym_end[b]].id = 256 + i;
    }
    if (rc == 0) rc = read_gz(bpe_gz, &text, &n);
    if (rc == 0) rc = check_utf8(bpe_gz, text, n);
    if (rc == 0) rc = add_merges(t, bpe_gz, text, n, &nlines);
    free(text);
    for (int k = 0; rc == 0 && k < 2; k++) {
        int32_t sym = ap_bpe_intern(t, t->special[k], strlen(t->special[k]));
        if (sym < 0) rc = AP_ERR;
        else t->syms[sym].id = 512 + nlines + k;
    }
    if (rc) {
        ap_tokenizer_free(t);
        return AP_ERR;
    }
    t->start_id = 512 + nlines;
    t->end_id = 512 + nlines + 1;
    t->pad_id = 0;
    t->vocab_size = 512 + nlines + 2;
    *out = t;
    return 0;
}

/* pad_token of a tokenizer folder as CLIPTokenizer.from_pretrained resolves
 * it (transformers 4.30.2): special_tokens_map.json overrides
 * tokenizer_config.json, which overrides the class default <|endoftext|>.
 * SD 2.x's folder says "!" (id 0); SD v1.5's "<|endoftext|>" (docs/clip.md §6).
 * A value is a string or an AddedToken object {"content": ...}. */
static int pad_from_file(const char *path, char *tok, size_t n, int *found) {
    ap_json *j = NULL;
    AP_TRY(ap_json_parse_file(&j, path));
    const ap_json *v = j->type == AP_JSON_OBJ ? ap_json_get(j, "pad_token") : NULL;
    if (v && v->type == AP_JSON_OBJ) v = ap_json_get(v, "content");
    int rc = AP_OK;
    if (v && v->type == AP_JSON_STR) {
        if (strlen(v->str) >= n)
            rc = ap_fail("%s: key pad_token: expected a token of under %zu bytes, found \"%.40s...\"",
                         path, n, v->str);
        else snprintf(tok, n, "%s", v->str), *found = 1;
    } else if (v && v->type != AP_JSON_NULL) {
        rc = ap_fail("%s: key pad_token: expected a string or {\"content\": string}, found %s",
                     path, ap_json_type_name(v->type));
    }
    ap_json_free(j);
    return rc;
}

int ap_tokenizer_hf_pad_from_dir(ap_tokenizer *t, const char *dir) {
    static const char *const files[2] = {"special_tokens_map.json", "tokenizer_config.json"};
    char tok[256] = "<|endoftext|>", path[4096];
    int found = 0;
    for (int k = 0; k < 2 && !found; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        AP_TRY(pad_from_file(path, tok, sizeof tok, &found));
    }
    int32_t s = ap_bpe_find(t, tok, strlen(tok));
    if (s < 0 || t->syms[s].id < 0)
        return ap_fail("%s: pad_token \"%s\" (from %s) is not in vocab.json", dir, tok,
                       found ? path : "CLIPTokenizer's default");
    t->pad_id = t->syms[s].id;
    return AP_OK;
}
