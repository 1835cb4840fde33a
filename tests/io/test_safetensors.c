/* test_safetensors.c: the safetensors reader against files written by the
 * reference `safetensors` package, its errors on bad files, the JSON parser,
 * and a bounded fuzz run (random mutations of a valid file; run under
 * AddressSanitizer by tools/check). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "testutil.h"

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)len);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    unlink(path); /* a fresh file: rewriting in place makes ext4 flush on close */
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

static void test_reference_file(const char *path) {
    ap_st_file *f = NULL;
    int rc = ap_st_open(&f, path);
    if (!tu_check(rc == 0, "open %s%s%s", path, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_check(ap_st_count(f) == 10, "10 tensors listed (found %d)", ap_st_count(f));
    const char *g = ap_st_meta(f, "generator");
    tu_check(g && strstr(g, "io_safetensors.py"), "metadata generator = %s", g ? g : "(none)");
    ap_tensor ref, t;
    float *want = tu_fixture(f, "f32", &ref);
    tu_check(ref.ndim == 2 && ref.shape[0] == 3 && ref.shape[1] == 5, "f32 shape (3, 5)");
    const char *kinds[][2] = {{"f16", "expect.f16"}, {"bf16", "expect.bf16"}, {"f64", "expect.f64"}};
    for (int i = 0; i < 3; i++) {
        ap_tensor e;
        float *exp = tu_fixture(f, kinds[i][1], &e);
        if (ap_st_load_f32(f, kinds[i][0], 2, (int64_t[]){3, 5}, &t) == 0) {
            char what[64];
            snprintf(what, sizeof what, "%s converted to f32 (exact)", kinds[i][0]);
            tu_compare(what, t.data, exp, 15, 0, 0);
            free(t.data);
        } else {
            tu_check(0, "load %s: %s", kinds[i][0], ap_errmsg());
        }
        free(exp);
    }
    const ap_st_tensor *s = ap_st_find(f, "scalar");
    tu_check(s && s->ndim == 0 && s->numel == 1, "scalar has 0 dims and 1 element");
    const ap_st_tensor *em = ap_st_find(f, "empty");
    tu_check(em && em->numel == 0 && em->nbytes == 0, "empty tensor (0, 4) has no bytes");
    tu_expect_error("wrong expected shape",
                    ap_st_load_f32(f, "f32", 2, (int64_t[]){5, 3}, &t), path, "f32",
                    "expected shape (5, 3)", "found (3, 5)", NULL);
    tu_expect_error("missing tensor", ap_st_load_f32(f, "nope", 0, NULL, &t), path,
                    "nope", "missing", NULL);
    tu_expect_error("integer tensor as float", ap_st_load_f32(f, "i64", 0, NULL, &t),
                    "i64", "expected a floating dtype", "I64", NULL);
    free(want);
    ap_st_close(f);
}

static void test_bad_files(const unsigned char *good, size_t n, const char *tmp) {
    ap_st_file *f = NULL;
    spit(tmp, good, n / 2);
    tu_expect_error("truncated file", ap_st_open(&f, tmp), tmp, NULL);
    spit(tmp, good, 5);
    tu_expect_error("5-byte file", ap_st_open(&f, tmp), tmp, "expected at least 8 bytes", NULL);
    unsigned char *b = malloc(n);
    memcpy(b, good, n);
    b[7] = 0x40; /* huge header length */
    spit(tmp, b, n);
    tu_expect_error("header length beyond the file", ap_st_open(&f, tmp), tmp,
                    "header length", NULL);
    free(b);
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[256] = {0};
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    spit(tmp, buf, 8 + hl + 12);
    tu_expect_error("overlapping tensors", ap_st_open(&f, tmp), "overlap", NULL);
    hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    hl = strlen(hdr);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    spit(tmp, buf, 8 + hl + 8);
    tu_expect_error("byte count not matching shape", ap_st_open(&f, tmp), "tensor a",
                    "expected 12 bytes", NULL);
    hdr = "{\"a\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    hl = strlen(hdr);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    spit(tmp, buf, 8 + hl + 8);
    tu_expect_error("unknown dtype", ap_st_open(&f, tmp), "dtype", "Q8", NULL);
    tu_expect_error("missing file", ap_st_open(&f, "/nonexistent/x.safetensors"),
                    "/nonexistent/x.safetensors", "cannot open", NULL);
}

static void test_json(void) {
    ap_json *j = NULL;
    const char *txt = "{\"a\": [1, 2.5e1, -3], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\", "
                      "\"t\": true, \"n\": null, \"a\": {}}";
    int rc = ap_json_parse(&j, txt, strlen(txt), "inline");
    tu_check(rc == 0, "JSON parses (%s)", rc ? ap_errmsg() : "ok");
    if (rc) return;
    const ap_json *s = ap_json_get(j, "s");
    tu_check(s && strcmp(s->str, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0,
             "\\u escapes and surrogate pairs decode to UTF-8");
    const ap_json *a = ap_json_get(j, "a");
    tu_check(a && a->type == AP_JSON_OBJ, "duplicate key: the last one wins");
    tu_check(j->items[0].items[1].num == 25.0, "2.5e1 parses as 25");
    ap_json_free(j);
    const char *bad[] = {"{\"a\":}", "[1,]", "{\"a\" 1}", "\"abc", "01", "[1] x", "nul"};
    for (int i = 0; i < 7; i++) {
        char what[64];
        snprintf(what, sizeof what, "invalid JSON %s", bad[i]);
        tu_expect_error(what, ap_json_parse(&j, bad[i], strlen(bad[i]), "inline"),
                        "inline: JSON: expected", NULL);
    }
    char deep[300];
    memset(deep, '[', sizeof deep);
    tu_expect_error("nesting deeper than 64", ap_json_parse(&j, deep, sizeof deep, "deep"),
                    "nesting", NULL);
}

/* Deterministic mutations of a valid file: byte flips, truncation, header
 * length edits. The reader must reject or accept, never crash or leak. */
static void fuzz(const unsigned char *good, size_t n, const char *tmp, int iters) {
    unsigned char *b = malloc(n + 64);
    uint64_t s = 12345;
    int accepted = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(b, good, n);
        size_t len = n;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)((s >> 33) % 4);
        int flips = 1 + (int)((s >> 40) % 8);
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)((s >> 20) % n);
            if (kind == 0 || kind == 3) b[pos] ^= (unsigned char)(1u << ((s >> 8) % 8));
            else if (kind == 1) b[pos] = (unsigned char)(s >> 48);
            else if (kind == 2 && pos < 8) b[pos] = (unsigned char)(s >> 40);
        }
        if (kind == 3) len = (size_t)((s >> 24) % n);
        spit(tmp, b, len);
        ap_st_file *f = NULL;
        if (ap_st_open(&f, tmp) == 0) {
            accepted++;
            for (int i = 0; i < ap_st_count(f); i++) {
                const ap_st_tensor *t = ap_st_at(f, i);
                if (!ap_file_dtype_is_float(t->dtype) || t->numel > (1 << 20)) continue;
                float *d = malloc((size_t)(t->numel ? t->numel : 1) * 4);
                ap_st_read_f32(f, t->name, 0, NULL, d);
                free(d);
            }
            ap_st_close(f);
        }
        ap_err_clear();
    }
    free(b);
    tu_check(1, "fuzz: %d mutated files opened without a crash (%d accepted)", iters, accepted);
}

/* Our writer's files read back through the strict reader unchanged. */
static void test_write_roundtrip(const char *tmp) {
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7}, b[1] = {42}, c[4] = {0.25f, 0.5f, 0.75f, 1};
    ap_tensor ta = ap_t2(a, 2, 3), tb = ap_tn(b, 0, NULL), tc = ap_t3(c, 1, 2, 2);
    ap_st_entry e[3] = {{"w.weight", &ta}, {"scalar \"q\"", &tb}, {"c", &tc}};
    const char *meta[] = {"format", "pt", "note", "line\nbreak", NULL};
    int rc = ap_st_write(tmp, e, 3, meta);
    tu_check(rc == 0, "write 3 tensors with metadata%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    ap_st_file *f = NULL;
    rc = ap_st_open(&f, tmp);
    if (!tu_check(rc == 0, "strict reader accepts the written file%s%s", rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    tu_check(ap_st_count(f) == 3, "3 tensors read back");
    const char *note = ap_st_meta(f, "note");
    tu_check(note && strcmp(note, "line\nbreak") == 0, "metadata with an escaped newline");
    ap_tensor t;
    float *d = tu_fixture(f, "w.weight", &t);
    tu_check(t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3, "shape (2, 3) kept");
    tu_compare("written values (exact)", d, a, 6, 0, 0);
    free(d);
    d = tu_fixture(f, "scalar \"q\"", &t);
    tu_check(t.ndim == 0 && d[0] == 42.0f, "0-d tensor with a quoted name");
    free(d);
    ap_st_close(f);
    ap_tensor none = ap_t1(NULL, 3);
    ap_st_entry bad[1] = {{"x", &none}};
    tu_expect_error("tensor without data", ap_st_write(tmp, bad, 1, NULL), tmp, "no data", NULL);
    tu_expect_error("unwritable directory",
                    ap_st_write("/nonexistent/dir/x.safetensors", e, 1, NULL),
                    "/nonexistent/dir/x.safetensors", NULL);
}

int main(void) {
    printf("test_safetensors: reader vs the reference writer, errors, JSON, fuzz\n");
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    char path[4096], tmp[64];
    snprintf(path, sizeof path, "%s/io_safetensors_ref.safetensors", dir);
    snprintf(tmp, sizeof tmp, "/tmp/ap_test_st_%d.safetensors", (int)getpid());
    test_reference_file(path);
    test_json();
    test_write_roundtrip(tmp);
    size_t n = 0;
    unsigned char *good = slurp(path, &n);
    if (tu_check(good != NULL, "read %s", path)) {
        test_bad_files(good, n, tmp);
        fuzz(good, n, tmp, 2000);
    }
    free(good);
    unlink(tmp);
    return tu_exit();
}
