/* compvis.c: CompVis (LDM) single-file key names -> diffusers names, as one
 * table of prefix/pattern rules (see compvis.h). The conversions are those
 * of diffusers 0.17.1 convert_from_ckpt.py (convert_ldm_unet_checkpoint,
 * convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint); the test checks
 * every SD v1.5 tensor name against names that diffusers' own conversion
 * maps back (tools/fixtures/compvis.py).
 */
#include "compvis.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

/* How the numbers a pattern captured ('#') become the numbers of the
 * diffusers name ({0}, {1}); lpb = unet_layers_per_block, nb = vae_blocks. */
enum {
    IDX_NONE,     /* no numbers */
    IDX_COPY,     /* {0} = #0, {1} = #1 */
    IDX_UNET_IN,  /* input_blocks.i (i >= 1): {0} = (i-1) / (lpb+1), {1} = (i-1) % (lpb+1) */
    IDX_UNET_OUT, /* output_blocks.i: {0} = i / (lpb+1), {1} = i % (lpb+1) */
    IDX_VAE_UP,   /* decoder.up.k (k < nb): {0} = nb-1-k (reversed order), {1} = #1 */
    IDX_MINUS1,   /* mid.block_j (j >= 1): {0} = j-1 */
};

/* Renames of the part after a rule's prefix (first match; none: kept). */
typedef struct {
    const char *from, *to;
    int flags; /* AP_WSRC_SQUEEZE for 1x1-conv weights that diffusers holds as Linear */
} inner_rule;

static const inner_rule unet_resnet[] = {
    {"in_layers.0.", "norm1.", 0},          {"in_layers.2.", "conv1.", 0},
    {"out_layers.0.", "norm2.", 0},         {"out_layers.3.", "conv2.", 0},
    {"emb_layers.1.", "time_emb_proj.", 0}, {"skip_connection.", "conv_shortcut.", 0},
    {NULL, NULL, 0},
};

static const inner_rule vae_resnet[] = {
    {"nin_shortcut.", "conv_shortcut.", 0},
    {NULL, NULL, 0},
};

static const inner_rule vae_attn[] = {
    {"norm.", "group_norm.", 0},
    {"q.", "to_q.", AP_WSRC_SQUEEZE},
    {"k.", "to_k.", AP_WSRC_SQUEEZE},
    {"v.", "to_v.", AP_WSRC_SQUEEZE},
    {"proj_out.", "to_out.0.", AP_WSRC_SQUEEZE},
    {NULL, NULL, 0},
};

typedef struct {
    const char *from; /* key prefix; '#' matches a decimal number */
    const char *to;   /* name prefix; {0}, {1}: numbers mapped by idx */
    int idx;
    const inner_rule *inner;
} rule;

#define U "model.diffusion_model."
#define V "first_stage_model."

/* THE table: first matching rule wins, so specific rules come first. */
static const rule rules[] = {
    /* UNet */
    {U "time_embed.0.", "unet.time_embedding.linear_1.", IDX_NONE, NULL},
    {U "time_embed.2.", "unet.time_embedding.linear_2.", IDX_NONE, NULL},
    {U "input_blocks.0.0.", "unet.conv_in.", IDX_NONE, NULL},
    {U "input_blocks.#.0.op.", "unet.down_blocks.{0}.downsamplers.0.conv.", IDX_UNET_IN, NULL},
    {U "input_blocks.#.0.", "unet.down_blocks.{0}.resnets.{1}.", IDX_UNET_IN, unet_resnet},
    {U "input_blocks.#.1.", "unet.down_blocks.{0}.attentions.{1}.", IDX_UNET_IN, NULL},
    {U "middle_block.0.", "unet.mid_block.resnets.0.", IDX_NONE, unet_resnet},
    {U "middle_block.1.", "unet.mid_block.attentions.0.", IDX_NONE, NULL},
    {U "middle_block.2.", "unet.mid_block.resnets.1.", IDX_NONE, unet_resnet},
    {U "output_blocks.#.0.", "unet.up_blocks.{0}.resnets.{1}.", IDX_UNET_OUT, unet_resnet},
    /* the upsampler follows the resnet (.1) or the resnet and attention (.2) */
    {U "output_blocks.#.1.conv.", "unet.up_blocks.{0}.upsamplers.0.conv.", IDX_UNET_OUT, NULL},
    {U "output_blocks.#.2.conv.", "unet.up_blocks.{0}.upsamplers.0.conv.", IDX_UNET_OUT, NULL},
    {U "output_blocks.#.1.", "unet.up_blocks.{0}.attentions.{1}.", IDX_UNET_OUT, NULL},
    {U "out.0.", "unet.conv_norm_out.", IDX_NONE, NULL},
    {U "out.2.", "unet.conv_out.", IDX_NONE, NULL},
    {U, "unet.", IDX_NONE, NULL}, /* unknown: reported unused under unet. */
    /* VAE (conv_in, conv_out, quant_conv, post_quant_conv keep their names) */
    {V "encoder.norm_out.", "vae.encoder.conv_norm_out.", IDX_NONE, NULL},
    {V "decoder.norm_out.", "vae.decoder.conv_norm_out.", IDX_NONE, NULL},
    {V "encoder.down.#.block.#.", "vae.encoder.down_blocks.{0}.resnets.{1}.", IDX_COPY, vae_resnet},
    {V "encoder.down.#.downsample.conv.", "vae.encoder.down_blocks.{0}.downsamplers.0.conv.",
     IDX_COPY, NULL},
    {V "encoder.mid.block_#.", "vae.encoder.mid_block.resnets.{0}.", IDX_MINUS1, vae_resnet},
    {V "encoder.mid.attn_1.", "vae.encoder.mid_block.attentions.0.", IDX_NONE, vae_attn},
    {V "decoder.up.#.block.#.", "vae.decoder.up_blocks.{0}.resnets.{1}.", IDX_VAE_UP, vae_resnet},
    {V "decoder.up.#.upsample.conv.", "vae.decoder.up_blocks.{0}.upsamplers.0.conv.", IDX_VAE_UP,
     NULL},
    {V "decoder.mid.block_#.", "vae.decoder.mid_block.resnets.{0}.", IDX_MINUS1, vae_resnet},
    {V "decoder.mid.attn_1.", "vae.decoder.mid_block.attentions.0.", IDX_NONE, vae_attn},
    {V, "vae.", IDX_NONE, NULL},
    /* text encoder: the rest is already the transformers name (text_model.*) */
    {"cond_stage_model.transformer.", "text_encoder.", IDX_NONE, NULL},
};

void ap_compvis_layout_sd15(ap_compvis_layout *l) {
    l->unet_layers_per_block = 2;
    l->vae_blocks = 4;
}

/* Length of the key prefix pat matches ('#' = 1-9 digits), 0 if none. */
static size_t match(const char *pat, const char *key, int nums[2]) {
    const char *k = key;
    int n = 0;
    for (; *pat; pat++) {
        if (*pat != '#') {
            if (*k++ != *pat) return 0;
            continue;
        }
        int v = 0, d = 0;
        while (*k >= '0' && *k <= '9' && d < 9) v = v * 10 + (*k++ - '0'), d++;
        if (!d || (*k >= '0' && *k <= '9')) return 0;
        if (n < 2) nums[n++] = v;
    }
    return (size_t)(k - key);
}

/* Map the captured numbers; 0 when they do not fit the layout. */
static int map_numbers(int idx, const ap_compvis_layout *l, const int in[2], int out[2]) {
    int per = l->unet_layers_per_block + 1;
    switch (idx) {
    case IDX_COPY: out[0] = in[0], out[1] = in[1]; return 1;
    case IDX_UNET_IN:
        if (in[0] < 1) return 0;
        out[0] = (in[0] - 1) / per, out[1] = (in[0] - 1) % per;
        return 1;
    case IDX_UNET_OUT: out[0] = in[0] / per, out[1] = in[0] % per; return 1;
    case IDX_VAE_UP:
        if (in[0] >= l->vae_blocks) return 0;
        out[0] = l->vae_blocks - 1 - in[0], out[1] = in[1];
        return 1;
    case IDX_MINUS1:
        if (in[0] < 1) return 0;
        out[0] = in[0] - 1;
        return 1;
    default: return 1;
    }
}

/* Write to with {0}/{1} replaced into out; returns the length. */
static size_t expand(char *out, size_t cap, const char *to, const int nums[2]) {
    size_t n = 0;
    for (const char *t = to; *t; t++) {
        char buf[16];
        const char *piece = buf;
        if (t[0] == '{' && (t[1] == '0' || t[1] == '1') && t[2] == '}') {
            snprintf(buf, sizeof buf, "%d", nums[t[1] - '0']);
            t += 2;
        } else {
            buf[0] = *t, buf[1] = '\0';
        }
        for (; *piece; piece++, n++)
            if (n + 1 < cap) out[n] = *piece;
    }
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

int ap_compvis_rename(void *ctx, const char *key, char *name, size_t cap) {
    const ap_compvis_layout *l = ctx;
    const char *k = key;
    int flags = 0;
    if (strncmp(k, "state_dict.", 11) == 0) k += 11, flags = AP_WSRC_RENAMED;
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
        int in[2] = {0, 0}, out[2] = {0, 0};
        size_t len = match(rules[r].from, k, in);
        if (!len || !map_numbers(rules[r].idx, l, in, out)) continue;
        const char *rest = k + len;
        size_t n = expand(name, cap, rules[r].to, out);
        const inner_rule *in_r = rules[r].inner;
        for (; in_r && in_r->from; in_r++) {
            size_t fl = strlen(in_r->from);
            if (strncmp(rest, in_r->from, fl) == 0) {
                n += (size_t)snprintf(n < cap ? name + n : NULL, n < cap ? cap - n : 0, "%s",
                                      in_r->to);
                rest += fl;
                flags |= in_r->flags;
                break;
            }
        }
        n += (size_t)snprintf(n < cap ? name + n : NULL, n < cap ? cap - n : 0, "%s", rest);
        if (n >= cap) return ap_fail("compvis: the name for %s is too long", key);
        return flags | AP_WSRC_RENAMED;
    }
    if (flags) snprintf(name, cap, "%s", k); /* only "state_dict." dropped */
    return flags;
}

int ap_compvis_layout_from(ap_compvis_layout *l, const ap_wsrc *w) {
    ap_compvis_layout_sd15(l);
    int max_up = -1, max_out = -1, n_down = 0;
    for (int i = 0; i < ap_wsrc_count(w); i++) {
        const char *k = ap_wsrc_key(w, i);
        if (strncmp(k, "state_dict.", 11) == 0) k += 11;
        int nums[2] = {0, 0};
        size_t len;
        if (match(V "decoder.up.#.", k, nums) && nums[0] > max_up) max_up = nums[0];
        if (match(U "output_blocks.#.", k, nums) && nums[0] > max_out) max_out = nums[0];
        if ((len = match(U "input_blocks.#.0.op.weight", k, nums)) && !k[len]) n_down++;
    }
    if (max_up >= 0) l->vae_blocks = max_up + 1;
    if (max_out >= 0) {
        int n_out = max_out + 1;
        if (n_out % (n_down + 1) || n_out / (n_down + 1) < 2)
            return ap_fail("%s: cannot read the UNet layout: %d output blocks do not split into "
                           "%d up blocks (one more than the %d downsamplers)",
                           ap_wsrc_files(w), n_out, n_down + 1, n_down);
        l->unet_layers_per_block = n_out / (n_down + 1) - 1;
    }
    return AP_OK;
}

int ap_compvis_open(ap_wsrc **w, const char *path, ap_compvis_layout *layout) {
    AP_TRY(ap_wsrc_open(w, path));
    if (ap_compvis_layout_from(layout, *w) || ap_wsrc_set_rename(*w, ap_compvis_rename, layout)) {
        ap_wsrc_close(*w);
        *w = NULL;
        return AP_ERR;
    }
    return AP_OK;
}
