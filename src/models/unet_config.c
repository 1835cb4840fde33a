/* unet_config.c: reads a diffusers unet/config.json into ap_unet_config.
 *
 * Missing keys take the defaults of diffusers 0.17.1's UNet2DConditionModel
 * constructor (from_pretrained does the same; SD v1.5's own config omits
 * several). Every key that changes the computation is checked: a value this
 * implementation does not run is an error naming the file, the key, the value
 * found and the supported values. Keys it does not know (newer diffusers) are
 * reported on stderr, not silently taken. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "io/json.h"
#include "models/unet.h"

typedef struct {
    const ap_json *j;
    const char *path;
} cfg_src;

static const ap_json *get(const cfg_src *s, const char *key) {
    const ap_json *v = ap_json_get(s->j, key);
    return v && v->type != AP_JSON_NULL ? v : NULL;
}

static const char *found(const ap_json *v, char *buf, size_t n) {
    if (!v) return "null";
    switch (v->type) {
    case AP_JSON_BOOL: return v->boolean ? "true" : "false";
    case AP_JSON_NUM: snprintf(buf, n, "%g", v->num); return buf;
    case AP_JSON_STR: snprintf(buf, n, "\"%s\"", v->str); return buf;
    default: return ap_json_type_name(v->type);
    }
}

static int bad(const cfg_src *s, const char *key, const ap_json *v, const char *supported) {
    char b[128];
    return ap_fail("%s: key %s: found %s, supported: %s", s->path, key, found(v, b, sizeof b),
                   supported);
}

static int is_int(const ap_json *v) {
    return v && v->type == AP_JSON_NUM && v->num == floor(v->num) && fabs(v->num) < 1e9;
}

/* Positive integer; default def when absent or null. */
static int get_int(const cfg_src *s, const char *key, int def, int *out) {
    const ap_json *v = get(s, key);
    if (!v) return *out = def, AP_OK;
    if (!is_int(v) || v->num < 1) return bad(s, key, v, "a positive integer");
    *out = (int)v->num;
    return AP_OK;
}

static int get_bool(const cfg_src *s, const char *key, int def, int *out) {
    const ap_json *v = get(s, key);
    if (!v) return *out = def, AP_OK;
    if (v->type != AP_JSON_BOOL) return bad(s, key, v, "true or false");
    *out = v->boolean;
    return AP_OK;
}

static int get_num(const cfg_src *s, const char *key, double def, double *out) {
    const ap_json *v = get(s, key);
    if (!v) return *out = def, AP_OK;
    if (v->type != AP_JSON_NUM) return bad(s, key, v, "a number");
    *out = v->num;
    return AP_OK;
}

/* The key must be absent, null, or equal to the one supported value. */
static int want_null(const cfg_src *s, const char *key) {
    const ap_json *v = get(s, key);
    return v ? bad(s, key, v, "null (the path it enables is not implemented)") : AP_OK;
}
static int want_str(const cfg_src *s, const char *key, const char *val, int null_ok) {
    const ap_json *v = get(s, key);
    if (!v && null_ok) return AP_OK;
    if (v && v->type == AP_JSON_STR && !strcmp(v->str, val)) return AP_OK;
    char sup[96];
    snprintf(sup, sizeof sup, "\"%s\"%s", val, null_ok ? " or null" : "");
    return bad(s, key, v, sup);
}
static int want_num(const cfg_src *s, const char *key, double val) {
    const ap_json *v = get(s, key);
    if (!v || (v->type == AP_JSON_NUM && v->num == val)) return AP_OK;
    char sup[64];
    snprintf(sup, sizeof sup, "%g", val);
    return bad(s, key, v, sup);
}
static int want_false(const cfg_src *s, const char *key) {
    const ap_json *v = get(s, key);
    if (!v || (v->type == AP_JSON_BOOL && !v->boolean)) return AP_OK;
    return bad(s, key, v, "false");
}

/* int or list of n ints (positive); list length must equal n. */
static int get_int_list(const cfg_src *s, const char *key, int def, int n, int *out) {
    const ap_json *v = get(s, key);
    if (!v || v->type != AP_JSON_ARR) {
        int x;
        if (v && !is_int(v))
            return bad(s, key, v, "a positive integer or a list of one per block");
        AP_TRY(get_int(s, key, def, &x));
        for (int i = 0; i < n; i++) out[i] = x;
        return AP_OK;
    }
    if ((int)v->len != n)
        return ap_fail("%s: key %s: expected a list of %d entries (one per block), found %zu",
                       s->path, key, n, v->len);
    for (int i = 0; i < n; i++) {
        if (!is_int(&v->items[i]) || v->items[i].num < 1)
            return ap_fail("%s: key %s[%d]: expected a positive integer, found %s", s->path, key,
                           i, ap_json_type_name(v->items[i].type));
        out[i] = (int)v->items[i].num;
    }
    return AP_OK;
}

static const char *const kDefaultDown[4] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "CrossAttnDownBlock2D", "DownBlock2D"};
static const char *const kDefaultUp[4] = {"UpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};

static int block_types(const cfg_src *s, const char *key, int n, const char *attn,
                       const char *plain, const char *const *def, int *out) {
    const ap_json *v = get(s, key);
    if (v && v->type != AP_JSON_ARR) return bad(s, key, v, "a list of block type names");
    if ((v ? (int)v->len : 4) != n)
        return ap_fail("%s: key %s: expected %d entries (one per block_out_channels entry), "
                       "found %d", s->path, key, n, v ? (int)v->len : 4);
    for (int i = 0; i < n; i++) {
        const ap_json *e = v ? &v->items[i] : NULL;
        const char *name = v ? (e->type == AP_JSON_STR ? e->str : "") : def[i];
        if (!strcmp(name, attn)) out[i] = 1;
        else if (!strcmp(name, plain)) out[i] = 0;
        else {
            char k[64], sup[128];
            snprintf(k, sizeof k, "%s[%d]", key, i);
            snprintf(sup, sizeof sup, "\"%s\" or \"%s\"", attn, plain);
            return bad(s, k, e, sup);
        }
    }
    return AP_OK;
}

static const char *const kKnown[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos",
    "freq_shift", "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention",
    "block_out_channels", "layers_per_block", "downsample_padding", "mid_block_scale_factor",
    "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim", "encoder_hid_dim",
    "encoder_hid_dim_type", "attention_head_dim", "dual_cross_attention", "use_linear_projection",
    "class_embed_type", "addition_embed_type", "num_class_embeds", "upcast_attention",
    "resnet_time_scale_shift", "resnet_skip_time_act", "resnet_out_scale_factor",
    "time_embedding_type", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act",
    "time_cond_proj_dim", "conv_in_kernel", "conv_out_kernel",
    "projection_class_embeddings_input_dim", "class_embeddings_concat",
    "mid_block_only_cross_attention", "cross_attention_norm", "addition_embed_type_num_heads",
    "num_attention_heads", "transformer_layers_per_block", "attention_type", "dropout",
    "addition_time_embed_dim", "reverse_transformer_layers_per_block", NULL};

static int parse(ap_unet_config *c, const cfg_src *s) {
    memset(c, 0, sizeof *c);
    if (s->j->type != AP_JSON_OBJ) return ap_fail("%s: expected a JSON object", s->path);
    for (size_t i = 0; i < s->j->len; i++) {
        const char *k = s->j->keys[i];
        int known = k[0] == '_';
        for (int n = 0; !known && kKnown[n]; n++) known = !strcmp(k, kKnown[n]);
        if (!known) fprintf(stderr, "warning: %s: key %s is not a diffusers 0.17.1 "
                                    "UNet2DConditionModel option; ignored\n", s->path, k);
    }
    /* block_out_channels decides the number of blocks */
    const ap_json *boc = get(s, "block_out_channels");
    static const int kBoc[4] = {320, 640, 1280, 1280};
    if (boc && boc->type != AP_JSON_ARR) return bad(s, "block_out_channels", boc, "a list of ints");
    c->levels = boc ? (int)boc->len : 4;
    if (c->levels < 1 || c->levels > AP_UNET_MAX_LEVELS)
        return ap_fail("%s: key block_out_channels: expected 1 to %d entries, found %d", s->path,
                       AP_UNET_MAX_LEVELS, c->levels);
    for (int i = 0; i < c->levels; i++) {
        if (boc && (!is_int(&boc->items[i]) || boc->items[i].num < 1))
            return ap_fail("%s: key block_out_channels[%d]: expected a positive integer",
                           s->path, i);
        c->block_out[i] = boc ? (int)boc->items[i].num : kBoc[i];
    }
    AP_TRY(get_int(s, "in_channels", 4, &c->in_channels));
    AP_TRY(get_int(s, "out_channels", 4, &c->out_channels));
    AP_TRY(get_int_list(s, "layers_per_block", 2, c->levels, c->layers));
    AP_TRY(get_int_list(s, "attention_head_dim", 8, c->levels, c->heads));
    AP_TRY(block_types(s, "down_block_types", c->levels, "CrossAttnDownBlock2D", "DownBlock2D",
                       kDefaultDown, c->down_attn));
    AP_TRY(block_types(s, "up_block_types", c->levels, "CrossAttnUpBlock2D", "UpBlock2D",
                       kDefaultUp, c->up_attn));
    const ap_json *cad = get(s, "cross_attention_dim");
    if (cad && !is_int(cad))
        return bad(s, "cross_attention_dim", cad, "one integer (a per-block list is not supported)");
    AP_TRY(get_int(s, "cross_attention_dim", 1280, &c->cross_dim));
    AP_TRY(get_int(s, "norm_num_groups", 32, &c->groups));
    if (ap_json_get(s->j, "norm_num_groups") && !get(s, "norm_num_groups"))
        return bad(s, "norm_num_groups", NULL, "a positive integer (null: no GroupNorm is not supported)");
    double eps = 0, shift = 0;
    AP_TRY(get_num(s, "norm_eps", 1e-5, &eps));
    AP_TRY(get_num(s, "freq_shift", 0, &shift));
    if (!(eps > 0 && eps < 1))
        return ap_fail("%s: key norm_eps: expected a number in (0, 1) (1e-5 in SD v1.5), found %g",
                       s->path, eps);
    if (!isfinite(shift) || fabs(shift) > 1e6)
        return ap_fail("%s: key freq_shift: expected a finite number (0 or 1), found %g", s->path,
                       shift);
    c->norm_eps = (float)eps, c->freq_shift = (float)shift;
    AP_TRY(get_bool(s, "flip_sin_to_cos", 1, &c->flip_sin_to_cos));
    AP_TRY(get_bool(s, "use_linear_projection", 0, &c->linear_proj));
    AP_TRY(get_int(s, "time_embedding_dim", 4 * c->block_out[0], &c->time_embed_dim));
    /* StableDiffusionPipeline's default image size is sample_size * the VAE
     * factor (SD v1.5 64 -> 512, SD 2.1 96 -> 768); 64 when absent */
    AP_TRY(get_int(s, "sample_size", 64, &c->sample_size));
    for (int i = 0; i < c->levels; i++) {
        if (c->block_out[i] % c->groups)
            return ap_fail("%s: key norm_num_groups: %d does not divide block_out_channels[%d] "
                           "= %d", s->path, c->groups, i, c->block_out[i]);
        if (c->block_out[i] % c->heads[i])
            return ap_fail("%s: key attention_head_dim (the number of heads in 0.17.1): %d does "
                           "not divide block_out_channels[%d] = %d", s->path, c->heads[i], i,
                           c->block_out[i]);
    }
    /* everything else must keep SD's computation */
    AP_TRY(want_str(s, "act_fn", "silu", 1));
    const ap_json *mb = ap_json_get(s->j, "mid_block_type"); /* null: no mid block */
    if (mb && !(mb->type == AP_JSON_STR && !strcmp(mb->str, "UNetMidBlock2DCrossAttn")))
        return bad(s, "mid_block_type", get(s, "mid_block_type"), "\"UNetMidBlock2DCrossAttn\"");
    AP_TRY(want_str(s, "resnet_time_scale_shift", "default", 1));
    AP_TRY(want_str(s, "time_embedding_type", "positional", 1));
    AP_TRY(want_str(s, "attention_type", "default", 1));
    AP_TRY(want_false(s, "center_input_sample"));
    AP_TRY(want_false(s, "dual_cross_attention"));
    AP_TRY(want_false(s, "resnet_skip_time_act"));
    AP_TRY(want_false(s, "class_embeddings_concat"));
    AP_TRY(want_false(s, "mid_block_only_cross_attention"));
    const ap_json *oca = get(s, "only_cross_attention");
    if (oca && !(oca->type == AP_JSON_BOOL && !oca->boolean))
        return bad(s, "only_cross_attention", oca, "false");
    AP_TRY(want_num(s, "downsample_padding", 1));
    AP_TRY(want_num(s, "mid_block_scale_factor", 1));
    AP_TRY(want_num(s, "resnet_out_scale_factor", 1));
    AP_TRY(want_num(s, "conv_in_kernel", 3));
    AP_TRY(want_num(s, "conv_out_kernel", 3));
    AP_TRY(want_num(s, "transformer_layers_per_block", 1));
    AP_TRY(want_num(s, "dropout", 0));
    static const char *const nulls[] = {
        "encoder_hid_dim", "encoder_hid_dim_type", "class_embed_type", "addition_embed_type",
        "num_class_embeds", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
        "projection_class_embeddings_input_dim", "cross_attention_norm", "num_attention_heads",
        "addition_time_embed_dim", "reverse_transformer_layers_per_block", NULL};
    for (int i = 0; nulls[i]; i++) AP_TRY(want_null(s, nulls[i]));
    /* upcast_attention only changes fp16 runs: in fp32 it is the same computation. */
    int upcast;
    AP_TRY(get_bool(s, "upcast_attention", 0, &upcast));
    return AP_OK;
}

int ap_unet_config_from_json(ap_unet_config *c, const ap_json *j, const char *what) {
    cfg_src s = {j, what};
    return parse(c, &s);
}

int ap_unet_config_read(ap_unet_config *c, const char *path) {
    ap_json *j = NULL;
    AP_TRY(ap_json_parse_file(&j, path));
    cfg_src s = {j, path};
    int rc = parse(c, &s);
    ap_json_free(j);
    return rc;
}
