/* test_tokenizer.c: the C CLIP tokenizer against transformers 4.30.2
 * CLIPTokenizer (HF flavour) and open_clip tokenize() (HPSv2 flavour).
 *
 *  1. Truncated BPE (tests/fixtures/tokenizer/, 3000 merges): every case of
 *     the expected-id files must match exactly (all 77 ids): the inline
 *     corpus (corpus.txt.gz) and every line of the prompt files under
 *     $AP_SHARED_DIR/data/prompts (skipped, with the reason printed, when
 *     that folder is absent).
 *  2. Full CLIP BPE when $AP_CLIP_BPE names bpe_simple_vocab_16e6.txt.gz:
 *     open_clip from that file, HF from $AP_SD_TOKENIZER_DIR/{vocab.json,
 *     merges.txt} when set, else from vocab.json/merges.txt derived from the
 *     .gz the way CLIP's are built. Skipped with a reason otherwise.
 *  3. Context lengths other than 77 (truncation rules), loader errors.
 *  4. The cleaned text itself: ap_ftfy_fix_text against ftfy.fix_text on
 *     ftfy.txt.gz (hard cases and generated mojibake), ap_nfc against
 *     unicodedata.normalize("NFC") on nfc.txt.gz; every case must match
 *     (a case listed in KNOWN_DIFFERENT would be printed, not hidden).
 *  5. Fuzz: 2000 random byte strings (invalid UTF-8 included) through both
 *     flavours: no crash (run under ASan/UBSan too), ids well-formed.
 * Token ids are integers: the tolerance is exact equality.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "text/textclean.h"
#include "text/tokenizer.h"

#define L 77

typedef struct {
    char *key;
    int32_t ids[L];
} expect_row;

typedef struct {
    expect_row *rows;
    int n;
} expect_set;

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) abort();
    return memcpy(p, s, n);
}

/* Read a whole (optionally gzip'ed) file; NULL when it cannot be read. */
static char *slurp(const char *path, size_t *n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    int r;
    while ((r = gzread(f, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)r;
        if (len == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    gzclose(f);
    if (r < 0) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (n) *n = len;
    return buf;
}

/* expected_*.txt.gz: "key<TAB>id id NxID ..." per line. */
static int load_expected(const char *path, expect_set *set) {
    char *text = slurp(path, NULL);
    if (!text) return tu_check(0, "read %s", path), -1;
    int cap = 0;
    set->n = 0;
    set->rows = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = '\0';
        if (set->n == cap) set->rows = realloc(set->rows, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *set->rows);
        expect_row *r = &set->rows[set->n++];
        r->key = xstrdup(line);
        int k = 0;
        for (char *p = tab + 1; *p && k <= L;) {
            char *end;
            long a = strtol(p, &end, 10);
            if (end == p) break;
            long count = 1, v = a;
            if (*end == 'x') {
                count = a;
                v = strtol(end + 1, &end, 10);
            }
            for (long c = 0; c < count && k < L; c++) r->ids[k++] = (int32_t)v;
            p = end;
            while (*p == ' ') p++;
        }
        if (k != L) {
            tu_check(0, "%s: case %s has %d ids, expected %d", path, r->key, k, L);
            set->n--;
        }
    }
    free(text);
    return 0;
}

static void free_expected(expect_set *s) {
    for (int i = 0; i < s->n; i++) free(s->rows[i].key);
    free(s->rows);
}

typedef struct {
    char **keys, **texts;
    int n;
} corpus;

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static void load_corpus(const char *path, corpus *c) {
    char *text = slurp(path, NULL);
    memset(c, 0, sizeof *c);
    if (!text) {
        tu_check(0, "read %s", path);
        return;
    }
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = '\0';
        size_t hn = strlen(tab + 1);
        char *s = malloc(hn / 2 + 1);
        for (size_t i = 0; i < hn / 2; i++) s[i] = (char)(hexval(tab[1 + 2 * i]) * 16 + hexval(tab[2 + 2 * i]));
        s[hn / 2] = '\0';
        c->keys = realloc(c->keys, (size_t)(c->n + 1) * sizeof *c->keys);
        c->texts = realloc(c->texts, (size_t)(c->n + 1) * sizeof *c->texts);
        c->keys[c->n] = xstrdup(line);
        c->texts[c->n++] = s;
    }
    free(text);
}

static void free_corpus(corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->keys[i]), free(c->texts[i]);
    free(c->keys);
    free(c->texts);
}

/* Text of a case: inline corpus, or line LINE of a prompt file
 * ("prompts/FILE:LINE", lines split at '\n' only). NULL when unavailable. */
static char *case_text(const corpus *c, const char *key, const char *shared) {
    if (strncmp(key, "prompts/", 8) != 0) {
        for (int i = 0; i < c->n; i++)
            if (!strcmp(c->keys[i], key)) return xstrdup(c->texts[i]);
        return NULL;
    }
    if (!shared) return NULL;
    const char *colon = strrchr(key, ':');
    char path[1024];
    snprintf(path, sizeof path, "%s/data/prompts/%.*s", shared, (int)(colon - key - 8), key + 8);
    char *text = slurp(path, NULL);
    if (!text) return NULL;
    long want = atol(colon + 1), line = 1;
    char *p = text, *out = NULL;
    while (line < want && (p = strchr(p, '\n'))) p++, line++;
    if (p) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        out = malloc(n + 1);
        memcpy(out, p, n);
        out[n] = '\0';
    }
    free(text);
    return out;
}

static void print_ids(const char *label, const int32_t *ids) {
    int last = L;
    while (last > 1 && ids[last - 1] == ids[last - 2]) last--;
    printf("         %s:", label);
    for (int i = 0; i < last && i < 40; i++) printf(" %d", ids[i]);
    if (last < L) printf(" then %d x %d", L - last, ids[L - 1]);
    printf("\n");
}

/* Compare every case of an expected file; returns the number compared. */
static int compare_set(const char *what, const ap_tokenizer *t, const char *expected_path,
                       const corpus *c, const char *shared) {
    expect_set set;
    if (load_expected(expected_path, &set)) return 0;
    int compared = 0, matched = 0, skipped_prompts = 0, shown = 0;
    for (int i = 0; i < set.n; i++) {
        char *text = case_text(c, set.rows[i].key, shared);
        if (!text) {
            if (!strncmp(set.rows[i].key, "prompts/", 8)) {
                skipped_prompts++;
                continue;
            }
            tu_check(0, "%s: case %s missing from the corpus", what, set.rows[i].key);
            continue;
        }
        int32_t ids[L];
        int rc = ap_tokenize(t, text, ids, L);
        compared++;
        if (rc == 0 && !memcmp(ids, set.rows[i].ids, sizeof ids)) {
            matched++;
        } else if (shown++ < 5) {
            printf("  mismatch %s case %s: %s\n", what, set.rows[i].key, rc ? ap_errmsg() : "");
            print_ids("got ", ids);
            print_ids("want", set.rows[i].ids);
        }
        free(text);
    }
    if (skipped_prompts)
        printf("  skip: %d prompt-file cases of %s: $AP_SHARED_DIR/data/prompts not available\n",
               skipped_prompts, what);
    tu_check(compared > 0 && matched == compared,
             "%s: %d / %d cases identical in all %d ids (%.2f%%), exact match required", what,
             matched, compared, L, compared ? 100.0 * matched / compared : 0.0);
    free_expected(&set);
    return compared;
}

/* vocab.json + merges.txt derived from an open_clip .gz, as CLIP's are. */
static int derive_hf_files(const char *gz, const char *dir) {
    size_t n;
    char *text = slurp(gz, &n);
    if (!text) return -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    FILE *fm = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *fv = fopen(path, "wb");
    if (!fm || !fv) return -1;
    /* byte characters in bytes_to_unicode order, then with </w> */
    char chars[256][4];
    int nc = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            if (printable != (pass == 0)) continue;
            unsigned cp = printable ? (unsigned)b : 256u + (unsigned)(nc - 188);
            if (cp < 0x80) chars[nc][0] = (char)cp, chars[nc][1] = 0;
            else chars[nc][0] = (char)(0xC0 | (cp >> 6)), chars[nc][1] = (char)(0x80 | (cp & 0x3F)), chars[nc][2] = 0;
            nc++;
        }
    int id = 0;
    fputc('{', fv);
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 256; i++) {
            const char *ch = chars[i];
            fprintf(fv, "%s\"%s%s%s\": %d", id ? ", " : "", (ch[0] == '"' || ch[0] == '\\') ? "\\" : "",
                    ch, w ? "</w>" : "", id);
            id++;
        }
    fputs("#version: 0.2\n", fm);
    char *p = strchr(text, '\n');
    for (int k = 0; p && k < 49152 - 256 - 2; k++) {
        char *line = p + 1, *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        fprintf(fm, "%s\n", line);
        fputs(", \"", fv);
        for (char *q = line; *q; q++)
            if (*q != ' ') fprintf(fv, "%s%c", (*q == '"' || *q == '\\') ? "\\" : "", *q);
        fprintf(fv, "\": %d", id++);
        p = nl;
    }
    fprintf(fv, ", \"<|startoftext|>\": %d, \"<|endoftext|>\": %d}", id, id + 1);
    fclose(fm);
    fclose(fv);
    free(text);
    return 0;
}

static void test_full_vocab(const corpus *c, const char *fx, const char *shared) {
    const char *gz = getenv("AP_CLIP_BPE");
    if (!gz || access(gz, R_OK) != 0) {
        printf("  skip: full-vocabulary comparison: set AP_CLIP_BPE to open_clip's "
               "bpe_simple_vocab_16e6.txt.gz (e.g. .venv-ref/lib/python3*/site-packages/"
               "open_clip/ after tools/make_fixtures.py tokenizer)\n");
        return;
    }
    char path[1200], v[1200], m[1200], dir[] = "/tmp/ap_tok_XXXXXX";
    ap_tokenizer *oc = NULL, *hf = NULL;
    if (tu_check(ap_tokenizer_load_openclip(&oc, gz) == 0, "load open_clip full BPE %s %s", gz,
                 ap_errmsg())) {
        tu_check(ap_tokenizer_vocab_size(oc) == 49408, "open_clip full vocab size %d == 49408",
                 ap_tokenizer_vocab_size(oc));
        snprintf(path, sizeof path, "%s/tokenizer/expected_openclip_full.txt.gz", fx);
        compare_set("open_clip full", oc, path, c, shared);
    }
    const char *sd = getenv("AP_SD_TOKENIZER_DIR");
    int derived = !sd;
    if (derived) {
        if (!mkdtemp(dir) || derive_hf_files(gz, dir)) {
            tu_check(0, "derive vocab.json/merges.txt from %s into %s", gz, dir);
            ap_tokenizer_free(oc);
            return;
        }
        sd = dir;
    }
    snprintf(v, sizeof v, "%s/vocab.json", sd);
    snprintf(m, sizeof m, "%s/merges.txt", sd);
    if (tu_check(ap_tokenizer_load_hf(&hf, v, m) == 0, "load HF full vocab %s (%s) %s", sd,
                 derived ? "derived from the .gz" : "AP_SD_TOKENIZER_DIR", ap_errmsg())) {
        tu_check(ap_tokenizer_vocab_size(hf) == 49408, "HF full vocab size %d == 49408",
                 ap_tokenizer_vocab_size(hf));
        snprintf(path, sizeof path, "%s/tokenizer/expected_hf_full.txt.gz", fx);
        compare_set("HF full", hf, path, c, shared);
        int32_t ids[L];
        ap_tokenize(hf, "a photo of a cat", ids, L); /* docs/clip.md §6 worked example */
        const int32_t want[7] = {49406, 320, 1125, 539, 320, 2368, 49407};
        tu_check(!memcmp(ids, want, sizeof want) && ids[76] == 49407,
                 "docs example 'a photo of a cat' (HF full)");
    }
    if (derived) {
        unlink(v);
        unlink(m);
        rmdir(dir);
    }
    ap_tokenizer_free(hf);
    ap_tokenizer_free(oc);
}

/* Truncation at other context lengths, derived from the 77-id result of a
 * case with fewer than 75 content ids. */
static void test_context_lengths(const ap_tokenizer *hf, const ap_tokenizer *oc) {
    const char *text = "a highly detailed photo of a cat sitting on a red chair";
    int32_t full[L], ids[L];
    int ok = 1;
    for (int f = 0; f < 2; f++) {
        const ap_tokenizer *t = f ? oc : hf;
        ap_tokenize(t, text, full, L);
        int n = 1;
        while (full[n] != full[0] + 1) n++; /* end id = start id + 1 in both layouts */
        int content = n - 1;
        for (int len = 2; len <= 16; len++) {
            ok &= ap_tokenize(t, text, ids, len) == 0;
            int keep = content < len - 2 ? content : len - 2, k = 0;
            ok &= ids[k++] == full[0];
            for (int i = 0; i < keep; i++) ok &= ids[k++] == full[1 + i];
            ok &= ids[k++] == full[0] + 1;
            for (; k < len; k++) ok &= ids[k] == (f ? 0 : full[0] + 1);
        }
    }
    tu_check(ok, "context lengths 2..16: [start] + first L-2 content ids + [end] + padding "
                 "(HF pad = end id, open_clip pad = 0)");
}

static void put_file(const char *dir, const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

/* pad_token as CLIPTokenizer.from_pretrained (4.30.2) resolves it:
 * special_tokens_map.json over tokenizer_config.json over <|endoftext|>
 * (SD 2.x pads with "!" = 0; docs/clip.md §6). The padding of "" shows it. */
static void test_pad_token(void) {
    char dir[] = "/tmp/ap_tok_pad_XXXXXX", v[1100], m[1100], path[1100];
    if (!tu_check(mkdtemp(dir) != NULL, "temporary tokenizer folder")) return;
    put_file(dir, "vocab.json", "{\"!\": 0, \"x\": 7, \"<|startoftext|>\": 8, \"<|endoftext|>\": 9}");
    put_file(dir, "merges.txt", "#version: 0.2\n");
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    static const struct { const char *map, *config; int pad; const char *what; } cases[] = {
        {NULL, NULL, 9, "no special-token files: <|endoftext|>"},
        {NULL, "{\"pad_token\": \"!\"}", 0, "tokenizer_config.json \"!\" (SD 2.x)"},
        {"{\"pad_token\": {\"content\": \"x\", \"lstrip\": false}}", "{\"pad_token\": \"!\"}", 7,
         "special_tokens_map.json AddedToken \"x\" over tokenizer_config.json"},
        {"{\"bos_token\": \"<|startoftext|>\"}", "{\"pad_token\": \"!\"}", 0,
         "special_tokens_map.json without pad_token: tokenizer_config.json's"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        unlink(path);
        if (cases[i].map) put_file(dir, "special_tokens_map.json", cases[i].map);
        if (cases[i].config) put_file(dir, "tokenizer_config.json", cases[i].config);
        ap_tokenizer *t = NULL;
        int32_t ids[4] = {-1, -1, -1, -1};
        int rc = ap_tokenizer_load_hf(&t, v, m);
        if (!rc) rc = ap_tokenizer_hf_pad_from_dir(t, dir);
        if (!rc) rc = ap_tokenize(t, "", ids, 4);
        tu_check(rc == 0 && ids[0] == 8 && ids[1] == 9 && ids[2] == cases[i].pad &&
                     ids[3] == cases[i].pad,
                 "pad_token: %s -> \"\" is [8, 9, %d, %d] (found [%d, %d, %d, %d])%s%s",
                 cases[i].what, cases[i].pad, cases[i].pad, ids[0], ids[1], ids[2], ids[3],
                 rc ? ": " : "", rc ? ap_errmsg() : "");
        ap_tokenizer_free(t);
    }
    ap_tokenizer *t = NULL;
    if (ap_tokenizer_load_hf(&t, v, m) == 0) {
        put_file(dir, "special_tokens_map.json", "{\"pad_token\": \"<pad>\"}");
        tu_expect_error("pad_token not in the vocabulary", ap_tokenizer_hf_pad_from_dir(t, dir),
                        "special_tokens_map.json", "<pad>", "not in vocab.json", NULL);
        put_file(dir, "special_tokens_map.json", "{\"pad_token\": 5}");
        tu_expect_error("pad_token a number", ap_tokenizer_hf_pad_from_dir(t, dir),
                        "special_tokens_map.json", "pad_token", "a string", "number", NULL);
        ap_tokenizer_free(t);
    }
    static const char *const files[] = {"special_tokens_map.json", "tokenizer_config.json",
                                        "vocab.json", "merges.txt"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_errors(const char *fx, const ap_tokenizer *hf) {
    ap_tokenizer *t = NULL;
    int32_t ids[L];
    char v[1100], dir[] = "/tmp/ap_tok_XXXXXX", path[1100];
    tu_expect_error("missing gz", ap_tokenizer_load_openclip(&t, "/nonexistent/bpe.txt.gz"),
                    "/nonexistent/bpe.txt.gz", "cannot open", NULL);
    snprintf(v, sizeof v, "%s/tokenizer/vocab.json", fx);
    tu_expect_error("missing merges", ap_tokenizer_load_hf(&t, v, "/nonexistent/merges.txt"),
                    "/nonexistent/merges.txt", NULL);
    tu_expect_error("context_len 1", ap_tokenize(hf, "x", ids, 1), "context_len", ">= 2", "1",
                    NULL);
    tu_expect_error("NULL text", ap_tokenize(hf, NULL, ids, L), "NULL", NULL);
    if (!mkdtemp(dir)) return;
    static const struct { const char *json, *needle; } bad[] = {
        {"{\"a\": 1, \"b\" 2}", "JSON"},
        {"{\"a\": 1.5}", "integer id"},
        {"{\"a\": \"x\"}", "integer id"},
        {"[1, 2]", "expected an object"},
        {"{\"a\": -3}", "non-negative"},
        {"{\"<|startoftext|>\": 0}", "<|endoftext|>"},
    };
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    char merges[1100];
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    FILE *f = fopen(merges, "w");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        fputs(bad[i].json, f);
        fclose(f);
        char what[128];
        snprintf(what, sizeof what, "vocab.json '%s'", bad[i].json);
        tu_expect_error(what, ap_tokenizer_load_hf(&t, path, merges), "vocab.json",
                        bad[i].needle, NULL);
    }
    f = fopen(path, "w");
    fputs("{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1}", f);
    fclose(f);
    f = fopen(merges, "w");
    fputs("#version: 0.2\na \xff\n", f);
    fclose(f);
    tu_expect_error("merges.txt with invalid UTF-8", ap_tokenizer_load_hf(&t, path, merges),
                    "merges.txt", "UTF-8", NULL);
    unlink(path);
    unlink(merges);
    rmdir(dir);
}

/* Inputs on which the C ftfy is known to differ from ftfy 6.1.1 (none):
 * listed cases are printed as differences, not failures. */
static const char *const KNOWN_DIFFERENT[] = {NULL};

static int is_known_different(const char *key) {
    for (int i = 0; KNOWN_DIFFERENT[i]; i++)
        if (!strcmp(KNOWN_DIFFERENT[i], key)) return 1;
    return 0;
}

/* Hex field [p, end) as bytes into buf (NUL-terminated); returns the length. */
static size_t unhex(const char *p, const char *end, char *buf) {
    size_t n = (size_t)(end - p) / 2;
    for (size_t i = 0; i < n; i++) buf[i] = (char)(hexval(p[2 * i]) * 16 + hexval(p[2 * i + 1]));
    buf[n] = '\0';
    return n;
}

static void print_ustr(const char *label, const ap_ustr *u) {
    printf("      %s:", label);
    for (size_t i = 0; i < u->n && i < 40; i++)
        printf(u->cp[i] >= 0x20 && u->cp[i] < 0x7F ? " %c" : " U+%04X", (unsigned)u->cp[i]);
    printf("%s\n", u->n > 40 ? " ..." : "");
}

/* Lines "[key<TAB>]hex(in)<TAB>hex(expected)"; fn(out, in) must give expected. */
static void compare_text_file(const char *what, const char *path, int keyed,
                              int (*fn)(ap_ustr *, const ap_ustr *)) {
    char *text = slurp(path, NULL);
    if (!tu_check(text != NULL, "%s: read %s", what, path)) return;
    int n = 0, bad = 0, known = 0, changed = 0;
    ap_ustr in = {0}, want = {0}, got = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *key = keyed ? line : NULL, *a = line;
        if (keyed) {
            if (!(a = strchr(line, '\t'))) continue;
            *a++ = '\0';
        }
        char *b = strchr(a, '\t');
        if (!b) continue;
        size_t la = (size_t)(b - a), lb = strlen(b + 1);
        char *buf = malloc((la > lb ? la : lb) / 2 + 1);
        size_t nb = unhex(a, b, buf);
        in.n = want.n = 0; /* ap_utf8_decode appends */
        int rc = ap_utf8_decode(&in, buf, nb);
        nb = unhex(b + 1, b + 1 + lb, buf);
        if (rc == 0) rc = ap_utf8_decode(&want, buf, nb);
        free(buf);
        if (rc == 0) rc = fn(&got, &in);
        n++;
        int same = rc == 0 && got.n == want.n &&
                   (got.n == 0 || !memcmp(got.cp, want.cp, got.n * sizeof *got.cp));
        changed += want.n != in.n || (in.n && memcmp(want.cp, in.cp, in.n * sizeof *in.cp));
        if (same) continue;
        int kd = key && is_known_different(key);
        known += kd;
        bad += !kd;
        if (kd || bad <= 5) {
            printf("    %s %s case %s%s\n", kd ? "KNOWN DIFFERENT" : "MISMATCH", what,
                   key ? key : "", rc ? ap_errmsg() : "");
            print_ustr("input   ", &in);
            print_ustr("expected", &want);
            print_ustr("C       ", &got);
        }
    }
    tu_check(bad == 0 && n > 0, "%s: %d cases (%d changed by the reference), %d mismatches, "
             "%d known different (exact code points)", what, n, changed, bad, known);
    ap_ustr_free(&in);
    ap_ustr_free(&want);
    ap_ustr_free(&got);
    free(text);
}

static void test_clean_text(const char *fx) {
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer/ftfy.txt.gz", fx);
    compare_text_file("ftfy.fix_text", path, 1, ap_ftfy_fix_text);
    snprintf(path, sizeof path, "%s/tokenizer/nfc.txt.gz", fx);
    compare_text_file("NFC", path, 0, ap_nfc);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A random code point of the ranges ftfy's fix_encoding and NFC look at:
 * Latin-1 and windows-1252 characters, C1 controls, Greek, Cyrillic, box
 * drawing, combining marks, Hangul jamo, U+FFFD, U+001A, ASCII. */
static uint32_t mojibake_cp(uint64_t r) {
    static const uint32_t ranges[][2] = {
        {0xA0, 0xFF}, {0x80, 0x9F}, {0x152, 0x17E}, {0x2013, 0x203A}, {0x20AC, 0x20AC},
        {0x2122, 0x2122}, {0x384, 0x3CE}, {0x401, 0x45F}, {0x2500, 0x259F}, {0x300, 0x36F},
        {0x1100, 0x1112}, {0x1161, 0x1175}, {0x11A8, 0x11C2}, {0xFFFD, 0xFFFD}, {0x1A, 0x1A},
        {0x20, 0x7E}, {0x20, 0x7E}, {0x2C6, 0x2DD}, {0x192, 0x192}, {0x221A, 0x2265}};
    const uint32_t *g = ranges[(r >> 8) % (sizeof ranges / sizeof ranges[0])];
    return g[0] + (uint32_t)((r >> 20) % (g[1] - g[0] + 1));
}

/* 2000 random strings: odd ones invalid UTF-8 bytes, NUL-free, biased
 * towards the bytes the tokenizer cares about (ASCII, UTF-8 lead and
 * continuation bytes, '&', '<', '\'', specials); even ones valid UTF-8 of
 * mojibake_cp characters, for ftfy's fix_encoding and NFC. */
static void test_fuzz(const ap_tokenizer *hf, const ap_tokenizer *oc) {
    static const char *frags[] = {"<|endoftext|>", "<|startoftext|>", "<start_of_text>", "&amp;",
                                  "&#x41;", "&#", "'s", "\xce\xa3", "\xc4\xb0", "\x1b[3",
                                  "\xef\xac\x81", "\r\n", "&lt;", "\xe2\x80\x9c", " ",
                                  "\xc3\xa2\xe2\x82\xac", "\xc3\x83", "e\xcc\x81", "\n<"};
    uint64_t s = 20231005;
    char buf[700];
    int bad = 0, iters = 2000; /* AP_FUZZ_ITERS overrides, for longer sanitizer runs */
    if (getenv("AP_FUZZ_ITERS")) iters = atoi(getenv("AP_FUZZ_ITERS"));
    clock_t t0 = clock();
    for (int it = 0; it < iters; it++) {
        int n = (int)(rng_next(&s) % 600), k = 0;
        while (k < n) {
            uint64_t r = rng_next(&s);
            if (r % 10 == 0) {
                const char *f = frags[(r >> 8) % (sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (k + (int)fl >= n) break;
                memcpy(buf + k, f, fl);
                k += (int)fl;
                continue;
            }
            if (it % 2 == 0) {
                unsigned char u[4];
                int ul = ap_utf8_encode(mojibake_cp(r), u);
                if (k + ul >= n) break;
                memcpy(buf + k, u, (size_t)ul);
                k += ul;
                continue;
            }
            unsigned b = (unsigned)(r >> 16) & 0xFF;
            if (r % 3 == 0) b = 0x20 + (unsigned)((r >> 24) % 95); /* printable ASCII */
            buf[k++] = (char)(b ? b : 'x');
        }
        buf[k] = '\0';
        for (int f = 0; f < 2; f++) {
            const ap_tokenizer *t = f ? oc : hf;
            int32_t ids[L];
            if (ap_tokenize(t, buf, ids, L)) {
                if (bad++ < 3) printf("  fuzz case %d: error %s\n", it, ap_errmsg());
                continue;
            }
            int vs = ap_tokenizer_vocab_size(t), ok = ids[0] == vs - 2, seen_end = 0;
            for (int i = 1; i < L; i++) {
                ok &= ids[i] >= 0 && ids[i] < vs;
                if (f && seen_end) ok &= ids[i] == 0;
                seen_end |= ids[i] == vs - 1;
            }
            ok &= seen_end;
            if (!ok && bad++ < 3) printf("  fuzz case %d: malformed ids\n", it);
        }
    }
    double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
    tu_check(bad == 0, "fuzz: %d random strings (<= 600 bytes, half invalid UTF-8, half mojibake-like) x 2 flavours, "
                       "%d failures, %.2f s CPU", iters, bad, sec);
    tu_check(sec < 10.0 * iters / 2000, "fuzz time %.2f s < 10 s per 2000 cases", sec);
}

int main(void) {
    const char *fx = tu_fixtures_dir(), *shared = tu_shared_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR not set or missing");
    char v[1100], m[1100], g[1100], path[1100];
    snprintf(v, sizeof v, "%s/tokenizer/vocab.json", fx);
    snprintf(m, sizeof m, "%s/tokenizer/merges.txt", fx);
    snprintf(g, sizeof g, "%s/tokenizer/bpe_trunc.txt.gz", fx);
    printf("test_tokenizer: C tokenizer vs transformers CLIPTokenizer / open_clip tokenize\n");
    if (!shared) printf("  note: AP_SHARED_DIR not set or missing: prompt-file cases skipped\n");
    corpus c;
    snprintf(path, sizeof path, "%s/tokenizer/corpus.txt.gz", fx);
    load_corpus(path, &c);
    ap_tokenizer *hf = NULL, *oc = NULL;
    if (!tu_check(ap_tokenizer_load_hf(&hf, v, m) == 0, "load HF truncated %s", ap_errmsg()) ||
        !tu_check(ap_tokenizer_load_openclip(&oc, g) == 0, "load open_clip truncated %s",
                  ap_errmsg())) {
        ap_tokenizer_free(hf);
        free_corpus(&c);
        return tu_exit();
    }
    tu_check(ap_tokenizer_vocab_size(hf) == 3514 && ap_tokenizer_vocab_size(oc) == 3514,
             "truncated vocab sizes HF %d, open_clip %d == 512 + 3000 + 2",
             ap_tokenizer_vocab_size(hf), ap_tokenizer_vocab_size(oc));
    snprintf(path, sizeof path, "%s/tokenizer/expected_hf_trunc.txt.gz", fx);
    compare_set("HF trunc", hf, path, &c, shared);
    snprintf(path, sizeof path, "%s/tokenizer/expected_openclip_trunc.txt.gz", fx);
    compare_set("open_clip trunc", oc, path, &c, shared);
    test_full_vocab(&c, fx, shared);
    test_context_lengths(hf, oc);
    test_errors(fx, hf);
    test_pad_token();
    test_clean_text(fx);
    test_fuzz(hf, oc);
    ap_tokenizer_free(hf);
    ap_tokenizer_free(oc);
    free_corpus(&c);
    return tu_exit();
}
