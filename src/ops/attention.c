/* attention.c: argument checks and dispatch of fused multi-head attention;
 * the CPU body (FlashAttention-2 style) is in cpu/attention.c. */
#include "attention.h"

#include "backend.h"
#include "core/err.h"

typedef struct {
    int64_t B, Lq, Lk, H, D, C; /* C = H * D = row stride of every tensor */
} attn_dims;

static int check_qkv(const char *op, attn_dims *d, const ap_tensor *q,
                     const ap_tensor *k, const ap_tensor *v, int n_heads, int causal) {
    char sq[160], sk[160];
    AP_TRY(ap_expect3(op, "q", q, -1, -1, -1));
    AP_TRY(ap_expect3(op, "k", k, -1, -1, -1));
    if (n_heads < 1) return ap_fail("%s: n_heads must be >= 1, found %d", op, n_heads);
    d->B = q->shape[0];
    d->Lq = q->shape[1];
    d->C = q->shape[2];
    d->Lk = k->shape[1];
    d->H = n_heads;
    if (d->C % n_heads != 0)
        return ap_fail("%s: q: %lld channels are not divisible by n_heads %d (q %s)",
                       op, (long long)d->C, n_heads, ap_shape_str(q, sq, sizeof sq));
    d->D = d->C / n_heads;
    if (k->shape[0] != d->B || k->shape[2] != d->C)
        return ap_fail("%s: k: expected shape (%lld, Lk, %lld) = (B, Lk, H*D) with "
                       "H=%d, D=%lld from q %s, found %s",
                       op, (long long)d->B, (long long)d->C, n_heads, (long long)d->D,
                       ap_shape_str(q, sq, sizeof sq), ap_shape_str(k, sk, sizeof sk));
    AP_TRY(ap_expect_same(op, "k", k, "v", v));
    if (causal && d->Lq != d->Lk)
        return ap_fail("%s: causal attention needs Lq == Lk, found q %s and k %s", op,
                       ap_shape_str(q, sq, sizeof sq), ap_shape_str(k, sk, sizeof sk));
    if (d->C > 2147483647 || d->Lq > 2147483647 || d->Lk > 2147483647)
        return ap_fail("%s: sizes exceed the int range of BLAS (q %s)", op,
                       ap_shape_str(q, sq, sizeof sq));
    return AP_OK;
}

int ap_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse,
                         const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                         int n_heads, float scale, int causal) {
    const char *op = "attention_forward";
    attn_dims d;
    AP_TRY(check_qkv(op, &d, q, k, v, n_heads, causal));
    AP_TRY(ap_expect_same(op, "q", q, "out", out));
    if (ap_present(lse)) AP_TRY(ap_expect3(op, "lse", lse, d.B, d.H, d.Lq));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "lse", lse, "q", q, "k", k, "v", v, NULL));
    return AP_DISPATCH(ctx, attention_forward, out, lse, q, k, v, n_heads, scale, causal);
}

int ap_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk,
                          const ap_tensor *dv, const ap_tensor *dout,
                          const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                          const ap_tensor *out, const ap_tensor *lse, int n_heads,
                          float scale, int causal) {
    const char *op = "attention_backward";
    attn_dims d;
    AP_TRY(check_qkv(op, &d, q, k, v, n_heads, causal));
    AP_TRY(ap_expect_same(op, "q", q, "out", out));
    AP_TRY(ap_expect_same(op, "q", q, "dout", dout));
    AP_TRY(ap_expect3(op, "lse", lse, d.B, d.H, d.Lq));
    if (ap_present(dq)) AP_TRY(ap_expect_same(op, "q", q, "dq", dq));
    if (ap_present(dk)) AP_TRY(ap_expect_same(op, "k", k, "dk", dk));
    if (ap_present(dv)) AP_TRY(ap_expect_same(op, "v", v, "dv", dv));
    AP_TRY(ap_expect_on(ctx, op, "dq", dq, "dk", dk, "dv", dv, "dout", dout, "q", q, "k", k,
                        "v", v, "out", out, "lse", lse, NULL));
    return AP_DISPATCH(ctx, attention_backward, dq, dk, dv, dout, q, k, v, out, lse, n_heads,
                       scale, causal);
}
