/* encoder.c: pre-LN transformer encoder layer (CLIP / OpenCLIP) over the CPU
 * ops, forward and input-gradient backward.
 *
 * Accumulation rule: frozen weights, no parameter grads; dx is written (=). */
#include "encoder.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rows.h"

int ap_enc_declare(ap_enc_layer *l, ap_params *p, const char *pre, ap_enc_keys keys, int C,
                   int F, int heads, ap_enc_act act, int causal, float eps) {
    memset(l, 0, sizeof *l);
    if (C <= 0 || F <= 0 || heads <= 0 || C % heads)
        return ap_fail("encoder layer %s: expected width C > 0 divisible by heads and F > 0, "
                       "found C %d, heads %d, F %d", pre, C, heads, F);
    l->C = C, l->F = F, l->heads = heads, l->causal = causal, l->eps = eps;
    l->act = act, l->keys = keys;
    int64_t c1[1] = {C}, cc[2] = {C, C}, f1[1] = {F}, fc[2] = {F, C}, cf[2] = {C, F};
    int ok = 1;
    const char *dot = pre[0] ? "." : ""; /* empty prefix: bare names */
#define ADD(dst, nd, shape, name) \
    ok &= ap_params_add(p, dst, nd, shape, "%s%s" name, pre, dot) >= 0
    if (keys == AP_ENC_KEYS_HF) {
        ADD(&l->k_w, 2, cc, "self_attn.k_proj.weight");
        ADD(&l->k_b, 1, c1, "self_attn.k_proj.bias");
        ADD(&l->v_w, 2, cc, "self_attn.v_proj.weight");
        ADD(&l->v_b, 1, c1, "self_attn.v_proj.bias");
        ADD(&l->q_w, 2, cc, "self_attn.q_proj.weight");
        ADD(&l->q_b, 1, c1, "self_attn.q_proj.bias");
        ADD(&l->o_w, 2, cc, "self_attn.out_proj.weight");
        ADD(&l->o_b, 1, c1, "self_attn.out_proj.bias");
        ADD(&l->ln1_w, 1, c1, "layer_norm1.weight");
        ADD(&l->ln1_b, 1, c1, "layer_norm1.bias");
        ADD(&l->fc1_w, 2, fc, "mlp.fc1.weight");
        ADD(&l->fc1_b, 1, f1, "mlp.fc1.bias");
        ADD(&l->fc2_w, 2, cf, "mlp.fc2.weight");
        ADD(&l->fc2_b, 1, c1, "mlp.fc2.bias");
        ADD(&l->ln2_w, 1, c1, "layer_norm2.weight");
        ADD(&l->ln2_b, 1, c1, "layer_norm2.bias");
    } else {
        int64_t c3[1] = {3 * (int64_t)C}, c3c[2] = {3 * (int64_t)C, C};
        ADD(&l->ln1_w, 1, c1, "ln_1.weight");
        ADD(&l->ln1_b, 1, c1, "ln_1.bias");
        ADD(&l->in_w, 2, c3c, "attn.in_proj_weight");
        ADD(&l->in_b, 1, c3, "attn.in_proj_bias");
        ADD(&l->o_w, 2, cc, "attn.out_proj.weight");
        ADD(&l->o_b, 1, c1, "attn.out_proj.bias");
        ADD(&l->ln2_w, 1, c1, "ln_2.weight");
        ADD(&l->ln2_b, 1, c1, "ln_2.bias");
        ADD(&l->fc1_w, 2, fc, "mlp.c_fc.weight");
        ADD(&l->fc1_b, 1, f1, "mlp.c_fc.bias");
        ADD(&l->fc2_w, 2, cf, "mlp.c_proj.weight");
        ADD(&l->fc2_b, 1, c1, "mlp.c_proj.bias");
    }
#undef ADD
    return ok ? AP_OK : AP_ERR;
}

/* The attention module over the layer's weights; OpenCLIP's packed q/k/v
 * become row slices of in_proj. Scale 1/sqrt(head_dim): transformers applies
 * it to q before the product, torch's MultiheadAttention too (same value). */
static void mha_of(const ap_enc_layer *l, ap_mha *m) {
    memset(m, 0, sizeof *m);
    int64_t C = l->C;
    if (l->keys == AP_ENC_KEYS_OPENCLIP) {
        /* in_w (3C, C), in_b (3C): q, k, v are rows 0, C, 2C of each */
        m->q.w = ap_rows(&l->in_w, 0, C), m->q.b = ap_rows(&l->in_b, 0, C);
        m->k.w = ap_rows(&l->in_w, C, C), m->k.b = ap_rows(&l->in_b, C, C);
        m->v.w = ap_rows(&l->in_w, 2 * C, C), m->v.b = ap_rows(&l->in_b, 2 * C, C);
    } else {
        m->q.w = l->q_w, m->q.b = l->q_b;
        m->k.w = l->k_w, m->k.b = l->k_b;
        m->v.w = l->v_w, m->v.b = l->v_b;
    }
    m->o.w = l->o_w, m->o.b = l->o_b;
    m->heads = l->heads;
    m->scale = (float)(1.0 / sqrt((double)(l->C / l->heads)));
    m->causal = l->causal;
}

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

static int act_forward(ap_ctx *ctx, const ap_enc_layer *l, const ap_tensor *out,
                       const ap_tensor *in) {
    return l->act == AP_ACT_GELU ? ap_gelu_forward(ctx, out, in, 0)
                                 : ap_quick_gelu_forward(ctx, out, in);
}

static int act_backward(ap_ctx *ctx, const ap_enc_layer *l, const ap_tensor *din,
                        const ap_tensor *dout, const ap_tensor *in) {
    return l->act == AP_ACT_GELU ? ap_gelu_backward(ctx, din, dout, in, 0)
                                 : ap_quick_gelu_backward(ctx, din, dout, in);
}

int ap_enc_forward(ap_ctx *ctx, ap_tape *tape, const ap_enc_layer *l, ap_enc_saved *sv,
                   const ap_tensor *out, const ap_tensor *x) {
    const char *op = "encoder_forward";
    AP_TRY(ap_expect(op, "x", x, 3, (int64_t[]){-1, -1, l->C}));
    int64_t B = x->shape[0], N = x->shape[1], C = l->C, F = l->F, BN = B * N;
    AP_TRY(ap_expect3(op, "out", out, B, N, C));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    if (tape && out->data == x->data)
        return ap_fail("%s: out aliases x, but x must survive for backward (tape given)", op);
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    ap_enc_saved local, *s = sv ? sv : &local;
    memset(s, 0, sizeof *s);
    ap_tape_record(&s->rec, tape, l);
    s->x = *x;
    int rc = AP_ERR;
    float *a1 = take(keep, BN * C, "encoder LN1 output"),
          *st = take(keep, 4 * BN, "encoder LayerNorm statistics");
    if (!a1 || !st) goto out;
    s->a1 = ap_t3(a1, B, N, C);
    s->mean1 = ap_t1(st, BN), s->rstd1 = ap_t1(st + BN, BN);
    s->mean2 = ap_t1(st + 2 * BN, BN), s->rstd2 = ap_t1(st + 3 * BN, BN);
    if (ap_layer_norm_forward(ctx, &s->a1, &s->mean1, &s->rstd1, x, &l->ln1_w, &l->ln1_b,
                              l->eps))
        goto out;
    ap_mha m;
    mha_of(l, &m);
    float *o = take(tmp, BN * C, "encoder attention output");
    if (!o) goto out;
    ap_tensor to = ap_t3(o, B, N, C);
    if (ap_mha_forward(ctx, tape, &m, &s->attn, &to, &s->a1, NULL)) goto out;
    float *h1 = take(keep, BN * C, "encoder residual h1");
    if (!h1) goto out;
    s->h1 = ap_t3(h1, B, N, C);
    if (ap_add_forward(ctx, &s->h1, x, &to)) goto out;
    float *a2 = take(tmp, BN * C, "encoder LN2 output"), *z = take(keep, BN * F, "encoder fc1 output"),
          *g = take(tmp, BN * F, "encoder activation output");
    if (!a2 || !z || !g) goto out;
    ap_tensor ta2 = ap_t3(a2, B, N, C), tg = ap_t3(g, B, N, F);
    s->z = ap_t3(z, B, N, F);
    if (ap_layer_norm_forward(ctx, &ta2, &s->mean2, &s->rstd2, &s->h1, &l->ln2_w, &l->ln2_b,
                              l->eps))
        goto out;
    if (ap_linear_forward(ctx, &s->z, &ta2, &l->fc1_w, &l->fc1_b)) goto out;
    if (act_forward(ctx, l, &tg, &s->z)) goto out;
    if (ap_linear_forward(ctx, out, &tg, &l->fc2_w, &l->fc2_b)) goto out;
    if (ap_axpy(ctx, out, 1.0f, &s->h1)) goto out;
    rc = AP_OK;
out:
    tmp->used = tmark;
    return rc;
}

int ap_enc_backward(ap_ctx *ctx, ap_tape *tape, const ap_enc_layer *l, const ap_enc_saved *s,
                    const ap_tensor *dx, const ap_tensor *dout) {
    const char *op = "encoder_backward";
    AP_TRY(ap_tape_check(op, &s->rec, tape, l));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same(op, "x", &s->x, "dout", dout));
    AP_TRY(ap_expect_same(op, "x", &s->x, "dx", dx));
    if (!s->z.data)
        return ap_fail("%s: the forward kept nothing for backward (run it with a tape)", op);
    if (dx->data == dout->data) return ap_fail("%s: dx must not alias dout", op);
    int64_t B = s->x.shape[0], N = s->x.shape[1], C = l->C, F = l->F, BN = B * N;
    size_t mark = tmp->used;
    int rc = AP_ERR;
    float *dg = take(tmp, BN * F, "encoder d(activation)"), *da2 = take(tmp, BN * C, "encoder dLN2"),
          *dh1 = take(tmp, BN * C, "encoder dh1"), *da1 = take(tmp, BN * C, "encoder dLN1");
    if (!dg || !da2 || !dh1 || !da1) goto out;
    ap_tensor tdg = ap_t3(dg, B, N, F), tda2 = ap_t3(da2, B, N, C), tdh1 = ap_t3(dh1, B, N, C),
              tda1 = ap_t3(da1, B, N, C);
    /* MLP branch: out = h1 + fc2(act(fc1(LN2(h1)))). The linear ops read
     * their forward input only for dW; its shape is that of din. */
    if (ap_linear_backward(ctx, &tdg, NULL, NULL, dout, &tdg, &l->fc2_w)) goto out;
    if (act_backward(ctx, l, &tdg, &tdg, &s->z)) goto out;
    if (ap_linear_backward(ctx, &tda2, NULL, NULL, &tdg, &tda2, &l->fc1_w)) goto out;
    if (ap_layer_norm_backward(ctx, &tdh1, NULL, NULL, &tda2, &s->h1, &s->mean2, &s->rstd2,
                               &l->ln2_w))
        goto out;
    if (ap_axpy(ctx, &tdh1, 1.0f, dout)) goto out;
    /* attention branch: h1 = x + attn(LN1(x)) */
    ap_mha m;
    mha_of(l, &m);
    if (ap_mha_backward(ctx, tape, &m, &s->attn, &tda1, NULL, &tdh1)) goto out;
    if (ap_layer_norm_backward(ctx, dx, NULL, NULL, &tda1, &s->x, &s->mean1, &s->rstd1,
                               &l->ln1_w))
        goto out;
    if (ap_axpy(ctx, dx, 1.0f, &tdh1)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}
