/* mha.c: attention module = 4 projections (with optional LoRA) around the
 * fused attention op. */
#include "mha.h"

#include "core/err.h"
#include "ops/attention.h"

static int64_t width(const ap_proj *p) { return p->w.shape[0]; }

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

int ap_mha_forward(ap_ctx *ctx, ap_tape *tape, const ap_mha *m, ap_mha_saved *sv,
                   const ap_tensor *out, const ap_tensor *x, const ap_tensor *src) {
    AP_TRY(ap_expect("mha_forward", "x", x, 3, (int64_t[]){-1, -1, -1}));
    if (!src) src = x;
    AP_TRY(ap_expect("mha_forward", "src", src, 3, (int64_t[]){x->shape[0], -1, -1}));
    int64_t B = x->shape[0], N = x->shape[1], M = src->shape[1], C = width(&m->q);
    AP_TRY(ap_expect3("mha_forward", "out", out, B, N, C));
    if (m->heads <= 0 || C % m->heads)
        return ap_fail("mha_forward: heads: expected a divisor of %lld, found %d", (long long)C,
                       m->heads);
    ap_arena *a = tape ? tape->mem : ap_ctx_tmp(ctx, "mha_forward");
    if (!a) return AP_ERR;
    size_t mark = a->used;
    ap_mha_saved local, *s = sv ? sv : &local;
    ap_tape_record(&s->rec, tape, m->q.w.data); /* identity: its weights (encoders rebuild the struct per call) */
    s->x = *x;
    s->src = *src;
    float *q = take(a, B * N * C, "attention Q"), *k = take(a, B * M * C, "attention K"),
          *v = take(a, B * M * C, "attention V"), *att = take(a, B * N * C, "attention O"),
          *lse = take(a, B * m->heads * N, "attention log-sum-exp");
    if (!q || !k || !v || !att || !lse) return AP_ERR;
    s->q = ap_t3(q, B, N, C);
    s->k = ap_t3(k, B, M, C);
    s->v = ap_t3(v, B, M, C);
    s->att = ap_t3(att, B, N, C);
    s->lse = ap_t3(lse, B, m->heads, N);
    AP_TRY(ap_proj_forward(ctx, tape, &m->q, &s->sq, &s->q, x));
    AP_TRY(ap_proj_forward(ctx, tape, &m->k, &s->sk, &s->k, src));
    AP_TRY(ap_proj_forward(ctx, tape, &m->v, &s->sv, &s->v, src));
    AP_TRY(ap_attention_forward(ctx, &s->att, &s->lse, &s->q, &s->k, &s->v, m->heads, m->scale,
                                m->causal));
    AP_TRY(ap_proj_forward(ctx, tape, &m->o, &s->so, out, &s->att));
    if (!tape) a->used = mark; /* inference: nothing kept */
    return AP_OK;
}

int ap_mha_backward(ap_ctx *ctx, ap_tape *tape, const ap_mha *m, const ap_mha_saved *s,
                    const ap_tensor *dx, const ap_tensor *dsrc, const ap_tensor *dout) {
    AP_TRY(ap_tape_check("mha_backward", &s->rec, tape, m->q.w.data));
    ap_arena *tmp = ap_ctx_tmp(ctx, "mha_backward");
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect_same("mha_backward", "out", &s->att, "dout", dout));
    AP_TRY(ap_expect_same("mha_backward", "x", &s->x, "dx", dx));
    int self = s->src.data == s->x.data;
    if (dsrc && !self) AP_TRY(ap_expect_same("mha_backward", "src", &s->src, "dsrc", dsrc));
    int64_t B = s->q.shape[0], N = s->q.shape[1], M = s->k.shape[1], C = s->q.shape[2];
    size_t mark = tmp->used;
    float *datt = take(tmp, B * N * C, "attention dO"), *dq = take(tmp, B * N * C, "attention dQ"),
          *dk = take(tmp, B * M * C, "attention dK"), *dv = take(tmp, B * M * C, "attention dV");
    if (!datt || !dq || !dk || !dv) return AP_ERR;
    ap_tensor tdatt = ap_t3(datt, B, N, C), tdq = ap_t3(dq, B, N, C), tdk = ap_t3(dk, B, M, C),
              tdv = ap_t3(dv, B, M, C);
    int rc = AP_ERR;
    if (ap_proj_backward(ctx, tape, &m->o, &s->so, &tdatt, 0, dout, &s->att)) goto out;
    if (ap_attention_backward(ctx, &tdq, &tdk, &tdv, &tdatt, &s->q, &s->k, &s->v, &s->att,
                              &s->lse, m->heads, m->scale, m->causal))
        goto out;
    if (ap_proj_backward(ctx, tape, &m->q, &s->sq, dx, 0, &tdq, &s->x)) goto out;
    /* K and V: their input is x (self) or src (cross; dsrc may be unwanted,
     * but LoRA grads of k and v are still needed). */
    const ap_tensor *dkv = self ? dx : dsrc;
    if (ap_proj_backward(ctx, tape, &m->k, &s->sk, dkv, self, &tdk, &s->src)) goto out;
    if (ap_proj_backward(ctx, tape, &m->v, &s->sv, dkv, 1, &tdv, &s->src)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}
