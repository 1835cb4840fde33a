/* lora_diff: compare two LoRA safetensors files tensor by tensor.
 *   lora_diff A.safetensors B.safetensors ATOL
 * Prints the largest absolute difference and how many values differ; exits
 * 0 when every |a - b| <= ATOL (ATOL 0: the files' tensors are bit-identical),
 * 1 otherwise, 2 on a read error or a different key set / shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/safetensors.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: lora_diff A.safetensors B.safetensors ATOL\n");
        return 2;
    }
    double atol = atof(argv[3]);
    ap_st_file *a = NULL, *b = NULL;
    if (ap_st_open(&a, argv[1]) || ap_st_open(&b, argv[2])) {
        fprintf(stderr, "lora_diff: %s\n", ap_errmsg());
        return 2;
    }
    if (ap_st_count(a) != ap_st_count(b)) {
        fprintf(stderr, "lora_diff: %d tensors in %s, %d in %s\n", ap_st_count(a), argv[1],
                ap_st_count(b), argv[2]);
        return 2;
    }
    double maxd = 0;
    long ndiff = 0, total = 0;
    const char *worst = "";
    for (int i = 0; i < ap_st_count(a); i++) {
        const ap_st_tensor *ta = ap_st_at(a, i), *tb = ap_st_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "lora_diff: %s: %s in %s\n", ta->name, tb ? "other shape" : "missing",
                    argv[2]);
            return 2;
        }
        ap_tensor x, y;
        if (ap_st_load_f32(a, ta->name, 0, NULL, &x) || ap_st_load_f32(b, ta->name, 0, NULL, &y)) {
            fprintf(stderr, "lora_diff: %s\n", ap_errmsg());
            return 2;
        }
        for (int64_t k = 0; k < ta->numel; k++) {
            double d = fabs((double)x.data[k] - (double)y.data[k]);
            if (x.data[k] != y.data[k]) ndiff++;
            if (d > maxd || isnan(d)) maxd = d, worst = ta->name;
        }
        total += ta->numel;
        free(x.data), free(y.data);
    }
    int ok = maxd <= atol;
    printf("lora_diff: %d tensors, %ld values, %ld differ, max |a - b| %.3g%s%s (atol %.3g): %s\n",
           ap_st_count(a), total, ndiff, maxd, maxd > 0 ? " in " : "", maxd > 0 ? worst : "",
           atol, ok ? "ok" : "MISMATCH");
    ap_st_close(a), ap_st_close(b);
    return ok ? 0 : 1;
}
