/* vae.c: AutoencoderKL decoder: config, parameter declaration and loading,
 * memory plan, forward and backward as a flat list of layer calls (the
 * backward replays it in reverse). Weights are frozen: no weight gradients.
 */
#include "vae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/tape.h"
#include "core/path.h"
#include "io/json.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/resize.h"
#include "ops/rows.h"

#define VAE_EPS 1e-6f /* every decoder GroupNorm (docs/vae.md §1) */

/* ---- config ------------------------------------------------------------- */

void ap_vae_config_sd15(ap_vae_config *c) {
    memset(c, 0, sizeof *c);
    c->latent_channels = 4;
    c->out_channels = 3;
    c->n_blocks = 4;
    c->block_out[0] = 128, c->block_out[1] = 256, c->block_out[2] = 512, c->block_out[3] = 512;
    c->layers_per_block = 2;
    c->groups = 32;
    c->scaling_factor = 0.18215f;
}

/* An integer member in [lo, hi]; the error names the file and the key. */
static int get_int(const ap_json *j, const char *key, const char *path, int lo, int hi, int *v) {
    double d;
    AP_TRY(ap_json_get_num(j, key, path, &d));
    if (d != floor(d) || d < lo || d > hi)
        return ap_fail("%s: key \"%s\": expected an integer in [%d, %d], found %g", path, key, lo,
                       hi, d);
    *v = (int)d;
    return AP_OK;
}

static const ap_json *get_array(const ap_json *j, const char *key, const char *path,
                                size_t max_len) {
    const ap_json *a = ap_json_get(j, key);
    if (!a) return ap_fail("%s: key \"%s\": expected an array, found nothing", path, key), NULL;
    if (a->type != AP_JSON_ARR)
        return ap_fail("%s: key \"%s\": expected an array, found %s", path, key,
                       ap_json_type_name(a->type)), NULL;
    if (a->len < 1 || a->len > max_len)
        return ap_fail("%s: key \"%s\": expected 1 to %zu entries, found %zu", path, key, max_len,
                       a->len), NULL;
    return a;
}

/* An optional string member that, when present, must equal want. */
static int expect_str(const ap_json *j, const char *key, const char *path, const char *want) {
    const ap_json *s = ap_json_get(j, key);
    if (!s) return AP_OK;
    if (s->type != AP_JSON_STR || strcmp(s->str, want) != 0)
        return ap_fail("%s: key \"%s\": unsupported value %s%s%s (only \"%s\" is implemented)",
                       path, key, s->type == AP_JSON_STR ? "\"" : "",
                       s->type == AP_JSON_STR ? s->str : ap_json_type_name(s->type),
                       s->type == AP_JSON_STR ? "\"" : "", want);
    return AP_OK;
}

/* An optional boolean member that, when present, must be true. */
static int expect_true(const ap_json *j, const char *key, const char *path) {
    const ap_json *b = ap_json_get(j, key);
    if (b && !(b->type == AP_JSON_BOOL && b->boolean))
        return ap_fail("%s: key \"%s\": unsupported value (only true is implemented)", path, key);
    return AP_OK;
}

static int parse_config(ap_vae_config *c, const ap_json *j, const char *path) {
    memset(c, 0, sizeof *c);
    if (j->type != AP_JSON_OBJ) return ap_fail("%s: expected a JSON object", path);
    AP_TRY(expect_str(j, "_class_name", path, "AutoencoderKL"));
    AP_TRY(expect_str(j, "act_fn", path, "silu"));
    AP_TRY(expect_true(j, "mid_block_add_attention", path)); /* newer diffusers */
    AP_TRY(expect_true(j, "use_post_quant_conv", path));     /* newer diffusers */
    const ap_json *boc = get_array(j, "block_out_channels", path, AP_VAE_MAX_BLOCKS);
    if (!boc) return AP_ERR;
    c->n_blocks = (int)boc->len;
    for (int i = 0; i < c->n_blocks; i++) {
        const ap_json *e = &boc->items[i];
        if (e->type != AP_JSON_NUM || e->num != floor(e->num) || e->num < 1 || e->num > 65536)
            return ap_fail("%s: key \"block_out_channels\": entry %d: expected a positive "
                           "integer", path, i);
        c->block_out[i] = (int)e->num;
    }
    const ap_json *ubt = get_array(j, "up_block_types", path, AP_VAE_MAX_BLOCKS);
    if (!ubt) return AP_ERR;
    if ((int)ubt->len != c->n_blocks)
        return ap_fail("%s: key \"up_block_types\": expected %d entries (one per "
                       "block_out_channels), found %zu", path, c->n_blocks, ubt->len);
    for (size_t i = 0; i < ubt->len; i++)
        if (ubt->items[i].type != AP_JSON_STR || strcmp(ubt->items[i].str, "UpDecoderBlock2D"))
            return ap_fail("%s: key \"up_block_types\": entry %zu: unsupported block %s "
                           "(only \"UpDecoderBlock2D\" is implemented)", path, i,
                           ubt->items[i].type == AP_JSON_STR ? ubt->items[i].str : "(not a string)");
    AP_TRY(get_int(j, "layers_per_block", path, 1, AP_VAE_MAX_LAYERS - 1, &c->layers_per_block));
    AP_TRY(get_int(j, "latent_channels", path, 1, 4096, &c->latent_channels));
    AP_TRY(get_int(j, "out_channels", path, 1, 4096, &c->out_channels));
    AP_TRY(get_int(j, "norm_num_groups", path, 1, 65536, &c->groups));
    for (int i = 0; i < c->n_blocks; i++)
        if (c->block_out[i] % c->groups)
            return ap_fail("%s: key \"norm_num_groups\": %d does not divide block_out_channels "
                           "entry %d (%d)", path, c->groups, i, c->block_out[i]);
    c->scaling_factor = 0.18215f; /* diffusers' default when the key is absent */
    if (ap_json_get(j, "scaling_factor")) {
        double sf;
        AP_TRY(ap_json_get_num(j, "scaling_factor", path, &sf));
        if (!(sf > 0) || !isfinite(sf))
            return ap_fail("%s: key \"scaling_factor\": expected a positive number, found %g",
                           path, sf);
        c->scaling_factor = (float)sf;
    }
    return AP_OK;
}

int ap_vae_config_load(ap_vae_config *c, const char *path) {
    ap_json *j = NULL;
    AP_TRY(ap_json_parse_file(&j, path));
    int rc = parse_config(c, j, path);
    ap_json_free(j);
    return rc;
}

/* ---- parameters --------------------------------------------------------- */

static int add(ap_params *p, ap_tensor *t, int ndim, const int64_t *shape, const char *name,
               const char *sub) {
    return ap_params_add(p, t, ndim, shape, "%s%s", name, sub) >= 0 ? AP_OK : AP_ERR;
}

int ap_vae_declare(ap_vae *v, const ap_vae_config *c) {
    memset(v, 0, sizeof *v);
    v->cfg = *c;
    ap_params *p = &v->params;
    ap_params_init(p);
    int L = c->latent_channels, nb = c->n_blocks, G = c->groups;
    int Cm = c->block_out[nb - 1], C0 = c->block_out[0];
    AP_TRY(add(p, &v->in_w, 4, (int64_t[]){Cm, L, 3, 3}, "decoder.conv_in", ".weight"));
    AP_TRY(add(p, &v->in_b, 1, (int64_t[]){Cm}, "decoder.conv_in", ".bias"));
    /* up blocks run over reversed(block_out_channels) */
    int prev = Cm;
    for (int i = 0; i < nb; i++) {
        ap_vae_up_block *u = &v->up[i];
        u->cin = prev;
        u->cout = c->block_out[nb - 1 - i];
        u->n_res = c->layers_per_block + 1;
        char pre[96];
        for (int r = 0; r < u->n_res; r++) {
            snprintf(pre, sizeof pre, "decoder.up_blocks.%d.resnets.%d", i, r);
            AP_TRY(ap_resnet_declare(&u->res[r], p, pre, r ? u->cout : u->cin, u->cout, 0, G,
                                     VAE_EPS));
        }
        if (i < nb - 1) {
            snprintf(pre, sizeof pre, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            AP_TRY(add(p, &u->up_w, 4, (int64_t[]){u->cout, u->cout, 3, 3}, pre, ".weight"));
            AP_TRY(add(p, &u->up_b, 1, (int64_t[]){u->cout}, pre, ".bias"));
        }
        prev = u->cout;
    }
    const char *a = "decoder.mid_block.attentions.0";
    char k[96];
    AP_TRY(add(p, &v->attn_norm_w, 1, (int64_t[]){Cm}, a, ".group_norm.weight"));
    AP_TRY(add(p, &v->attn_norm_b, 1, (int64_t[]){Cm}, a, ".group_norm.bias"));
    ap_proj *proj[4] = {&v->attn.q, &v->attn.k, &v->attn.v, &v->attn.o};
    const char *pname[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, "%s.%s", a, pname[i]);
        AP_TRY(add(p, &proj[i]->w, 2, (int64_t[]){Cm, Cm}, k, ".weight"));
        AP_TRY(add(p, &proj[i]->b, 1, (int64_t[]){Cm}, k, ".bias"));
    }
    v->attn.heads = 1; /* dim_head = Cm, scale as Python's Cm ** -0.5 */
    v->attn.scale = (float)pow((double)Cm, -0.5);
    v->attn.causal = 0;
    for (int r = 0; r < 2; r++) {
        snprintf(k, sizeof k, "decoder.mid_block.resnets.%d", r);
        AP_TRY(ap_resnet_declare(&v->mid_res[r], p, k, Cm, Cm, 0, G, VAE_EPS));
    }
    AP_TRY(add(p, &v->norm_out_w, 1, (int64_t[]){C0}, "decoder.conv_norm_out", ".weight"));
    AP_TRY(add(p, &v->norm_out_b, 1, (int64_t[]){C0}, "decoder.conv_norm_out", ".bias"));
    AP_TRY(add(p, &v->out_w, 4, (int64_t[]){c->out_channels, C0, 3, 3}, "decoder.conv_out",
               ".weight"));
    AP_TRY(add(p, &v->out_b, 1, (int64_t[]){c->out_channels}, "decoder.conv_out", ".bias"));
    AP_TRY(add(p, &v->pq_w, 4, (int64_t[]){L, L, 1, 1}, "post_quant_conv", ".weight"));
    AP_TRY(add(p, &v->pq_b, 1, (int64_t[]){L}, "post_quant_conv", ".bias"));
    return AP_OK;
}

/* Mixed precision (ap_params_store_frozen): the mid-block attention's
 * projections stay f32 (nn/proj.c's raw f32 GEMM); every conv is stored in
 * the frozen dtype. */
void ap_vae_store_frozen(ap_vae *v) {
    static const char *const keep_f32[] = {NULL}; /* every weight matrix: frozen */
    ap_params_store_frozen(&v->params, keep_f32);
}

int ap_vae_alloc(ap_vae *v) {
    ap_vae_store_frozen(v);
    return ap_params_alloc(&v->params, "VAE decoder weights");
}

/* The one table of name conversions for diffusers-format VAE files. */
static const struct {
    const char *from, *to;
} legacy_attn[] = {
    {"mid_block.attentions.0.query.", "mid_block.attentions.0.to_q."},
    {"mid_block.attentions.0.key.", "mid_block.attentions.0.to_k."},
    {"mid_block.attentions.0.value.", "mid_block.attentions.0.to_v."},
    {"mid_block.attentions.0.proj_attn.", "mid_block.attentions.0.to_out.0."},
};

int ap_vae_legacy_rename(void *ctx, const char *key, char *name, size_t cap) {
    (void)ctx;
    for (size_t i = 0; i < sizeof legacy_attn / sizeof *legacy_attn; i++) {
        const char *at = strstr(key, legacy_attn[i].from);
        if (!at) continue;
        snprintf(name, cap, "%.*s%s%s", (int)(at - key), key, legacy_attn[i].to,
                 at + strlen(legacy_attn[i].from));
        /* a 1x1-conv form (C, C, 1, 1) of these weights loads as (C, C) */
        return AP_WSRC_RENAMED | AP_WSRC_SQUEEZE;
    }
    return 0;
}

int ap_vae_fill(ap_vae *v, const ap_wsrc *w, const char *prefix) {
    static const char *const unused[] = {"encoder.*", "quant_conv.*", NULL};
    if (ap_params_fill(&v->params, w, prefix, unused) != 0)
        return ap_err_prefix("VAE decoder: ");
    return AP_OK;
}

int ap_vae_load(ap_vae *v, const char *dir) {
    char path[4096];
    ap_vae_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    AP_TRY(ap_vae_config_load(&c, path));
    const char *files[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"};
    int f = 0;
    while (f < 2 && (snprintf(path, sizeof path, "%s/%s", dir, files[f]), !ap_is_file(path))) f++;
    if (f == 2)
        return ap_fail("%s: expected %s or %s, found neither", dir, files[0], files[1]);
    AP_TRY(ap_vae_declare(v, &c));
    ap_wsrc *w = NULL;
    int rc = ap_vae_alloc(v);
    if (!rc) rc = ap_wsrc_open(&w, path);
    if (!rc) rc = ap_wsrc_set_rename(w, ap_vae_legacy_rename, NULL);
    if (!rc) rc = ap_vae_fill(v, w, "");
    ap_wsrc_close(w);
    if (rc) ap_vae_free(v);
    return rc;
}

void ap_vae_free(ap_vae *v) {
    ap_params_free(&v->params);
    memset(v, 0, sizeof *v);
}

/* ---- memory plan -------------------------------------------------------- */

static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* Floats of the largest activation of a pass over (B, L, h, w): the size of
 * each ping-pong buffer of inference and of backward's gradient buffers. */
static int64_t act_floats(const ap_vae *v, int64_t B, int64_t h, int64_t w) {
    const ap_vae_config *c = &v->cfg;
    int64_t H = h, W = w;
    int64_t n = B * imax(c->latent_channels, c->block_out[c->n_blocks - 1]) * h * w;
    for (int r = 0; r < 2; r++)
        n = imax(n, B * imax(v->mid_res[r].cin, v->mid_res[r].cout) * h * w);
    for (int i = 0; i < c->n_blocks; i++) {
        const ap_vae_up_block *u = &v->up[i];
        for (int r = 0; r < u->n_res; r++) n = imax(n, B * imax(u->res[r].cin, u->res[r].cout) * H * W);
        if (i < c->n_blocks - 1) H *= 2, W *= 2, n = imax(n, B * u->cout * H * W);
    }
    return imax(n, B * imax(c->block_out[0], c->out_channels) * H * W);
}

/* The dry run ap_vae_plan_measure makes: an inference forward, a forward
 * with tape and its backward, on measuring arenas. */
typedef struct {
    const ap_vae *v;
    int64_t B, h, w;
} vae_case;

static int vae_step(ap_ctx *dry, ap_arena *a, void *user) {
    const vae_case *k = user;
    const ap_vae *v = k->v;
    const ap_vae_config *c = &v->cfg;
    int64_t s = (int64_t)1 << (c->n_blocks - 1);
    int64_t lshape[4] = {k->B, c->latent_channels, k->h, k->w};
    int64_t ishape[4] = {k->B, c->out_channels, k->h * s, k->w * s};
    ap_tensor lat = ap_dry_input(&a[2], 4, lshape), dlat = ap_dry_input(&a[2], 4, lshape);
    ap_tensor img = ap_dry_input(&a[2], 4, ishape), dimg = ap_dry_input(&a[2], 4, ishape);
    ap_tape tape = ap_tape_on(&a[0]);
    ap_vae_saved sv;
    dry->tmp = &a[1];
    int rc = lat.data && dlat.data && img.data && dimg.data ? AP_OK : AP_ERR;
    if (!rc) rc = ap_vae_forward(dry, NULL, v, &sv, &img, &lat);
    if (!rc) rc = ap_vae_forward(dry, &tape, v, &sv, &img, &lat);
    if (!rc) rc = ap_vae_backward(dry, &tape, v, &sv, &dlat, &dimg);
    return rc;
}

int ap_vae_plan_measure(ap_ctx *ctx, const ap_vae *v, int64_t B, int64_t h, int64_t w,
                        ap_plan *p) {
    if (B < 1 || h < 1 || w < 1)
        return ap_fail("vae_plan: expected a positive batch and latent size, found B %lld, "
                       "%lld x %lld", (long long)B, (long long)h, (long long)w);
    vae_case k = {v, B, h, w};
    static const char *const what[3] = {"VAE tape", "VAE decoder temporaries", "VAE inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, vae_step, &k, peaks, &p->scratch_bytes))
        return ap_err_prefix("measuring the VAE decoder's workspaces (B %lld, %lld x %lld, %s): ",
                             (long long)B, (long long)h, (long long)w,
                             v->full_tape ? "full tape" : "checkpointed");
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}

/* ---- forward ------------------------------------------------------------ */

/* Layer outputs: on the tape when training; in inference alternately in two
 * ping-pong buffers of ctx->tmp (a layer's input is in the other one). */
typedef struct {
    ap_tape *tape;   /* NULL: inference */
    ap_arena *tmp;   /* ctx->tmp */
    ap_vae_saved *s; /* the forward's descriptors */
    float *pp[2];
    int cur;
} acts;

static float *act(acts *a, int64_t n, const char *what) {
    if (a->tape) return ap_arena_floats(a->tape->mem, (size_t)n, what);
    a->cur ^= 1;
    return a->pp[a->cur];
}

static int attention_forward(ap_ctx *ctx, const ap_vae *v, acts *a, ap_tensor *out,
                             const ap_tensor *x) {
    ap_vae_saved *s = a->s;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], N = H * W;
    int G = v->cfg.groups;
    ap_arena *keep = a->tape ? a->tape->mem : a->tmp;
    size_t mark = a->tmp->used;
    float *st = ap_arena_floats(keep, (size_t)(2 * B * G), "VAE attention GroupNorm statistics"),
          *tok = ap_arena_floats(keep, (size_t)(B * N * C), "VAE attention tokens"),
          *t = ap_arena_floats(a->tmp, (size_t)(B * C * N), "VAE attention GroupNorm output"),
          *o = ap_arena_floats(a->tmp, (size_t)(B * N * C), "VAE attention output tokens");
    if (!st || !tok || !t || !o) return AP_ERR;
    s->attn_x = *x;
    s->attn_mean = ap_t2(st, B, G), s->attn_rstd = ap_t2(st + B * G, B, G);
    s->attn_tok = ap_t3(tok, B, N, C);
    ap_tensor tt = ap_t4(t, B, C, H, W), to = ap_t3(o, B, N, C);
    AP_TRY(ap_group_norm_forward(ctx, &tt, &s->attn_mean, &s->attn_rstd, x, &v->attn_norm_w,
                                 &v->attn_norm_b, G, VAE_EPS));
    AP_TRY(ap_nchw_to_nlc_forward(ctx, &s->attn_tok, &tt));
    AP_TRY(ap_mha_forward(ctx, a->tape, &v->attn, &s->attn, &to, &s->attn_tok, NULL));
    *out = ap_t4(act(a, B * C * N, "VAE attention block output"), B, C, H, W);
    if (!out->data) return AP_ERR;
    AP_TRY(ap_nlc_to_nchw_forward(ctx, out, &to));
    AP_TRY(ap_axpy(ctx, out, 1.0f, x)); /* residual */
    a->tmp->used = mark;
    return AP_OK;
}

/* Segment 0: z = latent / scaling_factor; p = post_quant_conv(z); x = conv_in(p). */
static int seg_in(ap_ctx *ctx, const ap_vae *v, acts *a, ap_tensor *x, const ap_tensor *latent) {
    const ap_vae_config *c = &v->cfg;
    int64_t B = latent->shape[0], h = latent->shape[2], w = latent->shape[3];
    int64_t L = c->latent_channels, Cm = c->block_out[c->n_blocks - 1];
    size_t mark = a->tmp->used;
    ap_tensor z = ap_t4(a->tape ? ap_arena_floats(a->tmp, (size_t)(B * L * h * w), "VAE z")
                                : act(a, B * L * h * w, "VAE z"), B, L, h, w);
    ap_tensor p = ap_t4(a->tape ? ap_arena_floats(a->tmp, (size_t)(B * L * h * w), "VAE p")
                                : act(a, B * L * h * w, "VAE p"), B, L, h, w);
    if (!z.data || !p.data) return AP_ERR;
    AP_TRY(ap_divide_forward(ctx, &z, latent, c->scaling_factor));
    AP_TRY(ap_conv2d_forward(ctx, &p, &z, &v->pq_w, &v->pq_b, 1, 0));
    *x = ap_t4(act(a, B * Cm * h * w, "VAE conv_in output"), B, Cm, h, w);
    if (!x->data) return AP_ERR;
    AP_TRY(ap_conv2d_forward(ctx, x, &p, &v->in_w, &v->in_b, 1, 1));
    a->tmp->used = mark;
    return AP_OK;
}

/* Segment 1: the mid block (resnet, attention, resnet). */
static int seg_mid(ap_ctx *ctx, const ap_vae *v, acts *a, ap_tensor *out, const ap_tensor *x) {
    ap_vae_saved *s = a->s;
    int64_t B = x->shape[0], Cm = x->shape[1], h = x->shape[2], w = x->shape[3];
    ap_tensor y = ap_t4(act(a, B * Cm * h * w, "VAE mid resnet 0 output"), B, Cm, h, w), t;
    if (!y.data) return AP_ERR;
    AP_TRY(ap_resnet_forward(ctx, a->tape, &v->mid_res[0], &s->mid0, &y, x, NULL));
    AP_TRY(attention_forward(ctx, v, a, &t, &y));
    *out = ap_t4(act(a, B * Cm * h * w, "VAE mid resnet 1 output"), B, Cm, h, w);
    if (!out->data) return AP_ERR;
    return ap_resnet_forward(ctx, a->tape, &v->mid_res[1], &s->mid1, out, &t, NULL);
}

/* Segment 2 + i: up block i (resnets, then nearest 2x + conv unless last). */
static int seg_up(ap_ctx *ctx, const ap_vae *v, acts *a, int i, ap_tensor *out, const ap_tensor *in) {
    ap_vae_saved *s = a->s;
    const ap_vae_up_block *u = &v->up[i];
    int64_t B = in->shape[0], H = in->shape[2], W = in->shape[3];
    ap_tensor x = *in, y;
    for (int r = 0; r < u->n_res; r++) {
        y = ap_t4(act(a, B * u->cout * H * W, "VAE up-block resnet output"), B, u->cout, H, W);
        if (!y.data) return AP_ERR;
        AP_TRY(ap_resnet_forward(ctx, a->tape, &u->res[r], &s->res[i][r], &y, &x, NULL));
        x = y;
    }
    if (i < v->cfg.n_blocks - 1) { /* Upsample2D: nearest 2x, conv 3x3 */
        size_t mark = a->tmp->used;
        H *= 2, W *= 2;
        int64_t n = B * u->cout * H * W;
        ap_tensor near = ap_t4(a->tape ? ap_arena_floats(a->tmp, (size_t)n, "VAE nearest 2x output")
                                       : act(a, n, "VAE nearest 2x output"), B, u->cout, H, W);
        if (!near.data) return AP_ERR;
        AP_TRY(ap_upsample_nearest2x_forward(ctx, &near, &x));
        y = ap_t4(act(a, n, "VAE upsampler output"), B, u->cout, H, W);
        if (!y.data) return AP_ERR;
        AP_TRY(ap_conv2d_forward(ctx, &y, &near, &u->up_w, &u->up_b, 1, 1));
        a->tmp->used = mark;
        x = y;
    }
    *out = x;
    return AP_OK;
}

/* Segment n_blocks + 2: conv_norm_out, then (image != NULL) SiLU and conv_out. */
static int seg_out(ap_ctx *ctx, const ap_vae *v, acts *a, const ap_tensor *image, const ap_tensor *x) {
    ap_vae_saved *s = a->s;
    int64_t B = x->shape[0], C0 = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t G = v->cfg.groups;
    size_t mark = a->tmp->used;
    s->out_x = *x;
    s->out_n = ap_t4(act(a, B * C0 * H * W, "VAE conv_norm_out output"), B, C0, H, W);
    float *st = ap_arena_floats(a->tape ? a->tape->mem : a->tmp, (size_t)(2 * B * G), "VAE statistics");
    if (!s->out_n.data || !st) return AP_ERR;
    s->out_mean = ap_t2(st, B, G), s->out_rstd = ap_t2(st + B * G, B, G);
    AP_TRY(ap_group_norm_forward(ctx, &s->out_n, &s->out_mean, &s->out_rstd, x, &v->norm_out_w,
                                 &v->norm_out_b, (int)G, VAE_EPS));
    if (image) {
        ap_tensor sl = s->out_n; /* inference: SiLU in place */
        if (a->tape) sl.data = ap_arena_floats(a->tmp, (size_t)ap_numel(&sl), "VAE SiLU output");
        if (!sl.data) return AP_ERR;
        AP_TRY(ap_silu_forward(ctx, &sl, &s->out_n));
        AP_TRY(ap_conv2d_forward(ctx, image, &sl, &v->out_w, &v->out_b, 1, 1));
    }
    a->tmp->used = mark;
    return AP_OK;
}

/* Sample b of t (B, ...) as a (1, ...) view. */
static ap_tensor sample(const ap_tensor *t, int64_t b) { return ap_rows(t, b, 1); }

/* One pass of the layers over latent (Bx, L, h, w): full tape (tape set,
 * ck NULL), inference (tape NULL, ck NULL), or inference that copies each
 * segment's input into sample b of the checkpoints ck (block checkpointing). */
static int forward_pass(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *s,
                        ap_arena *tmp, ap_tensor *ck, int64_t b, const ap_tensor *image,
                        const ap_tensor *latent) {
    const ap_vae_config *c = &v->cfg;
    int64_t na = act_floats(v, latent->shape[0], latent->shape[2], latent->shape[3]);
    size_t base = tmp->used;
    acts a = {tape, tmp, s, {NULL, NULL}, 0};
    if (!tape) {
        a.pp[0] = ap_arena_floats(tmp, (size_t)na, "VAE activation buffer 0");
        a.pp[1] = ap_arena_floats(tmp, (size_t)na, "VAE activation buffer 1");
        if (!a.pp[0] || !a.pp[1]) return AP_ERR;
    }
    ap_tensor x, y;
    AP_TRY(seg_in(ctx, v, &a, &x, latent));
    for (int k = 0; k < c->n_blocks + 2; k++) {
        if (ck) { /* x becomes this segment's checkpoint */
            ap_tensor keep = sample(&ck[k], b);
            AP_TRY(ap_copy(ctx, &keep, &x));
            x = keep;
        }
        if (k == c->n_blocks + 1) break;
        if (k == 0)
            AP_TRY(seg_mid(ctx, v, &a, &y, &x));
        else
            AP_TRY(seg_up(ctx, v, &a, k - 1, &y, &x));
        x = y;
    }
    AP_TRY(seg_out(ctx, v, &a, image, &x));
    tmp->used = base;
    return AP_OK;
}

int ap_vae_forward(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *sv,
                   const ap_tensor *image, const ap_tensor *latent) {
    const char *op = "vae_forward";
    const ap_vae_config *c = &v->cfg;
    AP_TRY(ap_expect(op, "latent", latent, 4, (int64_t[]){-1, c->latent_channels, -1, -1}));
    int64_t B = latent->shape[0], h = latent->shape[2], w = latent->shape[3];
    int64_t up = (int64_t)1 << (c->n_blocks - 1);
    AP_TRY(ap_expect4(op, "image", image, B, c->out_channels, h * up, w * up));
    if (!sv) return ap_fail("%s: sv: expected the caller's saved struct, found none", op);
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    ap_vae_saved *s = sv;
    memset(s, 0, sizeof *s);
    if (v->full_tape) {
        AP_TRY(forward_pass(ctx, tape, v, s, tmp, NULL, 0, image, latent));
    } else {
        /* one image at a time; with a tape, the segment inputs of the batch */
        if (tape) {
            int64_t C = c->block_out[c->n_blocks - 1], H = h, W = w;
            for (int k = 0; k < c->n_blocks + 2; k++) {
                s->ck[k] = ap_t4(ap_arena_floats(tape->mem, (size_t)(B * C * H * W),
                                                 "VAE block checkpoint"), B, C, H, W);
                if (!s->ck[k].data) return AP_ERR;
                if (k >= 1 && k < c->n_blocks) H *= 2, W *= 2; /* after up block k - 1 */
                if (k >= 1) C = v->up[k - 1].cout;
            }
        }
        for (int64_t b = 0; b < B; b++) {
            ap_tensor im = sample(image, b), lat = sample(latent, b);
            AP_TRY(forward_pass(ctx, NULL, v, s, tmp, tape ? s->ck : NULL, b, &im, &lat));
        }
    }
    s->B = B, s->h = h, s->w = w;
    s->ckpt = tape && !v->full_tape;
    s->tape_mark = s->ckpt ? tape->mem->used : 0;
    ap_tape_record(&s->rec, tape, v);
    return AP_OK;
}

/* ---- backward ----------------------------------------------------------- */

/* dx (=) from dout through the attention block; x is its input. */
static int attention_backward(ap_ctx *ctx, ap_tape *tape, const ap_vae *v,
                              const ap_vae_saved *s, ap_arena *tmp, const ap_tensor *dx,
                              const ap_tensor *dout) {
    const ap_tensor *x = &s->attn_x;
    int64_t B = x->shape[0], C = x->shape[1], N = x->shape[2] * x->shape[3];
    size_t mark = tmp->used;
    float *a = ap_arena_floats(tmp, (size_t)(B * N * C), "VAE attention dO tokens"),
          *b = ap_arena_floats(tmp, (size_t)(B * N * C), "VAE attention d tokens"),
          *t = ap_arena_floats(tmp, (size_t)(B * C * N), "VAE attention d GroupNorm output");
    if (!a || !b || !t) return AP_ERR;
    ap_tensor dto = ap_t3(a, B, N, C), dtok = ap_t3(b, B, N, C), dt = ap_tn(t, 4, x->shape);
    AP_TRY(ap_nlc_to_nchw_backward(ctx, &dto, dout));
    AP_TRY(ap_mha_backward(ctx, tape, &v->attn, &s->attn, &dtok, NULL, &dto));
    AP_TRY(ap_nchw_to_nlc_backward(ctx, &dt, &dtok));
    AP_TRY(ap_group_norm_backward(ctx, dx, NULL, NULL, &dt, x, &s->attn_mean, &s->attn_rstd,
                                  &v->attn_norm_w, v->cfg.groups));
    AP_TRY(ap_axpy(ctx, dx, 1.0f, dout)); /* residual */
    tmp->used = mark;
    return AP_OK;
}

/* Checkpointed backward: the segment's forward again, from sample b of its
 * saved input, with the (reused) part of the tape after the checkpoints;
 * refills s. */
static int recompute(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *s,
                     ap_arena *tmp, int seg, int64_t b) {
    if (!s->ckpt) return AP_OK;
    int nb = v->cfg.n_blocks;
    tape->mem->used = s->tape_mark;
    acts a = {tape, tmp, s, {NULL, NULL}, 0};
    ap_tensor y, x = sample(&s->ck[seg - 1], b);
    if (seg == 1) return seg_mid(ctx, v, &a, &y, &x);
    if (seg < nb + 2) return seg_up(ctx, v, &a, seg - 2, &y, &x);
    return seg_out(ctx, v, &a, NULL, &x);
}

/* dlatent (Bx, L, h, w) from dimage, the full batch (full tape) or sample b
 * (checkpointed: each segment recomputed before its backward). */
static int backward_pass(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *s,
                         ap_arena *tmp, int64_t b, const ap_tensor *dlatent,
                         const ap_tensor *dimage) {
    const ap_vae_config *c = &v->cfg;
    int64_t B = dlatent->shape[0], h = dlatent->shape[2], w = dlatent->shape[3];
    int64_t L = c->latent_channels, Cm = c->block_out[c->n_blocks - 1], C0 = c->block_out[0];
    int64_t G = c->groups, H = dimage->shape[2], W = dimage->shape[3];
    int64_t na = act_floats(v, B, h, w);
    size_t base = tmp->used;
    float *g[2] = {ap_arena_floats(tmp, (size_t)na, "VAE gradient buffer 0"),
                   ap_arena_floats(tmp, (size_t)na, "VAE gradient buffer 1")};
    if (!g[0] || !g[1]) return AP_ERR;
    int k = 0; /* g[k] holds the gradient of the current layer output */
    /* conv_out, SiLU, conv_norm_out */
    AP_TRY(recompute(ctx, tape, v, s, tmp, c->n_blocks + 2, b));
    ap_tensor d = ap_t4(g[k], B, C0, H, W), dn = ap_t4(g[k ^ 1], B, C0, H, W);
    AP_TRY(ap_conv2d_backward(ctx, &d, NULL, NULL, dimage, &s->out_n, &v->out_w, 1, 1));
    AP_TRY(ap_silu_backward(ctx, &d, &d, &s->out_n));
    AP_TRY(ap_group_norm_backward(ctx, &dn, NULL, NULL, &d, &s->out_x, &s->out_mean,
                                  &s->out_rstd, &v->norm_out_w, (int)G));
    k ^= 1;
    /* up blocks, last to first */
    for (int i = c->n_blocks - 1; i >= 0; i--) {
        const ap_vae_up_block *u = &v->up[i];
        AP_TRY(recompute(ctx, tape, v, s, tmp, 2 + i, b));
        if (i < c->n_blocks - 1) {
            ap_tensor dy = ap_t4(g[k], B, u->cout, H, W), dn2 = ap_t4(g[k ^ 1], B, u->cout, H, W);
            ap_tensor near = ap_t4(NULL, B, u->cout, H, W); /* shape only: frozen conv */
            AP_TRY(ap_conv2d_backward(ctx, &dn2, NULL, NULL, &dy, &near, &u->up_w, 1, 1));
            H /= 2, W /= 2;
            ap_tensor dx = ap_t4(g[k], B, u->cout, H, W);
            AP_TRY(ap_upsample_nearest2x_backward(ctx, &dx, &dn2));
        }
        for (int r = u->n_res - 1; r >= 0; r--) {
            const ap_resnet *res = &u->res[r];
            ap_tensor dy = ap_t4(g[k], B, res->cout, H, W), dx = ap_t4(g[k ^ 1], B, res->cin, H, W);
            AP_TRY(ap_resnet_backward(ctx, tape, res, &s->res[i][r], &dx, &dy));
            k ^= 1;
        }
    }
    /* mid block */
    AP_TRY(recompute(ctx, tape, v, s, tmp, 1, b));
    ap_tensor dy = ap_t4(g[k], B, Cm, h, w), dx = ap_t4(g[k ^ 1], B, Cm, h, w);
    AP_TRY(ap_resnet_backward(ctx, tape, &v->mid_res[1], &s->mid1, &dx, &dy));
    k ^= 1;
    dy = ap_t4(g[k], B, Cm, h, w), dx = ap_t4(g[k ^ 1], B, Cm, h, w);
    AP_TRY(attention_backward(ctx, tape, v, s, tmp, &dx, &dy));
    k ^= 1;
    dy = ap_t4(g[k], B, Cm, h, w), dx = ap_t4(g[k ^ 1], B, Cm, h, w);
    AP_TRY(ap_resnet_backward(ctx, tape, &v->mid_res[0], &s->mid0, &dx, &dy));
    k ^= 1;
    /* conv_in, post_quant_conv, 1 / scaling_factor: frozen, nothing saved */
    ap_tensor dp = ap_t4(g[k ^ 1], B, L, h, w), dz = ap_t4(g[k], B, L, h, w);
    ap_tensor shape_p = ap_t4(NULL, B, L, h, w);
    dy = ap_t4(g[k], B, Cm, h, w);
    AP_TRY(ap_conv2d_backward(ctx, &dp, NULL, NULL, &dy, &shape_p, &v->in_w, 1, 1));
    AP_TRY(ap_conv2d_backward(ctx, &dz, NULL, NULL, &dp, &shape_p, &v->pq_w, 1, 0));
    AP_TRY(ap_divide_forward(ctx, dlatent, &dz, c->scaling_factor)); /* its own backward */
    tmp->used = base;
    return AP_OK;
}

int ap_vae_backward(ap_ctx *ctx, ap_tape *tape, const ap_vae *v, ap_vae_saved *s,
                    const ap_tensor *dlatent, const ap_tensor *dimage) {
    const char *op = "vae_backward";
    const ap_vae_config *c = &v->cfg;
    AP_TRY(ap_tape_check(op, &s->rec, tape, v));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    int64_t B = s->B, h = s->h, w = s->w, up = (int64_t)1 << (c->n_blocks - 1);
    AP_TRY(ap_expect4(op, "dlatent", dlatent, B, c->latent_channels, h, w));
    AP_TRY(ap_expect4(op, "dimage", dimage, B, c->out_channels, h * up, w * up));
    if (!s->ckpt) return backward_pass(ctx, tape, v, s, tmp, 0, dlatent, dimage);
    for (int64_t b = 0; b < B; b++) {
        ap_tensor dl = sample(dlatent, b), di = sample(dimage, b);
        AP_TRY(backward_pass(ctx, tape, v, s, tmp, b, &dl, &di));
    }
    return AP_OK;
}
