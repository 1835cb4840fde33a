/* matmul.c: argument checks of the tensor matmuls (matmul.h); the bodies
 * are in cpu/matmul.c.
 *
 * Accumulation rule: as the caller asks through beta (= with 0, += with 1).
 * b may be a frozen weight in bf16 / f16 (AP_WEIGHT_DTYPES): the backend
 * widens it on the fly.
 */
#include "ops/matmul.h"

#include <limits.h>

#include "core/err.h"
#include "backend.h"

/* Present, at least 1-D, of a dtype in dtypes and small enough for 32-bit
 * GEMM indexing. */
static int matrix(const char *op, const char *arg, const ap_tensor *t, unsigned dtypes,
                  int64_t *r, int64_t *c) {
    static const int64_t any[AP_MAX_DIMS] = {-1, -1, -1, -1, -1, -1};
    if (!t || !t->data)
        return ap_fail("%s: %s: expected a tensor of shape (..., K), found none", op, arg);
    AP_TRY(ap_expect_dt(op, arg, t, dtypes, t->ndim < 1 ? 1 : t->ndim, any));
    *c = t->shape[t->ndim - 1];
    *r = ap_numel(t) / *c;
    if (ap_numel(t) > INT_MAX)
        return ap_fail("%s: %s: expected at most %d elements (32-bit GEMM indexing), found %lld",
                       op, arg, INT_MAX, (long long)ap_numel(t));
    return AP_OK;
}

static int mismatch(const char *op, const char *what, int64_t want, int64_t found,
                    const ap_tensor *out, const ap_tensor *a, const ap_tensor *b) {
    char so[160], sa[160], sb[160];
    return ap_fail("%s: %s: expected %lld, found %lld (out %s, a %s, b %s)", op, what,
                   (long long)want, (long long)found, ap_shape_str(out, so, sizeof so),
                   ap_shape_str(a, sa, sizeof sa), ap_shape_str(b, sb, sizeof sb));
}

static int no_alias(const char *op, const ap_tensor *out, const ap_tensor *a,
                    const ap_tensor *b) {
    if (out->data == a->data) return ap_fail("%s: out: must not alias a", op);
    if (out->data == b->data) return ap_fail("%s: out: must not alias b", op);
    return AP_OK;
}

int ap_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
              int ta, int tb, float alpha, float beta) {
    const char *op = "matmul";
    int64_t ar, ac, br, bc, orow, ocol;
    AP_TRY(matrix(op, "a", a, 1u << AP_F32, &ar, &ac));
    AP_TRY(matrix(op, "b", b, AP_WEIGHT_DTYPES, &br, &bc));
    AP_TRY(matrix(op, "out", out, 1u << AP_F32, &orow, &ocol));
    int64_t M = ta ? ac : ar, K = ta ? ar : ac, Kb = tb ? bc : br, N = tb ? br : bc;
    if (K != Kb) return mismatch(op, "K of op(b) (K, N) = K of op(a) (M, K)", K, Kb, out, a, b);
    if (orow != M) return mismatch(op, "rows of out = M of op(a) (M, K)", M, orow, out, a, b);
    if (ocol != N) return mismatch(op, "last dim of out = N of op(b) (K, N)", N, ocol, out, a, b);
    AP_TRY(no_alias(op, out, a, b));
    AP_TRY(ap_expect_on(ctx, "matmul", "out", out, "a", a, NULL));
    AP_TRY(ap_expect_weight_on(ctx, "matmul", b, NULL));
    return AP_DISPATCH(ctx, matmul, out, a, b, ta, tb, alpha, beta);
}

int ap_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
                    int tb, float alpha, float beta) {
    const char *op = "matmul_items";
    int64_t ar, K, br, bc, orow, ocol;
    AP_TRY(matrix(op, "a", a, 1u << AP_F32, &ar, &K));
    AP_TRY(matrix(op, "b", b, AP_WEIGHT_DTYPES, &br, &bc));
    AP_TRY(matrix(op, "out", out, 1u << AP_F32, &orow, &ocol));
    int64_t Kb = tb ? bc : br, N = tb ? br : bc;
    if (K != Kb) return mismatch(op, "K of op(b) (K, N) = last dim of a", K, Kb, out, a, b);
    int64_t want[AP_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) want[i] = a->shape[i];
    want[a->ndim - 1] = N;
    AP_TRY(ap_expect(op, "out", out, a->ndim, want));
    AP_TRY(no_alias(op, out, a, b));
    AP_TRY(ap_expect_on(ctx, "matmul_items", "out", out, "a", a, NULL));
    AP_TRY(ap_expect_weight_on(ctx, "matmul_items", b, NULL));
    return AP_DISPATCH(ctx, matmul_items, out, a, b, tb, alpha, beta);
}
