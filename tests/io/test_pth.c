/* test_pth.c: the PyTorch zip-checkpoint reader (src/io/pth.c, zip.c, pickle.c).
 *
 * 1. AlignProp's real aesthetic MLP ($AP_SHARED_DIR, skipped with a reason when
 *    absent): names, shapes, strides as in docs/formats.md §4.3, values vs numbers
 *    torch computed (tools/fixtures/io_pth.py), a truncated copy.
 * 2. Files written by torch.save 1.13 (tests/fixtures/pth/): every tensor equals
 *    its expected float32 copy in io_pth.safetensors exactly (all conversions are
 *    exact: f16/bf16 widen, f64->f32 and int->f32 round-to-nearest like torch),
 *    dtypes, strides/offsets of views, nested names, deflated and ZIP64 archives.
 * 3. Hostile files refused without executing (os.system reduce, custom class),
 *    every truncation of a file, hand-made pickles (cycles, shared-subobject
 *    blow-up, views past their storage, wrong record sizes).
 * 4. Bounded deterministic fuzz: 2000 mutated archives (bit flips, byte sets,
 *    truncations, ZIP length-field edits, pickle edits with the CRC fixed up so
 *    they reach the unpickler) and 3000 random opcode streams straight into the
 *    VM. Must never crash or leak (tools/check runs it under ASan + UBSan).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "io/pickle.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "io/zip.h"
#include "testutil.h"

#define EVIL_MARKER "/tmp/alignprop_pth_evil_marker"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Writes a fresh file: unlink first, since ext4 flushes a file truncated and
 * rewritten in place at close (auto_da_alloc), which made 5000 rewrites slow. */
static void spit(const char *path, const void *b, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* ---- 1. the real aesthetic MLP ------------------------------------------ */

static const struct {
    const char *name;
    int ndim;
    int64_t shape[2];
} k_aesthetic[10] = {
    {"layers.0.weight", 2, {1024, 768}}, {"layers.0.bias", 1, {1024}},
    {"layers.2.weight", 2, {128, 1024}}, {"layers.2.bias", 1, {128}},
    {"layers.4.weight", 2, {64, 128}},   {"layers.4.bias", 1, {64}},
    {"layers.6.weight", 2, {16, 64}},    {"layers.6.bias", 1, {16}},
    {"layers.7.weight", 2, {1, 16}},     {"layers.7.bias", 1, {1}},
};

static void test_aesthetic(ap_st_file *ex, const char *tmp) {
    const char *shared = tu_shared_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/data/aesthetic/sac+logos+ava1-l14-linearMSE.pth",
             shared ? shared : "");
    if (!shared || access(path, R_OK) != 0) {
        printf("  SKIP real aesthetic MLP: %s not found ($AP_SHARED_DIR=%s)\n", path,
               shared ? shared : "unset");
        return;
    }
    if (!ap_st_find(ex, "aesthetic:layers.0.weight.sum")) {
        printf("  SKIP real aesthetic MLP: io_pth.safetensors has no aesthetic reference "
               "numbers (regenerate with the shared folder present)\n");
        return;
    }
    double t0 = now();
    ap_pth_file *f = NULL;
    if (!tu_check(ap_pth_open(&f, path) == 0, "open %s (%s)", path, ap_errmsg())) return;
    double t_open = now() - t0;
    tu_check(ap_pth_count(f) == 10, "aesthetic: 10 tensors (found %d)", ap_pth_count(f));
    for (int i = 0; i < 10 && i < ap_pth_count(f); i++) {
        int dt = -1, nd = -1;
        int64_t sh[AP_MAX_DIMS] = {0}, st[AP_MAX_DIMS] = {0}, off = -1;
        const char *nm = ap_pth_name(f, i);
        ap_pth_info(f, nm, &dt, &nd, sh);
        ap_pth_layout(f, nm, st, &off);
        int ok = strcmp(nm, k_aesthetic[i].name) == 0 && dt == AP_DT_F32 &&
                 nd == k_aesthetic[i].ndim && sh[0] == k_aesthetic[i].shape[0] &&
                 (nd == 1 || sh[1] == k_aesthetic[i].shape[1]) && off == 0 &&
                 st[nd - 1] == 1 && (nd == 1 || st[0] == sh[1]);
        ap_tensor shape = ap_tn(NULL, nd, sh);
        char ss[64];
        tu_check(ok, "aesthetic[%d] = %s F32 shape %s contiguous, offset 0 (docs/formats.md 4.3)", i,
                 nm, ap_shape_str(&shape, ss, sizeof ss));
    }
    double t1 = now();
    for (int i = 0; i < 10; i++) {
        const char *nm = k_aesthetic[i].name;
        ap_tensor t, e;
        char key[128], what[160];
        if (!tu_check(ap_pth_load_f32(f, nm, k_aesthetic[i].ndim, k_aesthetic[i].shape,
                                      &t) == 0, "load %s (%s)", nm, ap_errmsg()))
            continue;
        int64_t n = ap_numel(&t);
        double sum = 0;
        for (int64_t k = 0; k < n; k++) sum += t.data[k];
        snprintf(key, sizeof key, "aesthetic:%s.sum", nm);
        float *want = tu_fixture(ex, key, &e);
        float got = (float)sum;
        snprintf(what, sizeof what, "%s sum (double accumulation, stored as f32)", nm);
        /* Same f32 values summed in double in another order: ~1e-12 relative;
         * the reference is rounded to f32: 6e-8 relative. */
        tu_compare(what, &got, want, 1, 1e-6, 1e-6);
        free(want);
        snprintf(key, sizeof key, "aesthetic:%s.first", nm);
        want = tu_fixture(ex, key, &e);
        snprintf(what, sizeof what, "%s first %lld values (exact)", nm,
                 (long long)ap_numel(&e));
        tu_compare(what, t.data, want, ap_numel(&e), 0, 0);
        free(want);
        if (i == 0) {
            want = tu_fixture(ex, "aesthetic:layers.0.weight.row511", &e);
            tu_compare("layers.0.weight[511, :] (exact)", t.data + 511 * 768, want, 768, 0, 0);
            free(want);
            want = tu_fixture(ex, "aesthetic:layers.0.weight.col700", &e);
            float col[1024];
            for (int r = 0; r < 1024; r++) col[r] = t.data[r * 768 + 700];
            tu_compare("layers.0.weight[:, 700] (exact)", col, want, 1024, 0, 0);
            free(want);
        }
        if (i == 9) {
            uint32_t bits;
            memcpy(&bits, t.data, 4);
            tu_check(bits == 0x3f7d7032u, "layers.7.bias bytes 32 70 7d 3f = %.8f",
                     (double)t.data[0]);
        }
        free(t.data);
    }
    double t_load = now() - t1;
    printf("  aesthetic: open %.2f ms, load all 10 tensors (3.7 MB, CRC-checked) %.2f ms\n",
           1e3 * t_open, 1e3 * t_load);
    ap_tensor t;
    tu_expect_error("aesthetic layers.0.weight with the transposed shape",
                    ap_pth_load_f32(f, "layers.0.weight", 2, (int64_t[]){768, 1024}, &t),
                    path, "layers.0.weight", "expected shape (768, 1024)",
                    "found (1024, 768)", NULL);
    ap_pth_close(f);
    /* A truncated copy: the end records are gone. */
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    if (b) {
        spit(tmp, b, n - 100000);
        tu_expect_error("aesthetic file truncated by 100000 bytes", ap_pth_open(&f, tmp),
                        tmp, "truncated", NULL);
        /* Cut inside data/0 but keep a valid-looking end: copy the last 4 KB
         * (central directory + EOCD) after the first 1 MB. */
        memmove(b + (1 << 20), b + n - 4096, 4096);
        spit(tmp, b, (1 << 20) + 4096);
        tu_expect_error("aesthetic file with its middle cut out", ap_pth_open(&f, tmp), tmp,
                        NULL);
        free(b);
    }
}

/* ---- 2. torch.save fixtures ----------------------------------------------- */

static const char *k_files[] = {"plain.pth",   "module.pt", "nested.ckpt", "views.pth",
                                "param.pth",   "deflated.pth", "zip64.pth"};

static void fixture_path(char *out, size_t cap, const char *file) {
    snprintf(out, cap, "%s/pth/%s", tu_fixtures_dir(), file);
}

/* Every tensor of the file equals "<stem>:<name>" of the expectations, and the
 * file lists exactly as many tensors as there are expectations for it. */
static void test_fixture_values(ap_st_file *ex, const char *file) {
    char path[4096], stem[64], key[256];
    fixture_path(path, sizeof path, file);
    snprintf(stem, sizeof stem, "%.*s", (int)(strchr(file, '.') - file), file);
    ap_pth_file *f = NULL;
    if (!tu_check(ap_pth_open(&f, path) == 0, "open %s (%s)", file, ap_errmsg())) return;
    int want_n = 0;
    for (int i = 0; i < ap_st_count(ex); i++) {
        const char *nm = ap_st_at(ex, i)->name;
        if (strncmp(nm, stem, strlen(stem)) == 0 && nm[strlen(stem)] == ':') want_n++;
    }
    tu_check(ap_pth_count(f) == want_n, "%s lists %d tensors (%d expected)", file,
             ap_pth_count(f), want_n);
    int exact = 0;
    for (int i = 0; i < ap_pth_count(f); i++) {
        const char *nm = ap_pth_name(f, i);
        snprintf(key, sizeof key, "%s:%s", stem, nm);
        const ap_st_tensor *e = ap_st_find(ex, key);
        if (!tu_check(e != NULL, "%s: tensor '%s' has an expectation", file, nm)) continue;
        ap_tensor t, et;
        if (!tu_check(ap_pth_load_f32(f, nm, 0, NULL, &t) == 0, "load %s %s (%s)", file, nm,
                      ap_errmsg()))
            continue;
        int same_shape = t.ndim == e->ndim;
        for (int d = 0; same_shape && d < t.ndim; d++) same_shape = t.shape[d] == e->shape[d];
        tu_check(same_shape, "%s: %s shape as torch", file, nm);
        float *want = tu_fixture(ex, key, &et);
        int64_t n = ap_numel(&t);
        int ok = 1;
        for (int64_t k = 0; k < n && same_shape; k++) ok &= t.data[k] == want[k];
        if (!ok) {
            char what[300];
            snprintf(what, sizeof what, "%s %s (exact)", file, nm);
            tu_compare(what, t.data, want, n, 0, 0);
        }
        exact += ok && same_shape;
        free(want);
        free(t.data);
    }
    tu_check(exact == ap_pth_count(f), "%s: %d/%d tensors equal torch's float32 values "
             "exactly", file, exact, ap_pth_count(f));
    ap_pth_close(f);
}

static void expect_info(ap_pth_file *f, const char *name, int dtype, int ndim,
                        const int64_t *shape, const int64_t *stride, int64_t offset) {
    int dt = -1, nd = -1;
    int64_t sh[AP_MAX_DIMS] = {0}, st[AP_MAX_DIMS] = {0}, off = -1;
    int rc = ap_pth_info(f, name, &dt, &nd, sh) | ap_pth_layout(f, name, st, &off);
    int ok = rc == 0 && dt == dtype && nd == ndim && off == offset;
    for (int d = 0; ok && d < ndim; d++) ok = sh[d] == shape[d] && st[d] == stride[d];
    char s1[96] = "(", s2[96] = "(";
    for (int d = 0; d < nd && d < AP_MAX_DIMS; d++) {
        snprintf(s1 + strlen(s1), 20, d ? ", %lld" : "%lld", (long long)sh[d]);
        snprintf(s2 + strlen(s2), 20, d ? ", %lld" : "%lld", (long long)st[d]);
    }
    tu_check(ok, "%s: %s %s shape %s) strides %s) offset %lld", ap_pth_path(f), name,
             ap_file_dtype_name(dt), s1, s2, (long long)off);
}

static void test_fixture_details(void) {
    char path[4096];
    ap_pth_file *f = NULL;
    ap_tensor t;
    fixture_path(path, sizeof path, "plain.pth");
    if (ap_pth_open(&f, path) == 0) {
        expect_info(f, "w16", AP_DT_F16, 2, (int64_t[]){4, 3}, (int64_t[]){3, 1}, 0);
        expect_info(f, "wbf16", AP_DT_BF16, 2, (int64_t[]){2, 7}, (int64_t[]){7, 1}, 0);
        expect_info(f, "w64", AP_DT_F64, 1, (int64_t[]){3}, (int64_t[]){1}, 0);
        expect_info(f, "i64", AP_DT_I64, 1, (int64_t[]){5}, (int64_t[]){1}, 0);
        expect_info(f, "i32", AP_DT_I32, 2, (int64_t[]){2, 2}, (int64_t[]){2, 1}, 0);
        expect_info(f, "u8", AP_DT_U8, 1, (int64_t[]){3}, (int64_t[]){1}, 0);
        expect_info(f, "flags", AP_DT_BOOL, 1, (int64_t[]){3}, (int64_t[]){1}, 0);
        expect_info(f, "scalar", AP_DT_F32, 0, NULL, NULL, 0);
        expect_info(f, "empty", AP_DT_F32, 2, (int64_t[]){0, 3}, (int64_t[]){3, 1}, 0);
        tu_expect_error("wrong expected shape",
                        ap_pth_load_f32(f, "w32", 2, (int64_t[]){5, 3}, &t), path, "'w32'",
                        "expected shape (5, 3)", "found (3, 5)", NULL);
        tu_expect_error("wrong expected rank",
                        ap_pth_load_f32(f, "w32", 1, (int64_t[]){15}, &t), path,
                        "expected shape (15)", "found (3, 5)", NULL);
        tu_expect_error("missing tensor", ap_pth_load_f32(f, "nope", 0, NULL, &t), path,
                        "no tensor named 'nope'", NULL);
        ap_pth_close(f);
    }
    fixture_path(path, sizeof path, "views.pth");
    if (ap_pth_open(&f, path) == 0) {
        expect_info(f, "slice", AP_DT_F32, 1, (int64_t[]){6}, (int64_t[]){1}, 5);
        expect_info(f, "transposed", AP_DT_F32, 2, (int64_t[]){6, 4}, (int64_t[]){1, 6}, 0);
        expect_info(f, "strided", AP_DT_F32, 2, (int64_t[]){3, 3}, (int64_t[]){6, 2}, 6);
        expect_info(f, "expanded", AP_DT_F32, 2, (int64_t[]){4, 3}, (int64_t[]){0, 1}, 0);
        expect_info(f, "half_t", AP_DT_F16, 2, (int64_t[]){4, 3}, (int64_t[]){1, 4}, 0);
        expect_info(f, "half_col", AP_DT_F16, 1, (int64_t[]){3}, (int64_t[]){4}, 2);
        ap_pth_close(f);
    }
    fixture_path(path, sizeof path, "nested.ckpt");
    if (ap_pth_open(&f, path) == 0) {
        const char *names[] = {"state_dict.0.weight", "state_dict.0.bias",
                               "state_dict.1.weight", "state_dict.1.bias", "ema.0", "ema.1",
                               "opt.state.0.exp_avg"};
        int ok = ap_pth_count(f) == 7;
        for (int i = 0; ok && i < 7; i++) ok = strcmp(ap_pth_name(f, i), names[i]) == 0;
        tu_check(ok, "nested: names flatten as state_dict.0.weight ... ema.0, "
                 "opt.state.0.exp_avg, in pickle order");
        tu_check(ap_pth_find(f, "global_step") < 0 && ap_pth_find(f, "hparams.lr") < 0,
                 "nested: non-tensor entries are not listed");
        const char *rest = ap_pth_strip_prefix(ap_pth_name(f, 0), "state_dict.");
        tu_check(rest && strcmp(rest, "0.weight") == 0 &&
                 !ap_pth_strip_prefix("ema.0", "state_dict."),
                 "strip_prefix(\"state_dict.0.weight\", \"state_dict.\") = \"0.weight\"");
        expect_info(f, "state_dict.0.weight", AP_DT_F32, 4, (int64_t[]){3, 2, 3, 3},
                    (int64_t[]){18, 9, 3, 1}, 0);
        ap_pth_close(f);
    }
}

/* ---- 3. hostile and broken files ----------------------------------------- */

static void test_hostile(void) {
    char path[4096];
    ap_pth_file *f = NULL;
    unlink(EVIL_MARKER);
    fixture_path(path, sizeof path, "evil_system.pth");
    tu_expect_error("os.system reduce refused", ap_pth_open(&f, path), path,
                    "refusing global 'posix.system'", "nothing was executed", NULL);
    tu_check(access(EVIL_MARKER, F_OK) != 0, "%s was not created (nothing executed)",
             EVIL_MARKER);
    fixture_path(path, sizeof path, "evil_class.pth");
    tu_expect_error("pickled custom class refused", ap_pth_open(&f, path), path,
                    "refusing global 'io_pth.Custom'", NULL);
    tu_expect_error("missing file", ap_pth_open(&f, "/nonexistent/x.pth"),
                    "/nonexistent/x.pth", "cannot open", NULL);
    fixture_path(path, sizeof path, "../io_pth.safetensors");
    tu_expect_error("a safetensors file is not a torch zip", ap_pth_open(&f, path), path,
                    "not a ZIP archive", NULL);
}

/* Every truncation of a small valid file fails and names the file. */
static void test_truncations(const char *tmp) {
    char path[4096];
    fixture_path(path, sizeof path, "module.pt");
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    if (!tu_check(b != NULL, "read %s", path)) return;
    int failed = 0, named = 0;
    for (size_t len = 0; len < n; len++) {
        spit(tmp, b, len);
        ap_pth_file *f = NULL;
        if (ap_pth_open(&f, tmp) != 0) {
            failed++;
            named += strstr(ap_errmsg(), tmp) != NULL;
        } else {
            ap_pth_close(f);
        }
    }
    tu_check(failed == (int)n && named == (int)n,
             "all %zu truncations of module.pt refused (%d), each naming the file (%d)", n,
             failed, named);
    spit(tmp, b, n - 30);
    ap_pth_file *f = NULL;
    ap_pth_open(&f, tmp);
    printf("    (e.g. cut by 30 bytes: %s)\n", ap_errmsg());
    free(b);
}

/* A minimal torch-like archive "t/data.pkl" + records, stored. */
static size_t make_zip(unsigned char *out, const unsigned char *pkl, size_t plen,
                       int nrec, const size_t *rec_len) {
    static const unsigned char zeros[256];
    const char *names[8];
    char nbuf[8][32];
    const unsigned char *data[8];
    size_t len[8], off[8], o = 0;
    int n = 1 + nrec;
    names[0] = "t/data.pkl", data[0] = pkl, len[0] = plen;
    for (int i = 0; i < nrec; i++) {
        snprintf(nbuf[i], sizeof nbuf[i], "t/data/%d", i);
        names[1 + i] = nbuf[i], data[1 + i] = zeros, len[1 + i] = rec_len[i];
    }
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        uint32_t crc = (uint32_t)crc32(0, data[i], (uInt)len[i]);
        unsigned char *h = out + o;
        memset(h, 0, 30);
        memcpy(h, "PK\x03\x04", 4);
        memcpy(h + 14, &crc, 4);
        memcpy(h + 18, &len[i], 4);
        memcpy(h + 22, &len[i], 4);
        h[26] = (unsigned char)nl;
        memcpy(h + 30, names[i], nl);
        memcpy(h + 30 + nl, data[i], len[i]);
        off[i] = o;
        o += 30 + nl + len[i];
    }
    size_t cd = o;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        unsigned char *c = out + o;
        memset(c, 0, 46);
        memcpy(c, "PK\x01\x02", 4);
        memcpy(c + 16, out + off[i] + 14, 12); /* crc, sizes */
        c[28] = (unsigned char)nl;
        memcpy(c + 42, &off[i], 4);
        memcpy(c + 46, names[i], nl);
        o += 46 + nl;
    }
    unsigned char *e = out + o;
    memset(e, 0, 22);
    memcpy(e, "PK\x05\x06", 4);
    e[8] = e[10] = (unsigned char)n;
    uint32_t cds = (uint32_t)(o - cd), cdo = (uint32_t)cd;
    memcpy(e + 12, &cds, 4);
    memcpy(e + 16, &cdo, 4);
    return o + 22;
}

/* Pickle snippets: a dict {'w': tensor(storage 0 of `numel` floats, offset,
 * size (n,), stride (s,))}. */
static size_t tensor_pickle(unsigned char *p, int numel, int offset, int size, int stride) {
    size_t o = 0;
#define PUT(s) (memcpy(p + o, s, sizeof(s) - 1), o += sizeof(s) - 1)
    PUT("\x80\x02}q\x00(X\x01\x00\x00\x00w");
    PUT("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK");
    p[o++] = (unsigned char)numel;
    PUT("tQK");
    p[o++] = (unsigned char)offset;
    PUT("K");
    p[o++] = (unsigned char)size;
    PUT("\x85K");
    p[o++] = (unsigned char)stride;
    PUT("\x85\x89}tRu.");
#undef PUT
    return o;
}

static int open_pickle(const char *tmp, const void *pkl, size_t plen, int nrec,
                       const size_t *rec_len) {
    static unsigned char buf[4096];
    size_t n = make_zip(buf, pkl, plen, nrec, rec_len);
    spit(tmp, buf, n);
    ap_pth_file *f = NULL;
    int rc = ap_pth_open(&f, tmp);
    ap_pth_close(f);
    return rc;
}

static void test_handmade(const char *tmp) {
    unsigned char p[512];
    size_t rec = 16, n = tensor_pickle(p, 4, 1, 3, 1);
    int rc = open_pickle(tmp, p, n, 1, &rec);
    tu_check(rc == 0, "hand-made archive with a view opens%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    n = tensor_pickle(p, 4, 2, 3, 1);
    tu_expect_error("view past its storage", open_pickle(tmp, p, n, 1, &rec), tmp,
                    "exceeds its storage '0' of 4 elements", NULL);
    n = tensor_pickle(p, 4, 0, 3, 2);
    tu_expect_error("strided view past its storage", open_pickle(tmp, p, n, 1, &rec),
                    "last element 4", NULL);
    rec = 12;
    n = tensor_pickle(p, 4, 0, 3, 1);
    tu_expect_error("record shorter than numel * 4", open_pickle(tmp, p, n, 1, &rec), tmp,
                    "should hold 4 F32", "has 12 bytes", NULL);
    tu_expect_error("record missing", open_pickle(tmp, p, n, 0, NULL), tmp,
                    "record 't/data/0' is missing", NULL);
    /* {'w': T, 'w': T}: names must be unique after flattening. */
    n = tensor_pickle(p, 4, 0, 3, 1) - 2; /* drop SETITEMS STOP */
    static const unsigned char dup[] = "q\x09X\x01\x00\x00\x00wh\x09u.";
    memcpy(p + n, dup, sizeof dup - 1);
    rec = 16;
    tu_expect_error("duplicate tensor name", open_pickle(tmp, p, n + sizeof dup - 1, 1, &rec),
                    tmp, "'w' occurs twice", NULL);
    /* d = {}; d['a'] = d  -> a cycle. */
    static const unsigned char cyc[] = "\x80\x02}q\x00X\x01\x00\x00\x00" "ah\x00s.";
    tu_expect_error("cyclic dict", open_pickle(tmp, cyc, sizeof cyc - 1, 0, NULL), tmp,
                    "nested deeper than 64", NULL);
    /* d0 = {'t': []}; d_{k+1} = {'a': d_k, 'b': d_k}: 2^40 paths from 40 levels. */
    unsigned char big[1024];
    size_t o = 0;
    static const unsigned char d0[] = "\x80\x02}q\x00X\x01\x00\x00\x00t]s";
    memcpy(big, d0, sizeof d0 - 1), o = sizeof d0 - 1;
    for (int k = 0; k < 40; k++) {
        /* d_k on the stack: memo it (BINPUT 1), POP it, EMPTY_DICT, then
         * 'a' -> BINGET 1, SETITEM, 'b' -> BINGET 1, SETITEM. */
        static const unsigned char step[] = "q\x01" "0}X\x01\x00\x00\x00" "ah\x01sX\x01\x00"
                                            "\x00\x00" "bh\x01s";
        memcpy(big + o, step, sizeof step - 1);
        o += sizeof step - 1;
    }
    big[o++] = '.';
    tu_expect_error("shared sub-dicts repeated 2^40 times",
                    open_pickle(tmp, big, o, 0, NULL), tmp, "too large to flatten", NULL);
    static const unsigned char stray[] = "\x80\x02}(K\x01.";
    tu_expect_error("STOP with a MARK open", open_pickle(tmp, stray, sizeof stray - 1, 0, NULL),
                    "STOP with", NULL);
    static const unsigned char noend[] = "\x80\x02}q\x00";
    tu_expect_error("pickle without STOP", open_pickle(tmp, noend, sizeof noend - 1, 0, NULL),
                    "without STOP", NULL);
    static const unsigned char top[] = "\x80\x02]q\x00.";
    tu_expect_error("top level not a dict", open_pickle(tmp, top, sizeof top - 1, 0, NULL),
                    "top-level object is not a dict", NULL);
    static const unsigned char sg[] = "\x80\x04\x8c\x02os\x8c\x06system\x93.";
    tu_expect_error("STACK_GLOBAL os.system", open_pickle(tmp, sg, sizeof sg - 1, 0, NULL),
                    "refusing global 'os.system'", NULL);
    static const unsigned char inst[] = "\x80\x02(cos\nsystem\nX\x01\x00\x00\x00xo.";
    tu_expect_error("GLOBAL checked before INST/OBJ", open_pickle(tmp, inst, sizeof inst - 1,
                                                                 0, NULL),
                    "refusing global 'os.system'", NULL);
    static const unsigned char obj[] = "\x80\x02}(X\x01\x00\x00\x00" "a(ccollections\n"
                                       "OrderedDict\nou.";
    tu_expect_error("unsupported opcode OBJ", open_pickle(tmp, obj, sizeof obj - 1, 0, NULL),
                    "opcode 0x6f", "not supported", NULL);
}

/* ---- 4. fuzz ---------------------------------------------------------------- */

static uint64_t rng(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}

/* Recompute data.pkl's CRC in its local and central headers. */
static void fix_pickle_crc(unsigned char *b, size_t n, const ap_zip_entry *pk,
                           uint64_t local_off, uint64_t central_off) {
    if (pk->data_off + pk->size > n) return;
    uint32_t crc = (uint32_t)crc32(0, b + pk->data_off, (uInt)pk->size);
    if (local_off + 18 <= n) memcpy(b + local_off + 14, &crc, 4);
    if (central_off + 20 <= n) memcpy(b + central_off + 16, &crc, 4);
}

typedef struct {
    unsigned char *b;
    size_t n;
    ap_zip_entry pkl; /* copy of data.pkl's entry (stored files only) */
    uint64_t pkl_local, pkl_central;
    int stored;
    size_t sigs[64];
    int nsigs;
} fuzz_src;

static int load_src(fuzz_src *s, const char *file) {
    char path[4096];
    fixture_path(path, sizeof path, file);
    memset(s, 0, sizeof *s);
    s->b = slurp(path, &s->n);
    if (!s->b) return 0;
    for (size_t i = 0; i + 4 <= s->n && s->nsigs < 64; i++)
        if (s->b[i] == 'P' && s->b[i + 1] == 'K' && s->b[i + 2] < 8) s->sigs[s->nsigs++] = i;
    ap_zip z;
    if (ap_zip_open(&z, s->b, s->n, path) != 0) return 0;
    for (int i = 0; i < z.n; i++) {
        if (!strstr(z.e[i].name, "data.pkl")) continue;
        s->pkl = z.e[i];
        s->pkl.name = NULL;
        s->stored = z.e[i].method == 0;
        /* local header: search back from the data for its signature */
        for (int k = 0; k < s->nsigs; k++) {
            if (memcmp(s->b + s->sigs[k], "PK\x03\x04", 4) == 0 &&
                s->sigs[k] < s->pkl.data_off && s->pkl_local == 0)
                s->pkl_local = s->sigs[k];
            if (memcmp(s->b + s->sigs[k], "PK\x01\x02", 4) == 0 && s->pkl_central == 0)
                s->pkl_central = s->sigs[k]; /* data.pkl is the first entry */
        }
    }
    ap_zip_free(&z);
    return 1;
}

static void mutate(const fuzz_src *s, unsigned char *b, size_t *len, uint64_t *st) {
    static const uint32_t edges[] = {0, 1, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xffffffff,
                                     0xfffffffe, 64, 1u << 20};
    memcpy(b, s->b, s->n);
    *len = s->n;
    int kind = (int)(rng(st) % 6), k = 1 + (int)(rng(st) % 8);
    if ((kind == 4 || kind == 5) && !s->stored) kind = 0;
    switch (kind) {
    case 0: /* bit flips anywhere */
        for (int i = 0; i < k; i++) b[rng(st) % s->n] ^= (unsigned char)(1u << (rng(st) % 8));
        break;
    case 1: /* random bytes anywhere */
        for (int i = 0; i < k; i++) b[rng(st) % s->n] = (unsigned char)rng(st);
        break;
    case 2: /* truncation */
        *len = rng(st) % s->n;
        break;
    case 3: { /* a ZIP header length/offset field set to an edge value */
        size_t sig = s->sigs[rng(st) % (uint64_t)s->nsigs];
        size_t field = sig + 4 + 2 * (rng(st) % 21);
        uint32_t v = edges[rng(st) % 10] + (uint32_t)(rng(st) % 3) - 1;
        if (field + 4 <= s->n) memcpy(b + field, &v, (rng(st) & 1) ? 4 : 2);
        break;
    }
    case 4: /* pickle bytes, CRC fixed so the unpickler sees them */
        for (int i = 0; i < k; i++) {
            size_t at = s->pkl.data_off + rng(st) % s->pkl.size;
            if (rng(st) % 3 == 0) {
                static const char pick[] = "()tq\x85\x86\x87KJMhjX}]suQRb.0a\x8a";
                b[at] = (unsigned char)pick[rng(st) % (sizeof pick - 1)];
            } else {
                b[at] = (unsigned char)rng(st);
            }
        }
        fix_pickle_crc(b, s->n, &s->pkl, s->pkl_local, s->pkl_central);
        break;
    case 5: { /* a BINUNICODE / BININT length or value in the pickle */
        for (int tries = 0; tries < 64; tries++) {
            size_t at = s->pkl.data_off + rng(st) % s->pkl.size;
            if ((b[at] == 'X' || b[at] == 'J' || b[at] == 'K' || b[at] == 'q') &&
                at + 5 <= s->pkl.data_off + s->pkl.size) {
                uint32_t v = edges[rng(st) % 10] + (uint32_t)(rng(st) % 5) - 2;
                memcpy(b + at + 1, &v, b[at] == 'K' || b[at] == 'q' ? 1 : 4);
                break;
            }
        }
        fix_pickle_crc(b, s->n, &s->pkl, s->pkl_local, s->pkl_central);
        break;
    }
    }
}

static void fuzz_files(const char *tmp, int iters) {
    const char *files[] = {"module.pt", "nested.ckpt", "views.pth", "plain.pth",
                           "zip64.pth", "deflated.pth", "param.pth"};
    enum { NF = 7 };
    fuzz_src src[NF];
    for (int i = 0; i < NF; i++)
        if (!tu_check(load_src(&src[i], files[i]), "fuzz source %s", files[i])) return;
    unsigned char *b = malloc(8192);
    uint64_t st = 0x5eed;
    int accepted = 0, loaded = 0;
    double t0 = now();
    for (int it = 0; it < iters; it++) {
        const fuzz_src *s = &src[it % NF];
        size_t len;
        if (s->n > 8192) continue;
        mutate(s, b, &len, &st);
        spit(tmp, b, len);
        ap_pth_file *f = NULL;
        if (ap_pth_open(&f, tmp) == 0) {
            accepted++;
            for (int i = 0; i < ap_pth_count(f); i++) {
                ap_tensor t;
                int dt, nd;
                int64_t sh[AP_MAX_DIMS], strd[AP_MAX_DIMS], off;
                ap_pth_info(f, ap_pth_name(f, i), &dt, &nd, sh);
                ap_pth_layout(f, ap_pth_name(f, i), strd, &off);
                if (ap_pth_load_f32(f, ap_pth_name(f, i), 0, NULL, &t) == 0) {
                    loaded++;
                    free(t.data);
                }
            }
            ap_pth_close(f);
        }
        ap_err_clear();
    }
    double dt = now() - t0;
    tu_check(1, "fuzz: %d mutated archives opened without a crash (%d accepted, %d tensors "
             "loaded) in %.2f s", iters, accepted, loaded, dt);
    for (int i = 0; i < NF; i++) free(src[i].b);
    free(b);
}

/* Random opcode streams with well-formed arguments, straight into the VM and,
 * wrapped in an archive with one 16-byte storage record "0", through open. */
static void fuzz_vm(const char *tmp, int iters) {
    static const struct {
        unsigned char op;
        int arg; /* 0 none, 1..8 little-endian bytes, -1 BINUNICODE, -2 GLOBAL */
    } ops[] = {{'(', 0},  {')', 0},  {'}', 0},  {']', 0},  {'t', 0},  {0x85, 0}, {0x86, 0},
               {0x87, 0}, {'l', 0},  {'d', 0},  {'s', 0},  {'u', 0},  {'a', 0},  {'e', 0},
               {'R', 0},  {'b', 0},  {'Q', 0},  {'N', 0},  {0x88, 0}, {0x89, 0}, {'0', 0},
               {'1', 0},  {'2', 0},  {0x94, 0}, {'K', 1},  {'M', 2},  {'J', 4},  {'q', 1},
               {'h', 1},  {'r', 4},  {'j', 4},  {'G', 8},  {0x8a, -3}, {'X', -1},
               {0x8c, -4}, {'c', -2}, {'c', -2}, {'c', -2}, {0x93, 0}, {'.', 0}};
    static const char *globals[] = {"collections\nOrderedDict\n",
                                    "torch._utils\n_rebuild_tensor_v2\n",
                                    "torch._utils\n_rebuild_parameter\n",
                                    "torch\nFloatStorage\n", "torch\nHalfStorage\n",
                                    "os\nsystem\n"};
    static const char *strs[] = {"storage", "0", "cpu", "w", "", "1"};
    unsigned char p[512];
    uint64_t st = 77;
    int ok = 0, opened = 0;
    size_t rec = 16;
    double t0 = now();
    for (int it = 0; it < iters; it++) {
        size_t target = 4 + rng(&st) % 120, o = 0;
        int framed = rng(&st) % 2; /* half: "{" MARK ... SETITEMS STOP around it */
        p[o++] = 0x80, p[o++] = 2;
        if (framed) p[o++] = '}', p[o++] = '(';
        while (o < target && o < sizeof p - 64) {
            int k = (int)(rng(&st) % (sizeof ops / sizeof ops[0]));
            p[o++] = ops[k].op;
            int a = ops[k].arg;
            if (a > 0) {
                uint64_t v = rng(&st) % 8;
                for (int i = 0; i < a; i++) p[o++] = (unsigned char)(i ? 0 : v);
            } else if (a == -1 || a == -4) {
                const char *s = strs[rng(&st) % 6];
                uint32_t n = (uint32_t)strlen(s);
                memcpy(p + o, &n, a == -1 ? 4 : 1);
                o += a == -1 ? 4 : 1;
                memcpy(p + o, s, n);
                o += n;
            } else if (a == -2) {
                const char *g = globals[rng(&st) % 6];
                memcpy(p + o, g, strlen(g));
                o += strlen(g);
            } else if (a == -3) {
                p[o++] = 1;
                p[o++] = (unsigned char)(rng(&st) % 8);
            }
        }
        if (framed) p[o++] = 'u', p[o++] = '.';
        ap_pk_doc d;
        if (ap_pk_load(&d, p, o, "fuzz") == 0) {
            ok++;
            ap_pk_free(&d);
        }
        if (it % 2 == 0) opened += open_pickle(tmp, p, o, 1, &rec) == 0;
        ap_err_clear();
    }
    tu_check(1, "fuzz: %d random opcode streams through the VM without a crash (%d complete, "
             "%d of the %d wrapped in archives opened) in %.2f s", iters, ok, opened,
             (iters + 1) / 2, now() - t0);
}

int main(void) {
    printf("test_pth: PyTorch zip checkpoints (real aesthetic MLP, torch.save fixtures, "
           "hostile files, fuzz)\n");
    if (!tu_fixtures_dir()) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/ap_test_pth_%d.pth", (int)getpid());
    ap_st_file *ex = tu_fixture_open("io_pth");
    if (!ex) return tu_exit();
    test_aesthetic(ex, tmp);
    for (size_t i = 0; i < sizeof k_files / sizeof k_files[0]; i++)
        test_fixture_values(ex, k_files[i]);
    test_fixture_details();
    test_hostile();
    test_truncations(tmp);
    test_handmade(tmp);
    /* AP_PTH_FUZZ_ITERS=N runs a longer campaign by hand (default 2000). */
    const char *it = getenv("AP_PTH_FUZZ_ITERS");
    int iters = it ? atoi(it) : 2000;
    fuzz_files(tmp, iters);
    fuzz_vm(tmp, iters * 3 / 2);
    ap_st_close(ex);
    unlink(tmp);
    return tu_exit();
}
