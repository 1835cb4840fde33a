/* test_weights.c: two-phase loading: slots filled from an indexed file,
 * missing / wrong-shape tensors reported together, unused ones tolerated. */
#include <stdio.h>
#include <string.h>

#include "io/dtype.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "io/weights.h"
#include <stdlib.h>
#include <unistd.h>
#include "testutil.h"

/* A rename hook: f32 -> m.weight, bf16 -> m.other (both -> m.x when ctx). */
static int rename_test(void *ctx, const char *key, char *name, size_t cap) {
    if (strcmp(key, "f32") && strcmp(key, "bf16")) return 0;
    snprintf(name, cap, "%s", ctx ? "m.x" : !strcmp(key, "f32") ? "m.weight" : "m.other");
    return AP_WSRC_RENAMED;
}

/* f32 -> c.weight, f16 -> b.weight, bf16 -> a.weight (slots stored frozen). */
static int rename_frozen(void *ctx, const char *key, char *name, size_t cap) {
    (void)ctx;
    const char *to = !strcmp(key, "f32") ? "c.weight" : !strcmp(key, "f16") ? "b.weight"
                   : !strcmp(key, "bf16") ? "a.weight" : NULL;
    if (!to) return 0;
    snprintf(name, cap, "%s", to);
    return AP_WSRC_RENAMED;
}

/* Mixed-precision storage (ap_params_store_frozen): which slots shrink, and
 * that filling keeps a bf16 / f16 file's bits and rounds f32 to nearest even. */
static void frozen_storage(const char *path) {
    printf(" frozen weights stored in bf16 / f16\n");
    ap_wsrc *w = NULL;
    if (!tu_check(ap_wsrc_open(&w, path) == 0 && ap_wsrc_set_rename(w, rename_frozen, NULL) == 0,
                  "index %s with a rename hook", path))
        return;
    ap_tensor want32, want16, wantb;
    ap_st_file *f = NULL;
    ap_st_open(&f, path);
    tu_fixture(f, "f32", &want32), tu_fixture(f, "expect.f16", &want16);
    tu_fixture(f, "expect.bf16", &wantb);
    ap_st_close(f);
    const ap_dtype dts[2] = {AP_BF16, AP_F16};
    for (int k = 0; k < 2; k++) {
        const ap_dtype dt = dts[k];
        ap_params p;
        ap_tensor a, b, c, bias;
        ap_params_init(&p);
        ap_params_add(&p, &a, 2, (int64_t[]){3, 5}, "a.weight");
        ap_params_add(&p, &b, 2, (int64_t[]){3, 5}, "b.weight");
        ap_params_add(&p, &c, 2, (int64_t[]){3, 5}, "c.weight");
        ap_params_add(&p, &bias, 1, (int64_t[]){2}, "a.bias");
        ap_weights_set_frozen_dtype(dt);
        ap_params_store_frozen(&p, (const char *const[]){"c.", NULL});
        ap_weights_set_frozen_dtype(AP_F32);
        tu_check(a.dtype == dt && b.dtype == dt && c.dtype == AP_F32 && bias.dtype == AP_F32,
                 "%s: a.weight, b.weight stored %s; c.weight (kept) and the bias f32",
                 ap_dtype_name(dt), ap_dtype_name(dt));
        tu_check(p.total == 8 + 8 + 15 + 2, "%s: 2-byte slots take (n + 1) / 2 floats: %zu",
                 ap_dtype_name(dt), p.total);
        ap_params_alloc(&p, "frozen test");
        int rc = ap_params_fill(&p, w, "", (const char *const[]){"f64", "i64", "scalar", "empty",
                                                                 "expect.*", "a.bias", NULL});
        /* a.bias is not in the file: expect exactly that one missing */
        tu_check(rc != 0 && strstr(ap_errmsg(), "1 missing tensor") &&
                     strstr(ap_errmsg(), "a.bias") && !strstr(ap_errmsg(), "wrong shape ("),
                 "%s: only a.bias is missing: %s", ap_dtype_name(dt), ap_errmsg());
        float got[15];
        int same = 1;
        const uint16_t *ha = (const uint16_t *)a.data, *hb = (const uint16_t *)b.data;
        for (int i = 0; i < 15; i++) { /* a: the bf16 file's values, rounded to dt */
            float v = dt == AP_BF16 ? ap_bf16_to_f32(ha[i]) : ap_f16_to_f32(ha[i]);
            float r = dt == AP_BF16 ? ap_bf16_to_f32(ap_f32_to_bf16(wantb.data[i]))
                                    : ap_f16_to_f32(ap_f32_to_f16(wantb.data[i]));
            same &= v == r;
            got[i] = dt == AP_BF16 ? ap_bf16_to_f32(hb[i]) : ap_f16_to_f32(hb[i]);
        }
        tu_check(same, "%s: a bf16 file's tensor stored as %s (kept bit for bit when bf16)",
                 ap_dtype_name(dt), ap_dtype_name(dt));
        if (dt == AP_F16)
            tu_compare("f16: an f16 file's tensor stored as f16 keeps its values", got,
                       want16.data, 15, 0, 0);
        tu_compare("c.weight (kept f32) holds the f32 tensor", c.data, want32.data, 15, 0, 0);
        ap_params_free(&p);
    }
    ap_wsrc_close(w);
    /* beyond f16's range */
    char tmp[] = "/tmp/ap_test_weightsXXXXXX", file[64];
    if (!mkdtemp(tmp)) return;
    snprintf(file, sizeof file, "%s/big.safetensors", tmp);
    float big[4] = {1.0f, 2.0f, 1e6f, 3.0f};
    ap_tensor bt = ap_t2(big, 2, 2);
    ap_st_write(file, (ap_st_entry[]){{"m.weight", &bt}}, 1, NULL);
    ap_params p;
    ap_params_init(&p);
    ap_params_add(&p, NULL, 2, (int64_t[]){2, 2}, "m.weight");
    ap_weights_set_frozen_dtype(AP_F16);
    ap_params_store_frozen(&p, NULL);
    ap_weights_set_frozen_dtype(AP_F32);
    ap_params_alloc(&p, "f16 range test");
    if (ap_wsrc_open(&w, file) == 0) {
        tu_expect_error("1e6 into an f16 slot", ap_params_fill(&p, w, "", NULL), "m.weight",
                        "beyond the f16 range", "index 2", NULL);
        ap_wsrc_close(w);
    }
    ap_params_free(&p);
    unlink(file);
    rmdir(tmp);
    free(want32.data), free(want16.data), free(wantb.data);
}

int main(void) {
    printf("test_weights: named slots filled from a safetensors index\n");
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    char path[4096];
    snprintf(path, sizeof path, "%s/io_safetensors_ref.safetensors", dir);
    ap_wsrc *w = NULL;
    if (!tu_check(ap_wsrc_open(&w, path) == 0, "index %s", path)) return tu_exit();
    tu_check(ap_wsrc_count(w) == 10, "10 tensors indexed");

    ap_params p;
    ap_params_init(&p);
    ap_params_add(&p, NULL, 2, (int64_t[]){3, 5}, "f%d", 32);
    ap_tensor bound;
    ap_params_add(&p, &bound, 2, (int64_t[]){3, 5}, "bf16");
    ap_params_alloc(&p, "test params");
    tu_check(bound.data == p.flat + 15 && bound.shape[1] == 5,
             "a bound field gets its slot's data pointer and shape");
    const char *ignore[] = {"f16", "f64", "i64", "scalar", "empty", "expect.*", NULL};
    int rc = ap_params_fill(&p, w, "", ignore);
    tu_check(rc == 0, "fill f32 and bf16 slots (expect.* ignored by prefix)%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    tu_check(p.total == 30 && p.items[1].t.data == p.flat + 15,
             "slots are carved from one flat buffer of 30 floats");
    ap_params_free(&p);

    ap_params_init(&p);
    ap_params_add(&p, NULL, 2, (int64_t[]){3, 5}, "f32");
    ap_params_add(&p, NULL, 2, (int64_t[]){5, 3}, "f16");
    ap_params_add(&p, NULL, 1, (int64_t[]){4}, "down.0.weight");
    ap_params_add(&p, NULL, 2, (int64_t[]){2, 3}, "i64");
    ap_params_alloc(&p, "test params");
    tu_expect_error("missing and wrong-shape tensors",
                    ap_params_fill(&p, w, "", NULL), path, "1 missing tensor",
                    "down.0.weight (4)", "f16 expected (5, 3), found (3, 5)",
                    "expected a floating dtype", NULL);
    ap_params_free(&p);

    /* A rename hook gives entries other names; key prefixes can be ignored. */
    rc = ap_wsrc_set_rename(w, rename_test, NULL);
    tu_check(rc == 0, "set a rename hook%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    int found = 0;
    for (int i = 0; i < ap_wsrc_count(w); i++)
        found += !strcmp(ap_wsrc_name(w, i), "m.weight") && !strcmp(ap_wsrc_key(w, i), "f32");
    tu_check(found == 1, "renamed entry: name m.weight, key f32");
    ap_params_init(&p);
    ap_tensor mw;
    ap_params_add(&p, &mw, 2, (int64_t[]){3, 5}, "weight");
    ap_params_alloc(&p, "test params");
    const char *ignore_m[] = {"oth*", NULL};
    rc = ap_params_fill(&p, w, "m.", ignore_m);
    tu_check(rc == 0, "fill slot 'weight' under prefix m. from renamed f32, m.other ignored by "
             "the pattern oth*%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    ap_params_free(&p);
    tu_expect_error("two keys renamed to one name", ap_wsrc_set_rename(w, rename_test, "both"),
                    "tensors bf16 and f32 both map to the name m.x", NULL);
    rc = ap_wsrc_set_rename(w, NULL, NULL);
    found = 0;
    for (int i = 0; i < ap_wsrc_count(w); i++) found += !strcmp(ap_wsrc_name(w, i), "f32");
    tu_check(rc == 0 && found == 1, "removing the hook restores the stored keys");
    ap_wsrc_close(w);
    frozen_storage(path);

    /* The same mechanism over a PyTorch zip-pickle checkpoint with a nested
     * {'state_dict': ...} (as HPSv2 and Lightning .ckpt files): slots are
     * looked up under the "state_dict." prefix. */
    snprintf(path, sizeof path, "%s/pth/nested.ckpt", dir);
    if (tu_check(ap_wsrc_open(&w, path) == 0, "index %s (zip-pickle)", path)) {
        ap_params_init(&p);
        ap_tensor cw, cb;
        ap_params_add(&p, &cw, 4, (int64_t[]){3, 2, 3, 3}, "0.weight");
        ap_params_add(&p, &cb, 1, (int64_t[]){3}, "0.bias");
        ap_params_add(&p, NULL, 1, (int64_t[]){3}, "1.weight");
        ap_params_add(&p, NULL, 1, (int64_t[]){3}, "1.bias");
        ap_params_alloc(&p, "test params");
        rc = ap_params_fill(&p, w, "state_dict.", NULL);
        tu_check(rc == 0, "fill from state_dict.*%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
        snprintf(path, sizeof path, "%s/io_pth.safetensors", dir);
        ap_st_file *ref = NULL;
        if (rc == 0 && ap_st_open(&ref, path) == 0) {
            ap_tensor t;
            tu_fixture(ref, "nested:state_dict.0.weight", &t);
            tu_compare("conv weight from .ckpt (exact)", cw.data, t.data, ap_numel(&cw), 0, 0);
            free(t.data);
            tu_fixture(ref, "nested:state_dict.0.bias", &t);
            tu_compare("conv bias from .ckpt (exact)", cb.data, t.data, 3, 0, 0);
            free(t.data);
            ap_st_close(ref);
        }
        ap_params_free(&p);
        ap_wsrc_close(w);
    }
    return tu_exit();
}
