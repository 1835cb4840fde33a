/* test_lora_layout.c: LoRA key layouts (io/lora_layout.h) and files
 * (io/lora_file.h), docs/lora.md §7.
 *
 * Every key of SD v1.5's rank-4 LoRA (tests/fixtures/manifests/
 * sd15_unet_lora_r4.txt, from diffusers 0.17.1) maps to each layout and back
 * to itself; one key per layout is compared with the name the reference
 * writes (peft: diffusers 0.42.1 save_lora_weights, as tests/io/
 * lora_reference.py checks on the tiny model; kohya: sd-scripts' naming);
 * kohya alpha folds into up exactly (alpha 1, rank 2: up * 0.5, a power of
 * two, so equality is exact); files that are no UNet attention LoRA, mixed
 * layouts, a down without up and mixed ranks are refused naming the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/lora_file.h"
#include "io/st_write.h"
#include "testutil.h"

static char g_dir[64] = "/tmp/test_lora_layout_XXXXXX";

static void manifest_roundtrip(void) {
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/manifests/sd15_unet_lora_r4.txt", tu_fixtures_dir());
    FILE *f = fopen(path, "r");
    if (!tu_check(f != NULL, "open %s", path)) return;
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        line[strcspn(line, " \n")] = 0;
        ap_lora_key k, back;
        if (ap_lora_key_parse(AP_LORA_ATTN_PROCS, line, &k)) {
            if (bad++ < 3) printf("       not parsed: %s\n", line);
            continue;
        }
        n++;
        for (int l = 0; l < AP_LORA_LAYOUT_COUNT; l++) {
            char name[512], again[512];
            if (ap_lora_key_format((ap_lora_layout)l, &k, name, sizeof name) ||
                ap_lora_key_parse((ap_lora_layout)l, name, &back) ||
                ap_lora_key_format(AP_LORA_ATTN_PROCS, &back, again, sizeof again) ||
                strcmp(again, line)) {
                if (bad++ < 3) printf("       %s: %s layout does not map back\n", line,
                                      ap_lora_layout_name((ap_lora_layout)l));
            }
        }
    }
    fclose(f);
    tu_check(n == 256 && !bad, "%d manifest keys -> each of 3 layouts -> back to the same key (%d bad)", n, bad);
}

static void known_names(void) {
    static const char *const want[3] = {
        "mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight"};
    ap_lora_key k;
    int ok = !ap_lora_key_parse(AP_LORA_ATTN_PROCS, want[0], &k);
    for (int l = 0; ok && l < 3; l++) {
        char name[512];
        ok = !ap_lora_key_format((ap_lora_layout)l, &k, name, sizeof name) && !strcmp(name, want[l]);
        if (!ok) printf("       %s: got %s, want %s\n", ap_lora_layout_name((ap_lora_layout)l), name, want[l]);
    }
    k.part = AP_LORA_ALPHA;
    char name[512];
    ok = ok && !ap_lora_key_format(AP_LORA_KOHYA, &k, name, sizeof name) &&
         !strcmp(name, "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.alpha");
    tu_check(ok, "mid_block attn2 to_out up: the names of save_attn_procs, save_lora_weights (peft), kohya and its alpha");
    ap_lora_key u;
    tu_check(ap_lora_key_parse(AP_LORA_ATTN_PROCS, "unet.down_blocks.1.attentions.1.transformer_blocks.0.attn1.processor.to_k_lora.down.weight", &u) == 0 &&
                 !strcmp(u.module, "down_blocks.1.attentions.1.transformer_blocks.0.attn1") && u.proj == AP_LORA_TO_K,
             "attn-procs key with the \"unet.\" prefix (diffusers 0.18) parsed");
}

/* Write a safetensors file of (name, shape) entries with values 1..n each. */
static void write_file(const char *path, int n, const char *const *names, const int *ndims, const int64_t (*shapes)[2], const float *values) {
    ap_st_entry e[8];
    ap_tensor t[8];
    float *data[8];
    for (int i = 0; i < n; i++) {
        t[i] = ap_tn(NULL, ndims[i], shapes[i]);
        int64_t m = ap_numel(&t[i]);
        data[i] = tu_alloc(m);
        for (int64_t j = 0; j < m; j++) data[i][j] = values ? values[i] : (float)(j + 1);
        t[i].data = data[i];
        e[i].name = names[i], e[i].t = &t[i];
    }
    ap_st_write(path, e, n, NULL);
    for (int i = 0; i < n; i++) free(data[i]);
}

static void alpha_and_errors(void) {
    char p[256];
    const char *base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    char nd[200], nu[200], na[200];
    snprintf(nd, sizeof nd, "%s.lora_down.weight", base);
    snprintf(nu, sizeof nu, "%s.lora_up.weight", base);
    snprintf(na, sizeof na, "%s.alpha", base);
    const char *names[3] = {nd, nu, na};
    const int nds[3] = {2, 2, 0};
    const int64_t shapes[3][2] = {{2, 8}, {8, 2}, {0, 0}};
    const float vals[3] = {3.0f, 5.0f, 1.0f}; /* down 3, up 5, alpha 1 */
    snprintf(p, sizeof p, "%s/kohya.safetensors", g_dir);
    write_file(p, 3, names, nds, shapes, vals);
    ap_lora_set s;
    int rc = ap_lora_read(&s, p);
    if (tu_check(rc == 0, "read a kohya file with alpha 1, rank 2%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        const ap_param *u = ap_params_find(&s.p, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight");
        const ap_param *d = ap_params_find(&s.p, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight");
        tu_check(u && d && s.p.flat[u->offset] == 2.5f && s.p.flat[d->offset] == 3.0f &&
                     s.layout == AP_LORA_KOHYA && s.rank == 2 && s.alphas == 1 && s.alphas_not_rank == 1,
                 "up 5 * alpha/rank (1/2) = %g (want 2.5 exactly), down kept %g, 1 alpha folded",
                 u ? s.p.flat[u->offset] : -1.0, d ? s.p.flat[d->offset] : -1.0);
        ap_lora_set_free(&s);
    }
    const float zero[3] = {3.0f, 5.0f, 0.0f};
    snprintf(p, sizeof p, "%s/alpha0.safetensors", g_dir);
    write_file(p, 3, names, nds, shapes, zero);
    tu_expect_error("kohya alpha 0 refused", ap_lora_read(&s, p), "alpha0.safetensors", "attn1_to_q.alpha is 0", "> 0", NULL);
    /* a kohya file with a text-encoder adapter */
    const char *te[2] = {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", nd};
    snprintf(p, sizeof p, "%s/te.safetensors", g_dir);
    write_file(p, 2, te, nds, shapes, NULL);
    tu_expect_error("kohya text-encoder key refused", ap_lora_read(&s, p), "te.safetensors",
                    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", "kohya", "to_out.0", NULL);
    /* a peft adapter on a resnet */
    const char *rn[1] = {"unet.down_blocks.0.resnets.0.conv1.lora_A.weight"};
    snprintf(p, sizeof p, "%s/rn.safetensors", g_dir);
    write_file(p, 1, rn, nds, shapes, NULL);
    tu_expect_error("peft resnet key refused", ap_lora_read(&s, p), "unet.down_blocks.0.resnets.0.conv1.lora_A.weight", "peft", NULL);
    /* mixed layouts */
    const char *mix[2] = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", nu};
    snprintf(p, sizeof p, "%s/mix.safetensors", g_dir);
    write_file(p, 2, mix, nds, shapes, NULL);
    tu_expect_error("peft and kohya keys in one file refused", ap_lora_read(&s, p), "mix.safetensors", "1 of 2 keys", NULL);
    /* a down without its up */
    const char *lone[1] = {nd};
    snprintf(p, sizeof p, "%s/lone.safetensors", g_dir);
    write_file(p, 1, lone, nds, shapes, NULL);
    tu_expect_error("down without up refused", ap_lora_read(&s, p), "lone.safetensors", "has no up matrix", nu, NULL);
    /* two ranks */
    const char *two[4] = {nd, nu, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k.lora_down.weight",
                          "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k.lora_up.weight"};
    const int nd4[4] = {2, 2, 2, 2};
    const int64_t sh4[4][2] = {{2, 8}, {8, 2}, {4, 8}, {8, 4}};
    snprintf(p, sizeof p, "%s/two.safetensors", g_dir);
    write_file(p, 4, two, nd4, sh4, NULL);
    tu_expect_error("two ranks in one file refused", ap_lora_read(&s, p), "two.safetensors", "rank", "expected one rank", NULL);
    ap_lora_layout l;
    tu_expect_error("unknown --to layout", ap_lora_layout_parse("lycoris", &l), "lycoris", "peft", "kohya", NULL);
}

int main(void) {
    printf("test_lora_layout: LoRA key layouts diffusers-attn-procs / peft / kohya\n");
    if (!tu_fixtures_dir()) return tu_skip("AP_FIXTURES_DIR is not set");
    if (!mkdtemp(g_dir)) return tu_skip("cannot create a temporary directory");
    manifest_roundtrip();
    known_names();
    alpha_and_errors();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) printf("  (could not remove %s)\n", g_dir);
    return tu_exit();
}
