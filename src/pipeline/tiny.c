/* tiny.c: write a tiny random SD model directory in the real formats. */
#include "tiny.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/st_write.h"
#include "io/weights.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"

static const char *k_unet_cfg =
    "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.17.1\",\n"
    "  \"act_fn\": \"silu\",\n  \"attention_head_dim\": 4,\n"
    "  \"block_out_channels\": [32, 64],\n  \"center_input_sample\": false,\n"
    "  \"cross_attention_dim\": 32,\n"
    "  \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"],\n"
    "  \"downsample_padding\": 1,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n"
    "  \"in_channels\": 4,\n  \"layers_per_block\": 1,\n  \"mid_block_scale_factor\": 1,\n"
    "  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 8,\n  \"out_channels\": 4,\n"
    "  \"sample_size\": 32,\n  \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]\n}\n";

static const char *k_vae_cfg =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.17.1\",\n"
    "  \"act_fn\": \"silu\",\n  \"block_out_channels\": [32, 64],\n"
    "  \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],\n"
    "  \"in_channels\": 3,\n  \"latent_channels\": 4,\n  \"layers_per_block\": 1,\n"
    "  \"norm_num_groups\": 8,\n  \"out_channels\": 3,\n  \"sample_size\": 64,\n"
    "  \"scaling_factor\": 0.18215,\n"
    "  \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]\n}\n";

static const char *k_text_cfg =
    "{\n  \"architectures\": [\"CLIPTextModel\"],\n  \"hidden_act\": \"quick_gelu\",\n"
    "  \"hidden_size\": 32,\n  \"intermediate_size\": 64,\n  \"layer_norm_eps\": 1e-05,\n"
    "  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n"
    "  \"num_attention_heads\": 4,\n  \"num_hidden_layers\": 2,\n  \"pad_token_id\": 1,\n"
    "  \"bos_token_id\": 0,\n  \"eos_token_id\": 2,\n  \"projection_dim\": 32,\n"
    "  \"torch_dtype\": \"float32\",\n  \"vocab_size\": 514\n}\n";

static const char *k_sched_cfg =
    "{\n  \"_class_name\": \"PNDMScheduler\",\n  \"_diffusers_version\": \"0.6.0\",\n"
    "  \"beta_end\": 0.012,\n  \"beta_schedule\": \"scaled_linear\",\n"
    "  \"beta_start\": 0.00085,\n  \"clip_sample\": false,\n"
    "  \"num_train_timesteps\": 1000,\n  \"set_alpha_to_one\": false,\n"
    "  \"skip_prk_steps\": true,\n  \"steps_offset\": 1,\n  \"trained_betas\": null\n}\n";

static const char *k_index =
    "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": \"0.17.1\",\n"
    "  \"scheduler\": [\"diffusers\", \"DDIMScheduler\"],\n"
    "  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
    "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n"
    "  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n"
    "  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";

static double unit(uint64_t *s) { return ap_unit53(ap_splitmix64(s)); }

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Fill every declared slot by the rule in tiny.h and write one safetensors. */
static int randomize_and_write(ap_params *p, const char *path, uint64_t *rng) {
    ap_st_entry *e = ap_malloc((size_t)p->count * sizeof *e, "tiny model entries");
    if (!e) return AP_ERR;
    for (int i = 0; i < p->count; i++) {
        ap_param *s = &p->items[i];
        int64_t n = ap_numel(&s->t);
        float *w = s->t.data; /* host: weights made here, written to a file below */
        int norm = strstr(s->name, "norm") != NULL || strstr(s->name, "layrnorm") != NULL;
        if (ends_with(s->name, ".bias")) {
            for (int64_t k = 0; k < n; k++) w[k] = 0.0f;
        } else if (norm && ends_with(s->name, ".weight")) {
            for (int64_t k = 0; k < n; k++) w[k] = 1.0f;
        } else if (strstr(s->name, "embedding")) {
            for (int64_t k = 0; k < n; k++) {
                double u1 = unit(rng) + 1e-12, u2 = unit(rng);
                w[k] = (float)(0.02 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
            }
        } else {
            int64_t fan_in = s->t.ndim > 1 ? n / s->t.shape[0] : n;
            double bound = 1.0 / sqrt((double)(fan_in > 0 ? fan_in : 1));
            for (int64_t k = 0; k < n; k++) w[k] = (float)(bound * (2 * unit(rng) - 1));
        }
        e[i].name = s->name;
        e[i].t = &s->t;
    }
    const char *meta[] = {"format", "pt", "generator", "alignprop-mpi tiny model", NULL};
    int rc = ap_st_write(path, e, p->count, meta);
    free(e);
    return rc;
}

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ap_fail("%s: cannot create directory: %s", dir, strerror(errno));
    return AP_OK;
}

static int put(const char *dir, const char *sub, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    AP_TRY(mkdir_p(path));
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    return ap_write_file_atomic(path, text, strlen(text));
}

static int printable(int c);

/* CLIP's byte-to-unicode table: printable bytes map to themselves, the rest to
 * U+0100 onwards, in byte order. */
static int byte_char(int b) {
    static int table[256], ready;
    if (!ready) {
        int n = 0;
        for (int c = 0; c < 256; c++) table[c] = printable(c) ? c : 256 + n++;
        ready = 1;
    }
    return table[b];
}

static size_t utf8(char *o, int cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static int printable(int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
}

/* vocab.json in CLIP's order: the 256 byte symbols (printable bytes first,
 * then the others, as bytes_to_unicode lists them), the same with "</w>",
 * then <|startoftext|> and <|endoftext|>; merges.txt holds only the header. */
static int write_tokenizer(const char *dir) {
    size_t cap = 64 * 1024, len = 0;
    char *buf = ap_malloc(cap, "tiny vocab.json");
    if (!buf) return AP_ERR;
    len += (size_t)snprintf(buf + len, cap - len, "{");
    int id = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 512; k++) {
            int b = k & 255;
            if ((k < 256) != (printable(b) != 0)) continue; /* printable ones first */
            int cp = byte_char(b);
            char sym[8];
            size_t n = utf8(sym, cp);
            sym[n] = '\0';
            const char *esc = (cp == '"') ? "\\\"" : (cp == '\\') ? "\\\\" : sym;
            len += (size_t)snprintf(buf + len, cap - len, "%s\"%s%s\": %d", id ? ", " : "", esc,
                                    pass ? "</w>" : "", id);
            id++;
        }
    len += (size_t)snprintf(buf + len, cap - len,
                            ", \"<|startoftext|>\": %d, \"<|endoftext|>\": %d}\n", id, id + 1);
    int rc = put(dir, "tokenizer", "vocab.json", buf);
    free(buf);
    if (rc) return rc;
    AP_TRY(put(dir, "tokenizer", "merges.txt", "#version: 0.2\n"));
    return put(dir, "tokenizer", "special_tokens_map.json",
               "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", "
               "\"pad_token\": \"<|endoftext|>\", \"unk_token\": \"<|endoftext|>\"}\n");
}

int ap_tiny_write(const char *dir, uint64_t seed) {
    char path[4096];
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 1;
    AP_TRY(mkdir_p(dir));
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    AP_TRY(ap_write_file_atomic(path, k_index, strlen(k_index)));
    AP_TRY(put(dir, "unet", "config.json", k_unet_cfg));
    AP_TRY(put(dir, "vae", "config.json", k_vae_cfg));
    AP_TRY(put(dir, "text_encoder", "config.json", k_text_cfg));
    AP_TRY(put(dir, "scheduler", "scheduler_config.json", k_sched_cfg));
    AP_TRY(write_tokenizer(dir));

    int rc;
    ap_unet_config uc;
    ap_unet unet;
    memset(&unet, 0, sizeof unet);
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    rc = ap_unet_config_read(&uc, path);
    if (!rc) rc = ap_unet_build(&unet, &uc, 0);
    if (!rc) rc = ap_unet_alloc(&unet);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    if (!rc) rc = randomize_and_write(&unet.params, path, &rng);
    ap_unet_free(&unet);
    if (rc) return rc;

    ap_vae_config vc;
    ap_vae vae;
    memset(&vae, 0, sizeof vae);
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    rc = ap_vae_config_load(&vc, path);
    if (!rc) rc = ap_vae_declare(&vae, &vc);
    if (!rc) rc = ap_vae_alloc(&vae);
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    if (!rc) rc = randomize_and_write(&vae.params, path, &rng);
    ap_vae_free(&vae);
    if (rc) return rc;

    ap_clip_text text;
    memset(&text, 0, sizeof text);
    ap_json *cfg = NULL;
    snprintf(path, sizeof path, "%s/text_encoder/config.json", dir);
    rc = ap_json_parse_file(&cfg, path);
    if (!rc) rc = ap_clip_text_config(&text, cfg, path);
    if (!rc) rc = ap_clip_text_declare(&text);
    if (!rc) rc = ap_params_alloc(&text.params, "tiny text encoder");
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", dir);
    if (!rc) rc = randomize_and_write(&text.params, path, &rng);
    ap_json_free(cfg);
    ap_clip_text_free(&text);
    return rc;
}
