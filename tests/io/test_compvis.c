/* test_compvis.c: CompVis single-file key names -> diffusers names (io/compvis.h).
 *
 * Every tensor of SD v1.5 (UNet 686, VAE 248, text encoder 197 + position_ids)
 * under its CompVis name (tests/fixtures/compvis_sd15_keys.txt, checked by
 * tools/fixtures/compvis.py against diffusers 0.17.1's own conversion) must
 * map to "<model>." + the name on the same line of its manifest, with the
 * 1x1-conv squeeze allowed exactly for the VAE attention projection weights.
 * The same names written into a safetensors file are indexed through
 * ap_compvis_open, which must also read the layout (2 layers, 4 VAE blocks)
 * off the keys. Plus: "state_dict." prefixes, unknown keys, bad layouts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/compvis.h"
#include "testutil.h"

#define MAXK 1400

static char *ldm[MAXK], *model[MAXK], *want[MAXK];
static int n_keys;

static int read_manifest(const char *dir, const char *file, const char *tag, int *at) {
    char path[4096], line[1024], name[512];
    snprintf(path, sizeof path, "%s/manifests/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int i = *at;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%511s", name) != 1) continue;
        while (i < n_keys && strcmp(model[i], tag)) i++;
        if (i == n_keys) break;
        char full[640];
        snprintf(full, sizeof full, "%s.%s", tag, name);
        want[i++] = strdup(full);
    }
    fclose(f);
    *at = i;
    return 0;
}

static int load_names(const char *dir) {
    char path[4096], line[1024], m[64], k[512];
    snprintf(path, sizeof path, "%s/compvis_sd15_keys.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f) && n_keys < MAXK) {
        if (line[0] == '#' || sscanf(line, "%63s %511s", m, k) != 2) continue;
        model[n_keys] = strdup(m);
        ldm[n_keys] = strdup(k);
        n_keys++;
    }
    fclose(f);
    int at = 0;
    if (read_manifest(dir, "sd15_unet.txt", "unet", &at) ||
        read_manifest(dir, "sd15_vae.txt", "vae", &at) ||
        read_manifest(dir, "sd15_text_encoder.txt", "text_encoder", &at))
        return -1;
    return 0;
}

/* A safetensors file of one-element F32 tensors under the given names. */
static int write_names(const char *path, char *const *names, int n) {
    size_t cap = 256 * (size_t)n + 64, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i ? "," : "", names[i], 4 * i, 4 * i + 4);
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    float z = 0;
    for (int i = 0; i < n; i++) fwrite(&z, 4, 1, f);
    free(h);
    return fclose(f);
}

/* The VAE attention projections (the flag is moot for their 1-D biases). */
static int squeezable(const char *name) {
    return strstr(name, "mid_block.attentions.0.to_") && strstr(name, "vae.") == name;
}

int main(void) {
    printf("test_compvis: CompVis single-file keys -> diffusers names\n");
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    if (load_names(dir) != 0) {
        tu_check(0, "read compvis_sd15_keys.txt and the manifests (tools/make_fixtures.py compvis)");
        return tu_exit();
    }
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < n_keys; i++)
        counts[!strcmp(model[i], "vae") + 2 * !strcmp(model[i], "text_encoder")]++;
    tu_check(counts[0] == 686 && counts[1] == 248 && counts[2] == 197,
             "SD v1.5 names: %d UNet, %d VAE, %d text encoder", counts[0], counts[1], counts[2]);

    /* 1. the hook, name by name, with and without "state_dict." */
    ap_compvis_layout sd;
    ap_compvis_layout_sd15(&sd);
    int bad = 0, bad_flags = 0;
    for (int i = 0; i < n_keys; i++) {
        for (int pre = 0; pre < 2; pre++) {
            char key[640], name[640];
            snprintf(key, sizeof key, "%s%s", pre ? "state_dict." : "", ldm[i]);
            int r = ap_compvis_rename(&sd, key, name, sizeof name);
            if (!want[i] || r < 0 || !(r & AP_WSRC_RENAMED) || strcmp(name, want[i])) {
                if (bad++ < 8)
                    printf("    %s -> %s (flags %d), want %s\n", key, r >= 0 ? name : ap_errmsg(),
                           r, want[i] ? want[i] : "?");
            } else if (!!(r & AP_WSRC_SQUEEZE) != squeezable(want[i])) {
                if (bad_flags++ < 8) printf("    %s: squeeze flag %d\n", key, r);
            }
        }
    }
    tu_check(bad == 0, "%d CompVis names (and their state_dict. forms) -> the manifest names "
             "(%d wrong)", n_keys, bad);
    tu_check(bad_flags == 0, "1x1 squeeze allowed for exactly the 16 VAE attention projection "
             "tensors (%d wrong)", bad_flags);

    /* 2. the same through an index: layout read off the keys */
    char path[4096];
    snprintf(path, sizeof path, "/tmp/test_compvis.%d.safetensors", (int)getpid());
    write_names(path, ldm, n_keys);
    ap_compvis_layout lay = {0, 0};
    ap_wsrc *w = NULL;
    int rc = ap_compvis_open(&w, path, &lay);
    if (tu_check(rc == 0, "open %d names as a single file%s%s", n_keys, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        tu_check(lay.unet_layers_per_block == 2 && lay.vae_blocks == 4,
                 "layout read off the keys: %d layers per block, %d VAE blocks",
                 lay.unet_layers_per_block, lay.vae_blocks);
        int hits = 0;
        for (int i = 0; i < ap_wsrc_count(w); i++)
            for (int j = 0; j < n_keys; j++)
                if (!strcmp(ap_wsrc_key(w, i), ldm[j])) {
                    hits += want[j] && !strcmp(ap_wsrc_name(w, i), want[j]);
                    break;
                }
        tu_check(hits == n_keys, "indexed names == manifest names (%d of %d)", hits, n_keys);
        ap_wsrc_close(w);
    }

    /* a layout that does not add up: 5 output blocks, 1 downsampler */
    char *odd[] = {"model.diffusion_model.input_blocks.3.0.op.weight",
                   "model.diffusion_model.output_blocks.4.0.in_layers.0.weight"};
    write_names(path, odd, 2);
    tu_expect_error("5 output blocks over 2 up blocks", ap_compvis_open(&w, path, &lay),
                    path, "5 output blocks", "2 up blocks", NULL);
    unlink(path);

    /* 3. keys outside the table */
    char name[640];
    int r = ap_compvis_rename(&sd, "model.diffusion_model.label_emb.0.0.weight", name, sizeof name);
    tu_check(r == AP_WSRC_RENAMED && !strcmp(name, "unet.label_emb.0.0.weight"),
             "unknown UNet key stays under unet. (reported unused): %s", name);
    r = ap_compvis_rename(&sd, "first_stage_model.decoder.up.4.block.0.conv1.weight", name,
                          sizeof name);
    tu_check(r == AP_WSRC_RENAMED && !strcmp(name, "vae.decoder.up.4.block.0.conv1.weight"),
             "VAE up block 4 of 4 is not renamed to a block: %s", name);
    r = ap_compvis_rename(&sd, "model_ema.decay", name, sizeof name);
    tu_check(r == 0, "model_ema.decay keeps its name (flags %d)", r);
    r = ap_compvis_rename(&sd, "state_dict.alphas_cumprod", name, sizeof name);
    tu_check(r == AP_WSRC_RENAMED && !strcmp(name, "alphas_cumprod"),
             "state_dict.alphas_cumprod -> %s", name);
    ap_compvis_layout one = {1, 2};
    r = ap_compvis_rename(&one, "model.diffusion_model.input_blocks.4.1.proj_in.weight", name,
                          sizeof name);
    tu_check(r == AP_WSRC_RENAMED && !strcmp(name, "unet.down_blocks.1.attentions.1.proj_in.weight"),
             "1 layer per block: input_blocks.4.1 -> %s", name);
    r = ap_compvis_rename(&one, "first_stage_model.decoder.up.0.block.1.nin_shortcut.bias", name,
                          sizeof name);
    tu_check(r == AP_WSRC_RENAMED &&
                 !strcmp(name, "vae.decoder.up_blocks.1.resnets.1.conv_shortcut.bias"),
             "2 VAE blocks: decoder.up.0.block.1.nin_shortcut -> %s", name);
    char small[24];
    tu_expect_error("name longer than the buffer",
                    ap_compvis_rename(&sd, "first_stage_model.decoder.mid.attn_1.q.weight", small,
                                      sizeof small),
                    "compvis", "too long", NULL);

    for (int i = 0; i < n_keys; i++) free(ldm[i]), free(model[i]), free(want[i]);
    return tu_exit();
}
