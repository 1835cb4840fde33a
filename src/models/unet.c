/* unet.c: UNet2DConditionModel build (parameters in state_dict order, LoRA in
 * save_attn_procs order, the step list), loading, LoRA initialisation.
 * Forward/backward and planning are in unet_run.c. */
#include "models/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/path.h"
#include "core/rng.h"
#include "io/lora_file.h"
#include "ops/memory.h"
#include "ops/rows.h"

typedef struct {
    char pre[64];
    int cin, cout;
} res_spec;
typedef struct {
    char pre[64];
    int c, heads;
} tf_spec;

typedef struct {
    ap_unet *m;
    res_spec *rs;
    tf_spec *ts;
    int *stack, sp; /* skip stack of ids */
} builder;

static void step(builder *b, ap_unet_op op, int idx, int c, int level, int push) {
    ap_unet_step *s = &b->m->steps[b->m->n_steps++];
    memset(s, 0, sizeof *s);
    s->op = op, s->idx = idx, s->c = c, s->level = level, s->push = -1;
    if (push) {
        int k = b->m->n_skips++;
        s->push = k;
        b->m->skip_c[k] = c, b->m->skip_level[k] = level;
        b->m->skip_step[k] = b->m->n_steps - 1;
        b->stack[b->sp++] = k;
    }
}

static int add_res(builder *b, const char *pre, int cin, int cout) {
    int i = b->m->n_res++;
    snprintf(b->rs[i].pre, sizeof b->rs[i].pre, "%s", pre);
    b->rs[i].cin = cin, b->rs[i].cout = cout;
    return i;
}
static int add_tf(builder *b, const char *pre, int c, int heads) {
    int i = b->m->n_tf++;
    snprintf(b->ts[i].pre, sizeof b->ts[i].pre, "%s", pre);
    b->ts[i].c = c, b->ts[i].heads = heads;
    return i;
}

/* Pass 1: the step list in execution order, with resnet/transformer specs
 * numbered in state_dict order (down blocks, up blocks, mid block). */
static int plan_steps(builder *b) {
    ap_unet *m = b->m;
    const ap_unet_config *c = &m->cfg;
    int n = c->levels, ch = c->block_out[0];
    char pre[64];
    step(b, AP_UNET_CONV_IN, 0, ch, 0, 1);
    for (int i = 0; i < n; i++) {
        int out = c->block_out[i];
        /* transformers of this block are numbered before its resnets are run */
        for (int j = 0; j < c->layers[i]; j++) {
            snprintf(pre, sizeof pre, "down_blocks.%d.resnets.%d", i, j);
            int r = add_res(b, pre, ch, out);
            step(b, AP_UNET_RESNET, r, out, i, !c->down_attn[i]);
            if (c->down_attn[i]) {
                snprintf(pre, sizeof pre, "down_blocks.%d.attentions.%d", i, j);
                step(b, AP_UNET_ATTN, add_tf(b, pre, out, c->heads[i]), out, i, 1);
            }
            ch = out;
        }
        if (i < n - 1) {
            step(b, AP_UNET_DOWN, m->n_down++, ch, i + 1, 1);
        }
    }
    /* up blocks come before the mid block in state_dict order, but run after
     * it: number the mid block's modules last, run them first. */
    int mid_steps = 3, mid_at = m->n_steps;
    m->n_steps += mid_steps;
    int top = c->block_out[n - 1];
    ch = top;
    for (int i = 0; i < n; i++) {
        int lvl = n - 1 - i, out = c->block_out[lvl], nl = c->layers[lvl] + 1;
        /* diffusers: input_channel = reversed(block_out)[min(i + 1, n - 1)] */
        int in_ch = c->block_out[lvl > 0 ? lvl - 1 : 0], prev = ch;
        for (int j = 0; j < nl; j++) {
            if (b->sp == 0)
                return ap_fail("unet: skip stack empty at up_blocks.%d resnet %d (config "
                               "layers_per_block inconsistent)", i, j);
            int k = b->stack[--b->sp];
            /* diffusers: in = (prev if j == 0 else out) + (in_ch if last else out) */
            int want = (j == 0 ? prev : out) + (j == nl - 1 ? in_ch : out);
            if (ch + m->skip_c[k] != want || m->skip_level[k] != lvl)
                return ap_fail("unet: up_blocks.%d.resnets.%d: skip %d has %d channels at level "
                               "%d, diffusers builds %d input channels at level %d", i, j, k,
                               m->skip_c[k], m->skip_level[k], want, lvl);
            step(b, AP_UNET_CONCAT, k, ch + m->skip_c[k], lvl, 0);
            snprintf(pre, sizeof pre, "up_blocks.%d.resnets.%d", i, j);
            step(b, AP_UNET_RESNET, add_res(b, pre, ch + m->skip_c[k], out), out, lvl, 0);
            if (c->up_attn[i]) {
                snprintf(pre, sizeof pre, "up_blocks.%d.attentions.%d", i, j);
                step(b, AP_UNET_ATTN, add_tf(b, pre, out, c->heads[lvl]), out, lvl, 0);
            }
            ch = out;
        }
        if (i < n - 1) step(b, AP_UNET_UP, m->n_up++, ch, lvl - 1, 0);
    }
    step(b, AP_UNET_OUT, 0, c->out_channels, 0, 0);
    if (b->sp != 0) return ap_fail("unet: %d skip tensors left unused (config inconsistent)", b->sp);
    /* the mid block: resnet, transformer, resnet at the lowest level */
    int end = m->n_steps;
    m->n_steps = mid_at;
    step(b, AP_UNET_RESNET, add_res(b, "mid_block.resnets.0", top, top), top, n - 1, 0);
    step(b, AP_UNET_ATTN, add_tf(b, "mid_block.attentions.0", top, c->heads[n - 1]), top, n - 1, 0);
    step(b, AP_UNET_RESNET, add_res(b, "mid_block.resnets.1", top, top), top, n - 1, 0);
    m->n_steps = end;
    return AP_OK;
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* Pass 2: declare parameters in state_dict order. */
static int declare(builder *b) {
    ap_unet *m = b->m;
    const ap_unet_config *c = &m->cfg;
    ap_params *p = &m->params;
    int C0 = c->block_out[0], T = c->time_embed_dim, ok = 1;
#define ADD(dst, nd, ...) ok &= ap_params_add(p, dst, nd, (int64_t[]){__VA_ARGS__},
    ADD(&m->conv_in_w, 4, C0, c->in_channels, 3, 3) "conv_in.weight") >= 0;
    ADD(&m->conv_in_b, 1, C0) "conv_in.bias") >= 0;
    ADD(&m->te1_w, 2, T, C0) "time_embedding.linear_1.weight") >= 0;
    ADD(&m->te1_b, 1, T) "time_embedding.linear_1.bias") >= 0;
    ADD(&m->te2_w, 2, T, T) "time_embedding.linear_2.weight") >= 0;
    ADD(&m->te2_b, 1, T) "time_embedding.linear_2.bias") >= 0;
    /* blocks: for each of down_blocks.i, up_blocks.i, mid_block: attentions,
     * resnets, samplers */
    int d = 0, u = 0;
    for (int part = 0; part < 3; part++) {
        int nb = part == 2 ? 1 : c->levels;
        for (int i = 0; i < nb; i++) {
            char blk[32];
            if (part == 0) snprintf(blk, sizeof blk, "down_blocks.%d.", i);
            else if (part == 1) snprintf(blk, sizeof blk, "up_blocks.%d.", i);
            else snprintf(blk, sizeof blk, "mid_block.");
            for (int t = 0; t < m->n_tf; t++)
                if (starts(b->ts[t].pre, blk))
                    AP_TRY(ap_transformer2d_declare(&m->tf[t], p, b->ts[t].pre, b->ts[t].c,
                                                    b->ts[t].heads, c->cross_dim, c->groups,
                                                    c->linear_proj));
            for (int r = 0; r < m->n_res; r++)
                if (starts(b->rs[r].pre, blk))
                    AP_TRY(ap_resnet_declare(&m->res[r], p, b->rs[r].pre, b->rs[r].cin,
                                             b->rs[r].cout, T, c->groups, c->norm_eps));
            if (part == 0 && i < c->levels - 1) {
                int ch = c->block_out[i];
                ADD(&m->down_w[d], 4, ch, ch, 3, 3) "%sdownsamplers.0.conv.weight", blk) >= 0;
                ADD(&m->down_b[d], 1, ch) "%sdownsamplers.0.conv.bias", blk) >= 0;
                d++;
            }
            if (part == 1 && i < c->levels - 1) {
                int ch = c->block_out[c->levels - 1 - i];
                ADD(&m->up_w[u], 4, ch, ch, 3, 3) "%supsamplers.0.conv.weight", blk) >= 0;
                ADD(&m->up_b[u], 1, ch) "%supsamplers.0.conv.bias", blk) >= 0;
                u++;
            }
        }
    }
    ADD(&m->out_norm_w, 1, C0) "conv_norm_out.weight") >= 0;
    ADD(&m->out_norm_b, 1, C0) "conv_norm_out.bias") >= 0;
    ADD(&m->conv_out_w, 4, c->out_channels, C0, 3, 3) "conv_out.weight") >= 0;
    ADD(&m->conv_out_b, 1, c->out_channels) "conv_out.bias") >= 0;
#undef ADD
    if (!ok) return AP_ERR;
    /* LoRA in attn_processors order = transformer order (down, up, mid) */
    if (m->lora_rank > 0)
        for (int t = 0; t < m->n_tf; t++)
            AP_TRY(ap_transformer2d_declare_lora(&m->tf[t], &m->lora, b->ts[t].pre, m->lora_rank));
    return AP_OK;
}

int ap_unet_build(ap_unet *m, const ap_unet_config *c, int lora_rank) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->lora_rank = lora_rank;
    ap_params_init(&m->params);
    ap_params_init(&m->lora);
    if (lora_rank < 0) return ap_fail("unet: LoRA rank: expected >= 0, found %d", lora_rank);
    int n = c->levels, nres = 2, ntf = 1, nsteps = 1 + 3 + 1 + n;
    for (int i = 0; i < n; i++) {
        nres += 2 * c->layers[i] + 1;
        ntf += (c->down_attn[i] ? c->layers[i] : 0) + (c->up_attn[i] ? c->layers[n - 1 - i] + 1 : 0);
        nsteps += 2 * c->layers[i] + 3 * (c->layers[i] + 1) + 2;
    }
    builder b = {m, calloc((size_t)nres, sizeof(res_spec)), calloc((size_t)ntf, sizeof(tf_spec)),
                 calloc((size_t)nsteps, sizeof(int)), 0};
    m->res = calloc((size_t)nres, sizeof *m->res);
    m->tf = calloc((size_t)ntf, sizeof *m->tf);
    m->steps = calloc((size_t)nsteps, sizeof *m->steps);
    m->skip_c = calloc((size_t)nsteps, sizeof(int));
    m->skip_level = calloc((size_t)nsteps, sizeof(int));
    m->skip_step = calloc((size_t)nsteps, sizeof(int));
    m->down_w = calloc((size_t)n, sizeof(ap_tensor)), m->down_b = calloc((size_t)n, sizeof(ap_tensor));
    m->up_w = calloc((size_t)n, sizeof(ap_tensor)), m->up_b = calloc((size_t)n, sizeof(ap_tensor));
    int rc = AP_ERR;
    if (!b.rs || !b.ts || !b.stack || !m->res || !m->tf || !m->steps ||
        !m->skip_c || !m->skip_level || !m->skip_step || !m->down_w || !m->down_b || !m->up_w || !m->up_b) {
        ap_fail("unet: out of memory building the model description");
        goto out;
    }
    if (plan_steps(&b) || declare(&b)) goto out;
    rc = AP_OK;
out:
    free(b.rs), free(b.ts), free(b.stack);
    return rc;
}

/* Weights that stay f32 under mixed precision (ap_params_store_frozen): the
 * attention projections, which nn/proj.c multiplies with a raw f32 GEMM
 * until it calls a matmul op (issue 15, item 3). Convs and the other linears
 * (proj_in/out, feed-forward, time embeddings) go through ap_conv2d/ap_linear,
 * which widen a bf16 weight on the fly. */
static const char *const unet_keep_f32[] = {NULL}; /* every weight matrix: frozen */

void ap_unet_store_frozen(ap_unet *m) { ap_params_store_frozen(&m->params, unet_keep_f32); }

/* Point each LoRA's gradient tensors into the flat gradient block at base
 * on device dev. Each transformer declared 16 slots: lora[i].down,
 * lora[i].up for i = 0..7. */
static void bind_grads(ap_unet *m, float *base, ap_device dev) {
    int k = 0;
    for (int t = 0; t < m->n_tf; t++)
        for (int i = 0; i < 8; i++, k += 2) {
            ap_lora *l = &m->tf[t].lora[i];
            l->ddown = m->lora.items[k].t;
            l->ddown.data = base + m->lora.items[k].offset;
            l->ddown.device = dev;
            l->dup = m->lora.items[k + 1].t;
            l->dup.data = base + m->lora.items[k + 1].offset;
            l->dup.device = dev;
        }
}

/* Allocate weights and LoRA (unbacked: address space only, for dry runs),
 * the LoRA gradient buffer, and point each LoRA's gradients into it. */
static int alloc(ap_unet *m, int unbacked) {
    ap_unet_store_frozen(m);
    AP_TRY(unbacked ? ap_params_alloc_unbacked(&m->params, "UNet weights (unbacked)")
                    : ap_params_alloc(&m->params, "UNet weights"));
    if (m->lora_rank <= 0) return AP_OK;
    AP_TRY(unbacked ? ap_params_alloc_unbacked(&m->lora, "UNet LoRA (unbacked)")
                    : ap_params_alloc(&m->lora, "UNet LoRA"));
    m->lora_grad = ap_calloc(m->lora.total ? m->lora.total : 1, sizeof(float), "UNet LoRA grads");
    if (!m->lora_grad) return AP_ERR;
    bind_grads(m, m->lora_grad, AP_CPU);
    return AP_OK;
}

int ap_unet_alloc(ap_unet *m) { return alloc(m, 0); }

int ap_unet_alloc_unbacked(ap_unet *m) { return alloc(m, 1); }

int ap_unet_saved_init(ap_unet_saved *sv, const ap_unet *m) {
    memset(sv, 0, sizeof *sv);
    sv->out = calloc((size_t)m->n_steps, sizeof *sv->out);
    sv->res = calloc((size_t)m->n_res ? (size_t)m->n_res : 1, sizeof *sv->res);
    sv->tf = calloc((size_t)m->n_tf ? (size_t)m->n_tf : 1, sizeof *sv->tf);
    sv->dskip = calloc((size_t)m->n_skips ? (size_t)m->n_skips : 1, sizeof *sv->dskip);
    if (!sv->out || !sv->res || !sv->tf || !sv->dskip) {
        ap_unet_saved_free(sv);
        return ap_fail("unet: out of memory for the saved-activation descriptors (%d steps)",
                       m->n_steps);
    }
    sv->n_steps = m->n_steps, sv->n_res = m->n_res, sv->n_tf = m->n_tf, sv->n_skips = m->n_skips;
    return AP_OK;
}

void ap_unet_saved_free(ap_unet_saved *sv) {
    free(sv->out), free(sv->res), free(sv->tf), free(sv->dskip);
    memset(sv, 0, sizeof *sv);
}

void ap_unet_free(ap_unet *m) {
    ap_params_free(&m->params);
    ap_params_free(&m->lora);
    free(m->lora_grad);
    free(m->res), free(m->tf), free(m->steps);
    free(m->skip_c), free(m->skip_level), free(m->skip_step);
    free(m->down_w), free(m->down_b), free(m->up_w), free(m->up_b);
    memset(m, 0, sizeof *m);
}

/* First existing dir/name[i] into out; error listing what was looked for. */
static int find_file(char *out, size_t n, const char *dir, const char *const *names,
                     const char *what) {
    for (int i = 0; names[i]; i++) {
        snprintf(out, n, "%s/%s", dir, names[i]);
        if (ap_is_file(out)) return AP_OK;
    }
    return ap_fail("%s: %s: expected %s%s%s in the directory, found none", dir, what, names[0],
                   names[1] ? " or " : "", names[1] ? names[1] : "");
}

int ap_unet_load_weights(ap_unet *m, const char *dir) {
    static const char *const names[] = {"diffusion_pytorch_model.safetensors",
                                        "diffusion_pytorch_model.bin", NULL};
    char path[4096];
    AP_TRY(find_file(path, sizeof path, dir, names, "UNet weights"));
    ap_wsrc *w = NULL;
    AP_TRY(ap_wsrc_open(&w, path));
    int rc = ap_params_fill(&m->params, w, "", NULL);
    ap_wsrc_close(w);
    return rc;
}

int ap_unet_load_lora(ap_unet *m, const char *path) {
    if (m->lora_rank <= 0)
        return ap_fail("unet: load LoRA %s: the model was built without LoRA (rank 0)", path);
    /* any of the three layouts, alpha folded (io/lora_file.h, docs/lora.md §7) */
    ap_lora_set s;
    AP_TRY(ap_lora_read(&s, path));
    int rc = ap_lora_fill(&m->lora, &s);
    ap_lora_set_free(&s);
    return rc;
}

int ap_unet_init_lora(ap_unet *m, uint64_t seed) {
    if (m->lora_rank <= 0 || !m->lora.flat)
        return ap_fail("unet: init LoRA: the model has no allocated LoRA parameters");
    uint64_t s = seed;
    float sd = 1.0f / (float)m->lora_rank; /* LoRALinearLayer: normal_(std=1/rank) */
    for (int k = 0; k < m->lora.count; k++) {
        ap_param *p = &m->lora.items[k];
        int64_t n = ap_numel(&p->t);
        float *x = m->lora.flat + p->offset;
        if (k % 2 == 1) { /* up = B: zeros */
            memset(x, 0, (size_t)n * sizeof(float));
            continue;
        }
        for (int64_t i = 0; i < n; i += 2) { /* Box-Muller, 53-bit uniforms */
            double u1 = ((ap_splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53;
            double u2 = ap_unit53(ap_splitmix64(&s));
            double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
            x[i] = (float)(r * cos(a)) * sd;
            if (i + 1 < n) x[i + 1] = (float)(r * sin(a)) * sd;
        }
    }
    return AP_OK;
}

void ap_unet_zero_lora_grads(ap_unet *m) {
    if (m->lora_grad) memset(m->lora_grad, 0, m->lora.total * sizeof(float)); /* host: */
}

/* the gradient block as one tensor, where the backward accumulates */
static ap_tensor grad_block(const ap_unet *m) {
    ap_tensor t = ap_t1(m->lora_grad_dev ? m->lora_grad_dev : m->lora_grad, (int64_t)m->lora.total);
    t.device = m->lora_grad_dev ? m->lora.items[0].t.device : AP_CPU;
    return t;
}

int ap_unet_place(ap_ctx *ctx, ap_unet *m) {
    AP_TRY(ap_params_place(ctx, &m->params));
    if (ctx->device == AP_CPU || !m->lora_rank || m->lora_grad_dev || m->lora.unbacked) return AP_OK;
    AP_TRY(ap_params_place(ctx, &m->lora));
    if (!(m->lora_grad_dev = ap_dev_alloc(ctx, m->lora.total * sizeof(float), "UNet LoRA grads")))
        return AP_ERR;
    bind_grads(m, m->lora_grad_dev, ctx->device);
    return ap_unet_zero_lora_grads_on(ctx, m);
}

void ap_unet_unplace(ap_ctx *ctx, ap_unet *m) {
    ap_params_unplace(ctx, &m->params);
    ap_params_unplace(ctx, &m->lora);
    if (m->lora_grad_dev) {
        ap_dev_free(ctx, m->lora_grad_dev);
        m->lora_grad_dev = NULL;
        bind_grads(m, m->lora_grad, AP_CPU);
    }
}

int ap_unet_zero_lora_grads_on(ap_ctx *ctx, ap_unet *m) {
    if (!m->lora_grad || !m->lora.total) return AP_OK;
    ap_tensor g = grad_block(m);
    return ap_fill(ctx, &g, 0.0f);
}

int ap_unet_lora_grads_read(ap_ctx *ctx, const ap_unet *m, float *host) {
    if (!m->lora_grad || !m->lora.total) return AP_OK;
    ap_tensor g = grad_block(m);
    return ap_tensor_read(ctx, host, &g);
}

int ap_unet_open(ap_unet *m, const char *dir, int lora_rank) {
    char path[4096];
    ap_unet_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    AP_TRY(ap_unet_config_read(&c, path));
    if (ap_unet_build(m, &c, lora_rank) || ap_unet_alloc(m) || ap_unet_load_weights(m, dir)) {
        ap_unet_free(m);
        return AP_ERR;
    }
    return AP_OK;
}
