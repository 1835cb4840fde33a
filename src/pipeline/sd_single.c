/* sd_single.c: a Stable Diffusion pipeline from one CompVis single-file
 * checkpoint (io/compvis.h) plus a tokenizer folder, as diffusers 0.17.1's
 * from_single_file loads it: the file's keys are renamed to namespaced
 * diffusers names once, then the UNet, VAE and text encoder are declared
 * from their configs (SD v1.5's built in, or a config directory) and filled
 * under the prefixes "unet.", "vae." and "text_encoder.". */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/path.h"
#include "io/compvis.h"
#include "io/json.h"
#include "sd_internal.h"

/* SD v1.5's unet/config.json and text_encoder/config.json (the keys that
 * differ from the constructors' defaults; tests/fixtures/manifests has the
 * full files). The VAE's is ap_vae_config_sd15. */
static const char *k_sd15_unet =
    "{\"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280],"
    " \"cross_attention_dim\": 768,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\","
    " \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4, \"layers_per_block\": 2,"
    " \"norm_eps\": 1e-05, \"norm_num_groups\": 32, \"out_channels\": 4, \"sample_size\": 64,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\","
    " \"CrossAttnUpBlock2D\"]}";

static const char *k_sd15_text =
    "{\"hidden_act\": \"quick_gelu\", \"hidden_size\": 768, \"intermediate_size\": 3072,"
    " \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77, \"num_attention_heads\": 12,"
    " \"num_hidden_layers\": 12, \"vocab_size\": 49408}";

int ap_sd15_config_json(ap_json **j, const char *which) {
    const char *t = !strcmp(which, "unet") ? k_sd15_unet
                    : !strcmp(which, "text_encoder") ? k_sd15_text : NULL;
    if (!t) return ap_fail("no built-in SD v1.5 config for \"%s\" (unet, text_encoder)", which);
    char what[64];
    snprintf(what, sizeof what, "built-in SD v1.5 %s config", which);
    return ap_json_parse(j, t, strlen(t), what);
}

/* A config object: config_dir/<sub>/config.json, or the built-in text. */
static int config_json(ap_json **j, const char *config_dir, const char *sub, char *what,
                       size_t cap) {
    if (!config_dir) {
        snprintf(what, cap, "built-in SD v1.5 %s config", sub);
        return ap_sd15_config_json(j, sub);
    }
    snprintf(what, cap, "%s/%s/config.json", config_dir, sub);
    if (!ap_is_file(what))
        return ap_fail("%s: missing (--config-dir must hold unet/, vae/ and text_encoder/ "
                       "config.json files)", what);
    return ap_json_parse_file(j, what);
}

/* The file must hold the first tensor of each model (name: its namespaced
 * diffusers name; ldm: the CompVis key), else it is no SD checkpoint. */
static int has_model(const ap_wsrc *w, const char *name, const char *ldm, const char *what) {
    ap_tensor t;
    if (ap_wsrc_shape(w, name, &t) == AP_OK) return AP_OK;
    return ap_fail("%s: no %s weights (%s absent): not a single-file Stable Diffusion "
                   "checkpoint in the CompVis layout", ap_wsrc_files(w), what, ldm);
}

static int load_unet(ap_sd *sd, const ap_wsrc *w, const ap_compvis_layout *lay,
                     const char *config_dir, int rank) {
    char what[4096];
    ap_json *j = NULL;
    ap_unet_config c;
    AP_TRY(config_json(&j, config_dir, "unet", what, sizeof what));
    int rc = ap_unet_config_from_json(&c, j, what);
    ap_json_free(j);
    AP_TRY(rc);
    for (int i = 0; i < c.levels; i++)
        if (c.layers[i] != lay->unet_layers_per_block)
            return ap_fail("%s: layers_per_block %d, but %s has %d per UNet block (read off its "
                           "output_blocks)%s", what, c.layers[i], ap_wsrc_files(w),
                           lay->unet_layers_per_block,
                           config_dir ? "" : "; give the model's configs as a config directory");
    rc = ap_unet_build(&sd->unet, &c, rank);
    if (!rc) rc = ap_unet_alloc(&sd->unet);
    if (!rc) rc = ap_params_fill(&sd->unet.params, w, "unet.", NULL);
    if (rc) ap_err_prefix("UNet (%s): ", what);
    return rc;
}

static int load_vae(ap_sd *sd, const ap_wsrc *w, const ap_compvis_layout *lay,
                    const char *config_dir) {
    char what[4096];
    ap_vae_config c;
    if (config_dir) {
        snprintf(what, sizeof what, "%s/vae/config.json", config_dir);
        if (!ap_is_file(what)) return ap_fail("%s: missing", what);
        AP_TRY(ap_vae_config_load(&c, what));
    } else {
        snprintf(what, sizeof what, "built-in SD v1.5 vae config");
        ap_vae_config_sd15(&c);
    }
    if (c.n_blocks != lay->vae_blocks)
        return ap_fail("%s: %d block_out_channels, but %s has %d VAE decoder blocks%s", what,
                       c.n_blocks, ap_wsrc_files(w), lay->vae_blocks,
                       config_dir ? "" : "; give the model's configs as a config directory");
    int rc = ap_vae_declare(&sd->vae, &c);
    if (!rc) rc = ap_vae_alloc(&sd->vae);
    if (!rc) rc = ap_vae_fill(&sd->vae, w, "vae.");
    if (rc) ap_err_prefix("VAE (%s): ", what);
    return rc;
}

static int load_text(ap_sd *sd, const ap_wsrc *w, const char *config_dir) {
    char what[4096];
    ap_json *j = NULL;
    AP_TRY(config_json(&j, config_dir, "text_encoder", what, sizeof what));
    int rc = ap_clip_text_config(&sd->text, j, what);
    ap_json_free(j);
    static const char *const ignore[] = {"position_ids", NULL};
    if (!rc) rc = ap_clip_text_declare(&sd->text);
    if (!rc) rc = ap_params_alloc(&sd->text.params, "CLIP text encoder parameters");
    if (!rc) rc = ap_params_fill(&sd->text.params, w, "text_encoder.", ignore);
    if (rc) ap_err_prefix("text encoder (%s): ", what);
    return rc;
}

static int load_tokenizer(ap_sd *sd, const char *dir) {
    char v[4096], m[4096];
    if (!dir)
        return ap_fail("a single-file checkpoint carries no tokenizer: give a tokenizer folder "
                       "(vocab.json + merges.txt, e.g. a diffusers model's tokenizer/)");
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    if (!ap_is_file(v) || !ap_is_file(m))
        return ap_fail("tokenizer folder %s: expected vocab.json and merges.txt, found %s",
                       dir, !ap_is_file(v) && !ap_is_file(m) ? "neither" : ap_is_file(v) ? "no merges.txt"
                                                                           : "no vocab.json");
    AP_TRY(ap_tokenizer_load_hf(&sd->tok, v, m));
    return ap_tokenizer_hf_pad_from_dir(sd->tok, dir); /* SD 2.x pads with "!" */
}

int ap_sd_open_single(ap_sd *sd, const char *ckpt, const char *tokenizer_dir,
                      const char *config_dir, const char *lora) {
    memset(sd, 0, sizeof *sd);
    int rank = 0;
    AP_TRY(load_tokenizer(sd, tokenizer_dir));
    ap_compvis_layout lay;
    ap_wsrc *w = NULL;
    int rc = lora ? ap_sd_lora_rank(lora, &rank) : AP_OK;
    if (!rc) rc = ap_compvis_open(&w, ckpt, &lay);
    if (!rc) rc = has_model(w, "unet.conv_in.weight", "model.diffusion_model.input_blocks.0.0.weight",
                            "UNet");
    if (!rc) rc = has_model(w, "vae.decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight",
                            "VAE");
    if (!rc) rc = has_model(w, "text_encoder.text_model.embeddings.token_embedding.weight",
                            "cond_stage_model.transformer.text_model.embeddings.token_embedding."
                            "weight", "text encoder");
    if (!rc) rc = load_unet(sd, w, &lay, config_dir, rank);
    if (!rc) rc = load_vae(sd, w, &lay, config_dir);
    if (!rc) rc = load_text(sd, w, config_dir);
    ap_wsrc_close(w);
    if (!rc && lora) rc = ap_unet_load_lora(&sd->unet, lora);
    if (!rc) rc = ap_sd_finish(sd, config_dir, ckpt);
    if (rc) ap_sd_close(sd);
    return rc;
}
