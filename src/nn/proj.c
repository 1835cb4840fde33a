/* proj.c: linear projection + LoRA branch, forward and backward. */
#include "proj.h"

#include "core/err.h"
#include "cpu/blas.h"

static int check(const char *op, const ap_proj *p, const ap_tensor *x, const ap_tensor *y,
                 int64_t *rows) {
    AP_TRY(ap_expect(op, "weight", &p->w, 2, (int64_t[]){-1, -1}));
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

size_t ap_proj_saved_floats(const ap_proj *p, int64_t rows) {
    return p->lora ? (size_t)(rows * p->lora->down.shape[0]) : 0;
}

int ap_proj_forward(ap_ctx *ctx, ap_arena *tape, ap_proj_saved *sv, const ap_proj *p,
                    const ap_tensor *out, const ap_tensor *x) {
    int64_t rows;
    AP_TRY(check("proj_forward", p, x, out, &rows));
    int O = (int)p->w.shape[0], I = (int)p->w.shape[1];
    float *y = out->data;
    if (ap_present(&p->b)) {
#pragma omp parallel for num_threads(ctx->n_threads) if (rows * O > 65536)
        for (int64_t r = 0; r < rows; r++)
            for (int o = 0; o < O; o++) y[r * O + o] = p->b.data[o];
    }
    /* (B, L, I): one GEMM per leading index (image, prompt), so its rows never
     * depend on the batch (2-D: one block) */
    int items = x->ndim >= 3 ? (int)x->shape[0] : 1, M = (int)(rows / items);
    ap_gemm_items(ctx, items, 1, M, O, I, 1.0f, x->data, I, p->w.data, I,
                  ap_present(&p->b) ? 1.0f : 0.0f, y, O);
    if (!p->lora) return AP_OK;
    int R = (int)p->lora->down.shape[0];
    size_t n = (size_t)rows * (size_t)R;
    float *u = tape ? ap_arena_floats(tape, n, "LoRA u = x·Aᵀ")
                    : ap_scratch(ctx, n * sizeof(float), "LoRA u = x·Aᵀ");
    if (!u) return AP_ERR;
    ap_gemm_items(ctx, items, 1, M, R, I, 1.0f, x->data, I, p->lora->down.data, I, 0.0f, u, R);
    ap_gemm_items(ctx, items, 1, M, O, R, p->lora->scale, u, R, p->lora->up.data, R, 1.0f, y,
                  O);
    if (sv) sv->u = ap_t2(u, rows, R);
    return AP_OK;
}

int ap_proj_backward(ap_ctx *ctx, const ap_proj *p, const ap_proj_saved *sv,
                     const ap_tensor *dx, int accumulate_dx, const ap_tensor *dout,
                     const ap_tensor *x) {
    int64_t rows;
    AP_TRY(check("proj_backward", p, x, dout, &rows));
    if (dx) AP_TRY(ap_expect_same("proj_backward", "x", x, "dx", dx));
    int O = (int)p->w.shape[0], I = (int)p->w.shape[1];
    if (dx)
        ap_gemm(ctx, 0, 0, (int)rows, I, O, 1.0f, dout->data, O, p->w.data, I,
                accumulate_dx ? 1.0f : 0.0f, dx->data, I);
    if (!p->lora) return AP_OK;
    const ap_lora *l = p->lora;
    int R = (int)l->down.shape[0];
    if (!sv || !sv->u.data || ap_numel(&sv->u) != rows * R)
        return ap_fail("proj_backward: the LoRA activation u (%lld x %d) was not saved by "
                       "the forward (pass a tape)", (long long)rows, R);
    /* gB = dout·B (rows, r): scratch. */
    float *gb = ap_scratch(ctx, (size_t)rows * (size_t)R * sizeof(float), "LoRA dout·B");
    if (!gb) return AP_ERR;
    ap_gemm(ctx, 0, 0, (int)rows, R, O, 1.0f, dout->data, O, l->up.data, R, 0.0f, gb, R);
    if (ap_present(&l->dup)) /* dB += s·doutᵀ·u */
        ap_gemm(ctx, 1, 0, O, R, (int)rows, l->scale, dout->data, O, sv->u.data, R, 1.0f,
                l->dup.data, R);
    if (ap_present(&l->ddown)) /* dA += s·gBᵀ·x */
        ap_gemm(ctx, 1, 0, R, I, (int)rows, l->scale, gb, R, x->data, I, 1.0f, l->ddown.data, I);
    if (dx) /* dx += s·gB·A */
        ap_gemm(ctx, 0, 0, (int)rows, I, R, l->scale, gb, R, l->down.data, I, 1.0f, dx->data, I);
    return AP_OK;
}
