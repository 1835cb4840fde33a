/* lora_eps.c: our UNet's output with a LoRA file of any layout, for
 * tests/io/lora_reference.sh to compare with what diffusers computes after
 * loading the same file (docs/lora.md §7).
 *
 *   lora_eps UNET_DIR LORA INPUTS.safetensors OUT.safetensors
 *
 * INPUTS holds x (B, in, H, W), timesteps (B), context (B, L, cross); OUT
 * gets eps (B, out, H, W). Exit 0, or 1 with the error on stderr. */
#include <stdio.h>
#include <stdlib.h>

#include "core/ctx.h"
#include "core/err.h"
#include "io/lora_file.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "models/unet.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: lora_eps UNET_DIR LORA INPUTS.safetensors OUT.safetensors\n");
        return 2;
    }
    ap_ctx ctx;
    ap_unet m;
    ap_st_file *f = NULL;
    ap_tensor x, t, cx;
    int rank = 0;
    if (ap_ctx_init(&ctx, 1) || ap_lora_rank(argv[2], &rank) || ap_unet_open(&m, argv[1], rank) ||
        ap_unet_load_lora(&m, argv[2]) || ap_st_open(&f, argv[3]) ||
        ap_st_load_f32(f, "x", 0, NULL, &x) || ap_st_load_f32(f, "timesteps", 0, NULL, &t) ||
        ap_st_load_f32(f, "context", 0, NULL, &cx)) {
        fprintf(stderr, "lora_eps: %s\n", ap_errmsg());
        return 1;
    }
    ap_unet_plan p = {0};
    ap_arena tmp = {0};
    ap_unet_saved sv = {0};
    float *e = malloc((size_t)ap_numel(&x) * sizeof(float) * 2);
    ap_tensor eps = ap_t4(e, x.shape[0], m.cfg.out_channels, x.shape[2], x.shape[3]);
    int rc = !e || ap_unet_plan_measure(&ctx, &m, x.shape[0], x.shape[2], x.shape[3], cx.shape[1], &p) ||
             ap_arena_init(&tmp, p.tmp_bytes, "tmp") || ap_ctx_reserve(&ctx, p.scratch_bytes) ||
             ap_unet_saved_init(&sv, &m);
    ctx.tmp = &tmp;
    if (!rc) rc = ap_unet_forward(&ctx, NULL, &m, &sv, &eps, &x, &t, &cx);
    ctx.tmp = NULL;
    ap_st_entry out = {"eps", &eps};
    if (!rc) rc = ap_st_write(argv[4], &out, 1, NULL);
    if (rc) fprintf(stderr, "lora_eps: %s\n", ap_errmsg());
    else printf("lora_eps: %s: rank %d, eps %lld values -> %s\n", argv[2], rank, (long long)ap_numel(&eps), argv[4]);
    ap_unet_saved_free(&sv);
    if (p.tmp_bytes) ap_arena_free(&tmp);
    free(e), free(x.data), free(t.data), free(cx.data);
    ap_st_close(f);
    ap_unet_free(&m);
    ap_ctx_free(&ctx);
    return rc ? 1 : 0;
}
