/* proj.c: linear projection + LoRA branch, forward and backward, on the
 * linear and matmul ops (no raw GEMM here). */
#include "proj.h"

#include "core/err.h"
#include "ops/backend.h" /* AP_WEIGHT_DTYPES */
#include "ops/linear.h"
#include "ops/matmul.h"

static int check(const char *op, const ap_proj *p, const ap_tensor *x, const ap_tensor *y,
                 int64_t *rows) {
    /* frozen: f32, or bf16 / f16 under mixed precision (the ops widen it) */
    AP_TRY(ap_expect_dt(op, "weight", &p->w, AP_WEIGHT_DTYPES, 2, (int64_t[]){-1, -1}));
    int64_t out = p->w.shape[0], in = p->w.shape[1];
    if (!x || !x->data || x->ndim < 1 || x->shape[x->ndim - 1] != in) {
        char s[160];
        return ap_fail("%s: x: expected last dim %lld (weight is (%lld, %lld)), found %s", op,
                       (long long)in, (long long)out, (long long)in,
                       x && x->data ? ap_shape_str(x, s, sizeof s) : "none");
    }
    *rows = ap_numel(x) / in;
    if (!y || !y->data || y->ndim != x->ndim || y->shape[y->ndim - 1] != out ||
        ap_numel(y) != *rows * out) {
        char s[160], t[160];
        return ap_fail("%s: out: expected the leading dims of x %s with last dim %lld, found %s",
                       op, ap_shape_str(x, t, sizeof t), (long long)out,
                       y && y->data ? ap_shape_str(y, s, sizeof s) : "none");
    }
    if (ap_present(&p->b)) AP_TRY(ap_expect1(op, "bias", &p->b, out));
    if (p->lora) {
        AP_TRY(ap_expect(op, "lora.down", &p->lora->down, 2, (int64_t[]){-1, in}));
        int64_t r = p->lora->down.shape[0];
        AP_TRY(ap_expect2(op, "lora.up", &p->lora->up, out, r));
    }
    return AP_OK;
}

/* t's leading dims with last dim n, over data (a view for a matmul's output). */
static ap_tensor with_last(float *data, const ap_tensor *t, int64_t n) {
    ap_tensor v = ap_tn(data, t->ndim, t->shape);
    v.shape[v.ndim - 1] = n;
    return v;
}

int ap_proj_forward(ap_ctx *ctx, ap_tape *tape, const ap_proj *p, ap_proj_saved *sv,
                    const ap_tensor *out, const ap_tensor *x) {
    int64_t rows;
    AP_TRY(check("proj_forward", p, x, out, &rows));
    if (sv) ap_tape_record(&sv->rec, tape, p->w.data); /* identity: its weights */
    /* y = b + x·Wᵀ with one GEMM per leading index (image, prompt), so its
     * rows never depend on the batch (2-D: one block) */
    AP_TRY(ap_linear_forward(ctx, out, x, &p->w, ap_present(&p->b) ? &p->b : NULL));
    if (!p->lora) return AP_OK;
    int64_t R = p->lora->down.shape[0];
    size_t n = (size_t)rows * (size_t)R;
    /* u on the tape, or (inference) in ctx->tmp until return */
    ap_arena *keep = tape ? tape->mem : ap_ctx_tmp(ctx, "proj_forward");
    if (!keep) return AP_ERR;
    size_t mark = keep->used;
    float *u = ap_arena_floats(keep, n, "LoRA u = x·Aᵀ");
    if (!u) return AP_ERR;
    ap_tensor tu = with_last(u, x, R);
    int rc = ap_matmul_items(ctx, &tu, x, &p->lora->down, 1, 1.0f, 0.0f);
    if (!rc) rc = ap_matmul_items(ctx, out, &tu, &p->lora->up, 1, p->lora->scale, 1.0f);
    if (sv) sv->u = tape ? ap_t2(u, rows, R) : (ap_tensor){0};
    if (!tape) keep->used = mark;
    return rc;
}

int ap_proj_backward(ap_ctx *ctx, ap_tape *tape, const ap_proj *p, const ap_proj_saved *sv,
                     const ap_tensor *dx, int accumulate_dx, const ap_tensor *dout,
                     const ap_tensor *x) {
    int64_t rows;
    if (p->lora && sv) AP_TRY(ap_tape_check("proj_backward", &sv->rec, tape, p->w.data));
    AP_TRY(check("proj_backward", p, x, dout, &rows));
    if (dx) AP_TRY(ap_expect_same("proj_backward", "x", x, "dx", dx));
    if (dx) /* dx (=|+=) dout·W */
        AP_TRY(ap_matmul(ctx, dx, dout, &p->w, 0, 0, 1.0f, accumulate_dx ? 1.0f : 0.0f));
    if (!p->lora) return AP_OK;
    const ap_lora *l = p->lora;
    int64_t R = l->down.shape[0];
    if (!sv || !sv->u.data || ap_numel(&sv->u) != rows * R)
        return ap_fail("proj_backward: the LoRA activation u (%lld x %lld) was not saved by "
                       "the forward (pass a tape)", (long long)rows, (long long)R);
    /* gB = dout·B (rows, r): scratch. */
    float *gb = ap_scratch(ctx, (size_t)rows * (size_t)R * sizeof(float), "LoRA dout·B");
    if (!gb) return AP_ERR;
    ap_tensor tgb = ap_t2(gb, rows, R);
    AP_TRY(ap_matmul(ctx, &tgb, dout, &l->up, 0, 0, 1.0f, 0.0f));
    if (ap_present(&l->dup)) /* dB += s·doutᵀ·u */
        AP_TRY(ap_matmul(ctx, &l->dup, dout, &sv->u, 1, 0, l->scale, 1.0f));
    if (ap_present(&l->ddown)) /* dA += s·gBᵀ·x */
        AP_TRY(ap_matmul(ctx, &l->ddown, &tgb, x, 1, 0, l->scale, 1.0f));
    if (dx) /* dx += s·gB·A */
        AP_TRY(ap_matmul(ctx, dx, &tgb, &l->down, 0, 0, l->scale, 1.0f));
    return AP_OK;
}
