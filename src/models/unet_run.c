/* unet_run.c: UNet forward over the step list and backward over it in reverse
 * (their workspaces are measured by a dry run of this code: unet_plan.c).
 *
 * Accumulation rule: LoRA grads +=, activation grads =. A skip tensor's
 * gradient is the sum of its two uses: the next down-path layer (the running
 * gradient) and its up-path concatenation (kept in dskip[k] until the reverse
 * walk reaches the step that produced it). */
#include <string.h>

#include "core/err.h"
#include "core/tape.h"
#include "models/unet.h"
#include "ops/activation.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/resize.h"
#include "ops/timestep.h"

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

int ap_unet_forward(ap_ctx *ctx, ap_tape *tape, const ap_unet *m, ap_unet_saved *sv,
                    const ap_tensor *eps, const ap_tensor *x, const ap_tensor *t,
                    const ap_tensor *context) {
    const char *op = "unet_forward";
    const ap_unet_config *c = &m->cfg;
    if (!m->params.flat) return ap_fail("%s: the model's parameters are not allocated", op);
    AP_TRY(ap_expect(op, "x", x, 4, (int64_t[]){-1, c->in_channels, -1, -1}));
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3], f = (int64_t)1 << (c->levels - 1);
    if (H % f || W % f)
        return ap_fail("%s: x: expected H and W multiples of %lld (%d levels), found %lld x %lld",
                       op, (long long)f, c->levels, (long long)H, (long long)W);
    AP_TRY(ap_expect4(op, "eps", eps, B, c->out_channels, H, W));
    AP_TRY(ap_expect1(op, "timesteps", t, B));
    AP_TRY(ap_expect(op, "context", context, 3, (int64_t[]){B, -1, c->cross_dim}));
    if (!sv || sv->n_steps != m->n_steps)
        return ap_fail("%s: sv: expected saved descriptors made for this model "
                       "(ap_unet_saved_init, %d steps)", op, m->n_steps);
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    int C0 = c->block_out[0], T = c->time_embed_dim, G = c->groups;
    ap_tape_record(&sv->rec, NULL, NULL); /* stamped below once complete */
    sv->x = *x;

    /* emb_act = SiLU(linear_2(SiLU(linear_1(sinusoid(t))))), once for every resnet */
    float *te = take(tmp, B * C0, "timestep sinusoid"), *e1 = take(tmp, B * T, "linear_1 output"),
          *ea = take(keep, B * T, "SiLU(emb)");
    if (!te || !e1 || !ea) return AP_ERR;
    ap_tensor tte = ap_t2(te, B, C0), te1 = ap_t2(e1, B, T);
    sv->emb_act = ap_t2(ea, B, T);
    AP_TRY(ap_timestep_embedding_forward(ctx, &tte, t, c->flip_sin_to_cos, c->freq_shift, 1.0f,
                                         10000));
    /* (B, 1, C) views: each sample's embedding is its own GEMM (batch-independent) */
    ap_tensor vte = ap_t3(te, B, 1, C0), ve1 = ap_t3(e1, B, 1, T), vea = ap_t3(ea, B, 1, T);
    AP_TRY(ap_linear_forward(ctx, &ve1, &vte, &m->te1_w, &m->te1_b));
    AP_TRY(ap_silu_forward(ctx, &te1, &te1));
    AP_TRY(ap_linear_forward(ctx, &vea, &ve1, &m->te2_w, &m->te2_b));
    AP_TRY(ap_silu_forward(ctx, &sv->emb_act, &sv->emb_act));

    for (int i = 0; i < m->n_steps; i++) {
        const ap_unet_step *st = &m->steps[i];
        const ap_tensor *in = i ? &sv->out[i - 1] : x;
        int64_t h = H >> st->level, w = W >> st->level;
        if (st->op != AP_UNET_OUT) {
            float *o = take(keep, B * st->c * h * w, "UNet block output");
            if (!o) return AP_ERR;
            sv->out[i] = ap_t4(o, B, st->c, h, w);
        }
        size_t mark = tmp->used;
        switch (st->op) {
        case AP_UNET_CONV_IN:
            AP_TRY(ap_conv2d_forward(ctx, &sv->out[i], x, &m->conv_in_w, &m->conv_in_b, 1, 1));
            break;
        case AP_UNET_RESNET:
            AP_TRY(ap_resnet_forward(ctx, tape, &m->res[st->idx], &sv->res[st->idx], &sv->out[i],
                                     in, &sv->emb_act));
            break;
        case AP_UNET_ATTN:
            AP_TRY(ap_transformer2d_forward(ctx, tape, &m->tf[st->idx], &sv->tf[st->idx],
                                            &sv->out[i], in, context));
            break;
        case AP_UNET_DOWN:
            AP_TRY(ap_conv2d_forward(ctx, &sv->out[i], in, &m->down_w[st->idx], &m->down_b[st->idx],
                                     2, 1));
            break;
        case AP_UNET_UP: {
            float *u = take(tmp, B * st->c * h * w, "nearest x2 output");
            if (!u) return AP_ERR;
            ap_tensor tu = ap_t4(u, B, st->c, h, w);
            AP_TRY(ap_upsample_nearest2x_forward(ctx, &tu, in));
            AP_TRY(ap_conv2d_forward(ctx, &sv->out[i], &tu, &m->up_w[st->idx], &m->up_b[st->idx], 1, 1));
            break;
        }
        case AP_UNET_CONCAT:
            AP_TRY(ap_concat_channels_forward(ctx, &sv->out[i], in,
                                              &sv->out[m->skip_step[st->idx]]));
            break;
        case AP_UNET_OUT: {
            float *g = take(keep, B * C0 * H * W, "conv_norm_out output"),
                  *s = take(keep, 2 * B * G, "conv_norm_out statistics"),
                  *a = take(tmp, B * C0 * H * W, "conv_norm_out SiLU");
            if (!g || !s || !a) return AP_ERR;
            sv->gn_out = ap_t4(g, B, C0, H, W);
            sv->gn_mean = ap_t2(s, B, G), sv->gn_rstd = ap_t2(s + B * G, B, G);
            ap_tensor ta = ap_t4(a, B, C0, H, W);
            AP_TRY(ap_group_norm_forward(ctx, &sv->gn_out, &sv->gn_mean, &sv->gn_rstd, in,
                                         &m->out_norm_w, &m->out_norm_b, G, c->norm_eps));
            AP_TRY(ap_silu_forward(ctx, &ta, &sv->gn_out));
            AP_TRY(ap_conv2d_forward(ctx, eps, &ta, &m->conv_out_w, &m->conv_out_b, 1, 1));
            break;
        }
        }
        tmp->used = mark;
    }
    ap_tape_record(&sv->rec, tape, m);
    tmp->used = tmark; /* inference: everything, activations included, was in tmp */
    return AP_OK;
}

int ap_unet_backward(ap_ctx *ctx, ap_tape *tape, const ap_unet *m, const ap_unet_saved *sv,
                     const ap_tensor *dx, const ap_tensor *deps) {
    const char *op = "unet_backward";
    const ap_unet_config *c = &m->cfg;
    AP_TRY(ap_tape_check(op, &sv->rec, tape, m));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    int64_t B = sv->x.shape[0], H = sv->x.shape[2], W = sv->x.shape[3];
    AP_TRY(ap_expect4(op, "deps", deps, B, c->out_channels, H, W));
    if (dx) AP_TRY(ap_expect_same(op, "x", &sv->x, "dx", dx));
    size_t mark = tmp->used;
    int64_t maxact = ap_numel(&sv->x);
    for (int i = 0; i < m->n_steps; i++)
        if (m->steps[i].op != AP_UNET_OUT && ap_numel(&sv->out[i]) > maxact)
            maxact = ap_numel(&sv->out[i]);
    float *buf[2] = {take(tmp, maxact, "UNet gradient A"), take(tmp, maxact, "UNet gradient B")};
    if (!buf[0] || !buf[1]) return AP_ERR;
    for (int k = 0; k < m->n_skips; k++)
        if (!(sv->dskip[k] = take(tmp, ap_numel(&sv->out[m->skip_step[k]]), "skip gradient")))
            goto fail;
    ap_tensor cur = *deps, din;
    int which = 0, G = c->groups;
    for (int i = m->n_steps - 1; i >= 0; i--) {
        const ap_unet_step *st = &m->steps[i];
        const ap_tensor *in = i ? &sv->out[i - 1] : &sv->x;
        if (st->push >= 0) {
            ap_tensor dsk = ap_tn(sv->dskip[st->push], 4, sv->out[i].shape);
            if (ap_axpy(ctx, &cur, 1.0f, &dsk)) goto fail;
        }
        if (i > 0) {
            din = ap_tn(buf[which], 4, in->shape);
            which ^= 1;
        } else if (dx) {
            din = *dx;
        }
        size_t smark = tmp->used;
        int rc = AP_OK;
        switch (st->op) {
        case AP_UNET_CONV_IN:
            if (dx) rc = ap_conv2d_backward(ctx, &din, NULL, NULL, &cur, in, &m->conv_in_w, 1, 1);
            break;
        case AP_UNET_RESNET:
            rc = ap_resnet_backward(ctx, tape, &m->res[st->idx], &sv->res[st->idx], &din, &cur);
            break;
        case AP_UNET_ATTN:
            rc = ap_transformer2d_backward(ctx, tape, &m->tf[st->idx], &sv->tf[st->idx], &din,
                                           &cur);
            break;
        case AP_UNET_DOWN:
            rc = ap_conv2d_backward(ctx, &din, NULL, NULL, &cur, in, &m->down_w[st->idx], 2, 1);
            break;
        case AP_UNET_UP: {
            float *u = take(tmp, ap_numel(&sv->out[i]), "nearest x2 gradient");
            if (!u) goto fail;
            ap_tensor tu = ap_tn(u, 4, sv->out[i].shape);
            rc = ap_conv2d_backward(ctx, &tu, NULL, NULL, &cur, &tu, &m->up_w[st->idx], 1, 1);
            if (!rc) rc = ap_upsample_nearest2x_backward(ctx, &din, &tu);
            break;
        }
        case AP_UNET_CONCAT: {
            ap_tensor dsk = ap_tn(sv->dskip[st->idx], 4, sv->out[m->skip_step[st->idx]].shape);
            rc = ap_concat_channels_backward(ctx, &din, &dsk, &cur);
            break;
        }
        case AP_UNET_OUT: {
            float *a = take(tmp, ap_numel(&sv->gn_out), "conv_norm_out gradient");
            if (!a) goto fail;
            ap_tensor ta = ap_tn(a, 4, sv->gn_out.shape);
            rc = ap_conv2d_backward(ctx, &ta, NULL, NULL, &cur, &ta, &m->conv_out_w, 1, 1);
            if (!rc) rc = ap_silu_backward(ctx, &ta, &ta, &sv->gn_out);
            if (!rc)
                rc = ap_group_norm_backward(ctx, &din, NULL, NULL, &ta, in, &sv->gn_mean,
                                            &sv->gn_rstd, &m->out_norm_w, G);
            break;
        }
        }
        tmp->used = smark;
        if (rc) goto fail;
        cur = din;
    }
    tmp->used = mark;
    return AP_OK;
fail:
    tmp->used = mark;
    return AP_ERR;
}
