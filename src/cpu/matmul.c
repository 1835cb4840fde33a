/* cpu/matmul.c: the tensor matmuls on ap_gemm / ap_gemm_items (CPU bodies
 * of ops/matmul.h). Every tensor is a contiguous matrix (leading dims
 * collapsed, last dim), so each leading dimension is the last dim. */
#include "cpu/matmul.h"

#include "core/err.h"
#include "cpu/blas.h"

static int last(const ap_tensor *t) { return (int)t->shape[t->ndim - 1]; }
static int rows(const ap_tensor *t) { return (int)(ap_numel(t) / t->shape[t->ndim - 1]); }

int ap_cpu_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
                  int ta, int tb, float alpha, float beta) {
    int M = rows(out), N = last(out), K = ta ? rows(a) : last(a);
    return ap_gemm_w(ctx, ta, tb, M, N, K, alpha, a->data, last(a), b->data, b->dtype, last(b),
                     beta, out->data, N);
}

size_t ap_cpu_matmul_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                             const ap_tensor *b, int ta, int tb, float alpha, float beta) {
    return ap_gemm_w_scratch(ctx, tb, rows(out), last(out), ta ? rows(a) : last(a), b->dtype,
                             last(b), beta);
}

int ap_cpu_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                        const ap_tensor *b, int tb, float alpha, float beta) {
    int items = a->ndim >= 3 ? (int)a->shape[0] : 1;
    int M = rows(a) / items, N = last(out), K = last(a);
    return ap_gemm_items_w(ctx, items, tb, M, N, K, alpha, a->data, K, b->data, b->dtype, last(b),
                           beta, out->data, N);
}

size_t ap_cpu_matmul_items_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                   const ap_tensor *b, int tb, float alpha, float beta) {
    int items = a->ndim >= 3 ? (int)a->shape[0] : 1;
    return ap_gemm_w_scratch(ctx, tb, rows(a) / items, last(out), last(a), b->dtype, last(b),
                             beta);
}
