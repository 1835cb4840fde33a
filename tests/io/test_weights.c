/* test_weights.c: two-phase loading: slots filled from an indexed file,
 * missing / wrong-shape tensors reported together, unused ones tolerated. */
#include <stdio.h>
#include <string.h>

#include "io/weights.h"
#include "testutil.h"

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
    ap_params_add(&p, 2, (int64_t[]){3, 5}, "f%d", 32);
    ap_params_add(&p, 2, (int64_t[]){3, 5}, "bf16");
    ap_params_alloc(&p, "test params");
    const char *ignore[] = {"f16", "f64", "i64", "scalar", "empty", NULL};
    int rc = ap_params_fill(&p, w, "", ignore);
    tu_check(rc == 0, "fill f32 and bf16 slots%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    tu_check(p.total == 30 && p.items[1].t.data == p.flat + 15,
             "slots are carved from one flat buffer of 30 floats");
    ap_params_free(&p);

    ap_params_init(&p);
    ap_params_add(&p, 2, (int64_t[]){3, 5}, "f32");
    ap_params_add(&p, 2, (int64_t[]){5, 3}, "f16");
    ap_params_add(&p, 1, (int64_t[]){4}, "down.0.weight");
    ap_params_add(&p, 2, (int64_t[]){2, 3}, "i64");
    ap_params_alloc(&p, "test params");
    tu_expect_error("missing and wrong-shape tensors",
                    ap_params_fill(&p, w, "", NULL), path, "1 missing tensor",
                    "down.0.weight (4)", "f16 expected (5, 3), found (3, 5)",
                    "expected a floating dtype", NULL);
    ap_params_free(&p);
    ap_wsrc_close(w);
    return tu_exit();
}
