/* transformer2d.c: Transformer2DModel (one BasicTransformerBlock) forward and
 * backward over the CPU ops and the attention module.
 *
 * Accumulation rule: LoRA grads +=, activation grads = (dx is written). */
#include "transformer2d.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rows.h"

#define GN_EPS 1e-6f /* hard-coded in Transformer2DModel */
#define LN_EPS 1e-5f /* BasicTransformerBlock's LayerNorms */

int ap_transformer2d_declare(ap_transformer2d *t, ap_params *p, const char *pre, int C,
                             int heads, int ctx_dim, int groups, int linear_proj) {
    memset(t, 0, sizeof *t);
    if (heads <= 0 || C % heads)
        return ap_fail("transformer2d %s: heads: expected a divisor of the %d channels, found %d",
                       pre, C, heads);
    if (groups <= 0 || C % groups)
        return ap_fail("transformer2d %s: norm_num_groups: expected a divisor of the %d "
                       "channels, found %d", pre, C, groups);
    t->C = C, t->heads = heads, t->groups = groups, t->ctx_dim = ctx_dim;
    t->linear_proj = linear_proj;
    int ok = 1;
    int64_t c1[1] = {C}, pw[4] = {C, C, 1, 1};
    int pnd = linear_proj ? 2 : 4;
#define ADD(dst, nd, shp, ...) ok &= ap_params_add(p, dst, nd, shp, __VA_ARGS__) >= 0
    ADD(&t->norm_w, 1, c1, "%s.norm.weight", pre);
    ADD(&t->norm_b, 1, c1, "%s.norm.bias", pre);
    ADD(&t->proj_in_w, pnd, pw, "%s.proj_in.weight", pre);
    ADD(&t->proj_in_b, 1, c1, "%s.proj_in.bias", pre);
    const char *tb = "transformer_blocks.0";
    ap_tensor *lnw[3] = {&t->ln1_w, &t->ln2_w, &t->ln3_w}, *lnb[3] = {&t->ln1_b, &t->ln2_b, &t->ln3_b};
    ap_mha *attn[2] = {&t->attn1, &t->attn2};
    for (int a = 0; a < 2; a++) {
        int64_t kv = a == 0 ? C : ctx_dim;
        ADD(lnw[a], 1, c1, "%s.%s.norm%d.weight", pre, tb, a + 1);
        ADD(lnb[a], 1, c1, "%s.%s.norm%d.bias", pre, tb, a + 1);
        ap_mha *m = attn[a];
        ADD(&m->q.w, 2, ((int64_t[]){C, C}), "%s.%s.attn%d.to_q.weight", pre, tb, a + 1);
        ADD(&m->k.w, 2, ((int64_t[]){C, kv}), "%s.%s.attn%d.to_k.weight", pre, tb, a + 1);
        ADD(&m->v.w, 2, ((int64_t[]){C, kv}), "%s.%s.attn%d.to_v.weight", pre, tb, a + 1);
        ADD(&m->o.w, 2, ((int64_t[]){C, C}), "%s.%s.attn%d.to_out.0.weight", pre, tb, a + 1);
        ADD(&m->o.b, 1, c1, "%s.%s.attn%d.to_out.0.bias", pre, tb, a + 1);
        m->heads = heads;
        m->scale = 1.0f / sqrtf((float)(C / heads));
    }
    ADD(lnw[2], 1, c1, "%s.%s.norm3.weight", pre, tb);
    ADD(lnb[2], 1, c1, "%s.%s.norm3.bias", pre, tb);
    ADD(&t->ff1_w, 2, ((int64_t[]){8 * (int64_t)C, C}), "%s.%s.ff.net.0.proj.weight", pre, tb);
    ADD(&t->ff1_b, 1, ((int64_t[]){8 * (int64_t)C}), "%s.%s.ff.net.0.proj.bias", pre, tb);
    ADD(&t->ff2_w, 2, ((int64_t[]){C, 4 * (int64_t)C}), "%s.%s.ff.net.2.weight", pre, tb);
    ADD(&t->ff2_b, 1, c1, "%s.%s.ff.net.2.bias", pre, tb);
    ADD(&t->proj_out_w, pnd, pw, "%s.proj_out.weight", pre);
    ADD(&t->proj_out_b, 1, c1, "%s.proj_out.bias", pre);
#undef ADD
    return ok ? AP_OK : AP_ERR;
}

int ap_transformer2d_declare_lora(ap_transformer2d *t, ap_params *lp, const char *pre,
                                  int rank) {
    static const char *names[4] = {"to_q", "to_k", "to_v", "to_out"};
    if (rank <= 0) return ap_fail("transformer2d %s: LoRA rank: expected >= 1, found %d", pre, rank);
    int ok = 1;
    for (int a = 0; a < 2; a++) {
        ap_mha *m = a == 0 ? &t->attn1 : &t->attn2;
        ap_proj *pr[4] = {&m->q, &m->k, &m->v, &m->o};
        for (int i = 0; i < 4; i++) {
            ap_lora *l = &t->lora[4 * a + i];
            memset(l, 0, sizeof *l);
            int64_t in = pr[i]->w.shape[1], out = pr[i]->w.shape[0];
            ok &= ap_params_add(lp, &l->down, 2, (int64_t[]){rank, in},
                                "%s.transformer_blocks.0.attn%d.processor.%s_lora.down.weight",
                                pre, a + 1, names[i]) >= 0;
            ok &= ap_params_add(lp, &l->up, 2, (int64_t[]){out, rank},
                                "%s.transformer_blocks.0.attn%d.processor.%s_lora.up.weight",
                                pre, a + 1, names[i]) >= 0;
            l->scale = 1.0f;
            pr[i]->lora = l;
        }
    }
    return ok ? AP_OK : AP_ERR;
}

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

int ap_transformer2d_forward(ap_ctx *ctx, ap_tape *tape, const ap_transformer2d *t,
                             ap_transformer2d_saved *sv,
                             const ap_tensor *out, const ap_tensor *x,
                             const ap_tensor *context) {
    const char *op = "transformer2d_forward";
    int64_t C = t->C, G = t->groups;
    AP_TRY(ap_expect(op, "x", x, 4, (int64_t[]){-1, C, -1, -1}));
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3], N = H * W;
    AP_TRY(ap_expect4(op, "out", out, B, C, H, W));
    AP_TRY(ap_expect(op, "context", context, 3, (int64_t[]){B, -1, t->ctx_dim}));
    if (out->data == x->data) return ap_fail("%s: out: must not alias x", op);
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    ap_transformer2d_saved local, *s = sv ? sv : &local;
    ap_tape_record(&s->rec, tape, t);
    s->x = *x;
    float *st = take(keep, 2 * B * G + 6 * B * N, "transformer2d statistics");
    float *h0 = take(keep, B * N * C, "transformer2d h0"), *n1 = take(keep, B * N * C, "LN1 output"),
          *h1 = take(keep, B * N * C, "transformer2d h1"), *n2 = take(keep, B * N * C, "LN2 output"),
          *h2 = take(keep, B * N * C, "transformer2d h2"),
          *f1 = take(keep, B * N * 8 * C, "ff.net.0.proj output");
    float *ta = take(tmp, B * N * C, "transformer2d buffer a"),
          *tb = take(tmp, B * N * C, "transformer2d buffer b"),
          *tz = take(tmp, B * N * 4 * C, "GEGLU output");
    if (!st || !h0 || !n1 || !h1 || !n2 || !h2 || !f1 || !ta || !tb || !tz) return AP_ERR;
    s->gn_mean = ap_t2(st, B, G), s->gn_rstd = ap_t2(st + B * G, B, G);
    for (int i = 0; i < 3; i++) {
        s->mean[i] = ap_t1(st + 2 * B * G + 2 * i * B * N, B * N);
        s->rstd[i] = ap_t1(st + 2 * B * G + (2 * i + 1) * B * N, B * N);
    }
    s->h0 = ap_t3(h0, B, N, C), s->n1 = ap_t3(n1, B, N, C), s->h1 = ap_t3(h1, B, N, C);
    s->n2 = ap_t3(n2, B, N, C), s->h2 = ap_t3(h2, B, N, C), s->f1 = ap_t3(f1, B, N, 8 * C);
    ap_tensor a4 = ap_t4(ta, B, C, H, W), b4 = ap_t4(tb, B, C, H, W);
    ap_tensor a3 = ap_t3(ta, B, N, C), b3 = ap_t3(tb, B, N, C), z = ap_t3(tz, B, N, 4 * C);

    /* GroupNorm, proj_in, tokens -> h0 */
    AP_TRY(ap_group_norm_forward(ctx, &a4, &s->gn_mean, &s->gn_rstd, x, &t->norm_w, &t->norm_b,
                                 (int)G, GN_EPS));
    if (t->linear_proj) {
        AP_TRY(ap_nchw_to_nlc_forward(ctx, &b3, &a4));
        AP_TRY(ap_linear_forward(ctx, &s->h0, &b3, &t->proj_in_w, &t->proj_in_b));
    } else {
        AP_TRY(ap_conv2d_forward(ctx, &b4, &a4, &t->proj_in_w, &t->proj_in_b, 1, 0));
        AP_TRY(ap_nchw_to_nlc_forward(ctx, &s->h0, &b4));
    }
    /* h1 = h0 + attn1(LN1(h0)) */
    AP_TRY(ap_layer_norm_forward(ctx, &s->n1, &s->mean[0], &s->rstd[0], &s->h0, &t->ln1_w,
                                 &t->ln1_b, LN_EPS));
    AP_TRY(ap_mha_forward(ctx, tape, &t->attn1, &s->a1, &a3, &s->n1, NULL));
    AP_TRY(ap_add_forward(ctx, &s->h1, &s->h0, &a3));
    /* h2 = h1 + attn2(LN2(h1), context) */
    AP_TRY(ap_layer_norm_forward(ctx, &s->n2, &s->mean[1], &s->rstd[1], &s->h1, &t->ln2_w,
                                 &t->ln2_b, LN_EPS));
    AP_TRY(ap_mha_forward(ctx, tape, &t->attn2, &s->a2, &a3, &s->n2, context));
    AP_TRY(ap_add_forward(ctx, &s->h2, &s->h1, &a3));
    /* h3 = h2 + ff(LN3(h2)) (h3 in b3) */
    AP_TRY(ap_layer_norm_forward(ctx, &a3, &s->mean[2], &s->rstd[2], &s->h2, &t->ln3_w,
                                 &t->ln3_b, LN_EPS));
    AP_TRY(ap_linear_forward(ctx, &s->f1, &a3, &t->ff1_w, &t->ff1_b));
    AP_TRY(ap_geglu_forward(ctx, &z, &s->f1));
    AP_TRY(ap_linear_forward(ctx, &a3, &z, &t->ff2_w, &t->ff2_b));
    AP_TRY(ap_add_forward(ctx, &b3, &s->h2, &a3));
    /* back to NCHW, proj_out, residual */
    if (t->linear_proj) {
        AP_TRY(ap_linear_forward(ctx, &a3, &b3, &t->proj_out_w, &t->proj_out_b));
        AP_TRY(ap_nlc_to_nchw_forward(ctx, out, &a3));
    } else {
        AP_TRY(ap_nlc_to_nchw_forward(ctx, &a4, &b3));
        AP_TRY(ap_conv2d_forward(ctx, out, &a4, &t->proj_out_w, &t->proj_out_b, 1, 0));
    }
    AP_TRY(ap_axpy(ctx, out, 1.0f, x));
    tmp->used = tmark; /* releases tmp (and, for inference, the saved tensors) */
    return AP_OK;
}

int ap_transformer2d_backward(ap_ctx *ctx, ap_tape *tape, const ap_transformer2d *t,
                              const ap_transformer2d_saved *s, const ap_tensor *dx,
                              const ap_tensor *dout) {
    const char *op = "transformer2d_backward";
    AP_TRY(ap_tape_check(op, &s->rec, tape, t));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same(op, "x", &s->x, "dout", dout));
    AP_TRY(ap_expect_same(op, "x", &s->x, "dx", dx));
    int64_t B = s->x.shape[0], C = t->C, H = s->x.shape[2], W = s->x.shape[3], N = H * W;
    size_t mark = tmp->used;
    float *pa = take(tmp, B * N * C, "transformer2d dA"), *pb = take(tmp, B * N * C, "dB"),
          *pc = take(tmp, B * N * C, "dC"), *p4 = take(tmp, B * N * 4 * C, "GEGLU d"),
          *p8 = take(tmp, B * N * 8 * C, "ff.net.0.proj d");
    if (!pa || !pb || !pc || !p4 || !p8) return AP_ERR;
    ap_tensor dA = ap_t3(pa, B, N, C), dB = ap_t3(pb, B, N, C), dC = ap_t3(pc, B, N, C);
    ap_tensor dB4 = ap_t4(pb, B, C, H, W), dC4 = ap_t4(pc, B, C, H, W);
    ap_tensor dz = ap_t3(p4, B, N, 4 * C), df1 = ap_t3(p8, B, N, 8 * C);
    int rc = AP_ERR;
    /* residual: dx = dout; proj_out back to the token gradient dA = d h3 */
    if (ap_copy(ctx, dx, dout)) goto out;
    if (t->linear_proj) {
        if (ap_nlc_to_nchw_backward(ctx, &dB, dout)) goto out;
        if (ap_linear_backward(ctx, &dA, NULL, NULL, &dB, &dB, &t->proj_out_w)) goto out;
    } else {
        if (ap_conv2d_backward(ctx, &dC4, NULL, NULL, dout, &dC4, &t->proj_out_w, 1, 0)) goto out;
        if (ap_nlc_to_nchw_backward(ctx, &dA, &dC4)) goto out;
    }
    /* feed-forward: dA += LN3ᵀ(ff.net.0ᵀ(GEGLUᵀ(ff.net.2ᵀ(dA)))) */
    if (ap_linear_backward(ctx, &dz, NULL, NULL, &dA, &dz, &t->ff2_w)) goto out;
    if (ap_geglu_backward(ctx, &df1, &dz, &s->f1)) goto out;
    if (ap_linear_backward(ctx, &dB, NULL, NULL, &df1, &dB, &t->ff1_w)) goto out;
    if (ap_layer_norm_backward(ctx, &dC, NULL, NULL, &dB, &s->h2, &s->mean[2], &s->rstd[2],
                               &t->ln3_w)) goto out;
    if (ap_axpy(ctx, &dA, 1.0f, &dC)) goto out;
    /* cross-attention (no gradient into the context) */
    if (ap_mha_backward(ctx, tape, &t->attn2, &s->a2, &dB, NULL, &dA)) goto out;
    if (ap_layer_norm_backward(ctx, &dC, NULL, NULL, &dB, &s->h1, &s->mean[1], &s->rstd[1],
                               &t->ln2_w)) goto out;
    if (ap_axpy(ctx, &dA, 1.0f, &dC)) goto out;
    /* self-attention */
    if (ap_mha_backward(ctx, tape, &t->attn1, &s->a1, &dB, NULL, &dA)) goto out;
    if (ap_layer_norm_backward(ctx, &dC, NULL, NULL, &dB, &s->h0, &s->mean[0], &s->rstd[0],
                               &t->ln1_w)) goto out;
    if (ap_axpy(ctx, &dA, 1.0f, &dC)) goto out;
    /* tokens, proj_in, GroupNorm: dx += GNᵀ(proj_inᵀ(dA)) */
    if (t->linear_proj) {
        if (ap_linear_backward(ctx, &dB, NULL, NULL, &dA, &dB, &t->proj_in_w)) goto out;
        if (ap_nchw_to_nlc_backward(ctx, &dC4, &dB)) goto out;
        if (ap_group_norm_backward(ctx, &dB4, NULL, NULL, &dC4, &s->x, &s->gn_mean, &s->gn_rstd,
                                   &t->norm_w, t->groups)) goto out;
        if (ap_axpy(ctx, dx, 1.0f, &dB4)) goto out;
    } else {
        if (ap_nchw_to_nlc_backward(ctx, &dC4, &dA)) goto out;
        if (ap_conv2d_backward(ctx, &dB4, NULL, NULL, &dC4, &dB4, &t->proj_in_w, 1, 0)) goto out;
        if (ap_group_norm_backward(ctx, &dC4, NULL, NULL, &dB4, &s->x, &s->gn_mean, &s->gn_rstd,
                                   &t->norm_w, t->groups)) goto out;
        if (ap_axpy(ctx, dx, 1.0f, &dC4)) goto out;
    }
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}
