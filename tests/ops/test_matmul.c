/* test_matmul.c: the tensor matmuls (ops/matmul.h) against a double
 * reference for every transpose combination, beta 0 and 1, leading dims
 * collapsed; the per-item product: an item's rows bit for bit equal to the
 * item alone; shape and aliasing errors. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/matmul.h"
#include "testutil.h"

/* want (M, N) = alpha op(a) op(b) + beta want, in double; a, b contiguous. */
static void reference(float *want, const float *a, const float *b, int ta, int tb, int M,
                      int N, int K, float alpha, float beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double x = ta ? a[k * M + i] : a[i * K + k];
                double y = tb ? b[j * K + k] : b[k * N + j];
                s += x * y;
            }
            want[i * N + j] = (float)(alpha * s + beta * (double)want[i * N + j]);
        }
}

static void check_matmul(ap_ctx *ctx, int ta, int tb, float beta) {
    const int M = 12, N = 20, K = 18; /* a (3, 4, K) when not transposed */
    float *a = tu_alloc(M * K), *b = tu_alloc(K * N), *out = tu_alloc(M * N),
          *want = tu_alloc(M * N);
    tu_fill_uniform(a, M * K, 1, -1, 1);
    tu_fill_uniform(b, K * N, 2, -1, 1);
    tu_fill_uniform(out, M * N, 3, -1, 1);
    for (int i = 0; i < M * N; i++) want[i] = out[i];
    ap_tensor ta_ = ta ? ap_t2(a, K, M) : ap_t3(a, 3, 4, K);
    ap_tensor tb_ = tb ? ap_t2(b, N, K) : ap_t2(b, K, N);
    ap_tensor to = ap_t3(out, 3, 4, N);
    int rc = ap_matmul(ctx, &to, &ta_, &tb_, ta, tb, 0.5f, beta);
    reference(want, a, b, ta, tb, M, N, K, 0.5f, beta);
    char what[96];
    snprintf(what, sizeof what, "matmul ta %d tb %d beta %g vs double reference", ta, tb, beta);
    tu_check(rc == 0, "%s runs%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    /* K = 18 products of |x| <= 1 in fp32: 1e-5 abs covers the rounding */
    tu_compare(what, out, want, M * N, 1e-5, 1e-5);
    free(a), free(b), free(out), free(want);
}

static void check_items(ap_ctx *ctx) {
    const int I = 3, M = 7, N = 33, K = 40;
    float *a = tu_alloc(I * M * K), *b = tu_alloc(N * K), *out = tu_alloc(I * M * N),
          *one = tu_alloc(M * N), *want = tu_alloc(I * M * N);
    tu_fill_uniform(a, I * M * K, 4, -1, 1);
    tu_fill_uniform(b, N * K, 5, -1, 1);
    tu_fill_uniform(out, I * M * N, 6, -1, 1);
    for (int i = 0; i < I * M * N; i++) want[i] = out[i];
    for (int i = 0; i < M * N; i++) one[i] = out[M * N + i];
    ap_tensor tx = ap_t3(a, I, M, K), tw = ap_t2(b, N, K), to = ap_t3(out, I, M, N);
    int rc = ap_matmul_items(ctx, &to, &tx, &tw, 1, 1.0f, 1.0f);
    tu_check(rc == 0, "matmul_items (3, 7, 40) . (33, 40)^T runs%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    reference(want, a, b, 0, 1, I * M, N, K, 1.0f, 1.0f);
    tu_compare("matmul_items beta 1 vs double reference", out, want, I * M * N, 1e-5, 1e-5);
    ap_tensor x1 = ap_t3(a + M * K, 1, M, K), o1 = ap_t3(one, 1, M, N);
    rc = ap_matmul_items(ctx, &o1, &x1, &tw, 1, 1.0f, 1.0f);
    int same = rc == 0;
    for (int i = 0; i < M * N && same; i++) same = one[i] == out[M * N + i];
    tu_check(same, "matmul_items: item 1 of 3 equals item 1 alone bit for bit (tolerance 0)");
    free(a), free(b), free(out), free(one), free(want);
}

static void check_errors(ap_ctx *ctx) {
    float buf[64];
    ap_tensor a = ap_t2(buf, 2, 3), b = ap_t2(buf, 4, 5), o = ap_t2(buf, 2, 5);
    tu_expect_error("matmul K mismatch", ap_matmul(ctx, &o, &a, &b, 0, 0, 1, 0), "matmul",
                    "K of op(b)", "expected 3, found 4", NULL);
    ap_tensor b2 = ap_t2(buf, 3, 5), o2 = ap_t2(buf + 16, 3, 5);
    tu_expect_error("matmul out rows", ap_matmul(ctx, &o2, &a, &b2, 0, 0, 1, 0), "matmul",
                    "rows of out", "expected 2, found 3", NULL);
    ap_tensor o3 = ap_t2(buf + 16, 2, 5);
    ap_tensor sq = ap_t2(buf + 48, 3, 3);
    tu_expect_error("matmul out aliases a", ap_matmul(ctx, &a, &a, &sq, 0, 0, 1, 0),
                    "must not alias a", NULL);
    tu_expect_error("matmul missing b", ap_matmul(ctx, &o3, &a, NULL, 0, 0, 1, 0), "matmul",
                    "b", "found none", NULL);
    ap_tensor x = ap_t3(buf, 2, 2, 3), w = ap_t2(buf + 16, 4, 3), y = ap_t3(buf + 32, 2, 3, 4);
    tu_expect_error("matmul_items out shape", ap_matmul_items(ctx, &y, &x, &w, 1, 1, 0),
                    "matmul_items", "out", "expected shape (2, 2, 4) f32", "found (2, 3, 4)", NULL);
}

int main(void) {
    printf("test_matmul: tensor matmuls on ap_gemm / ap_gemm_items\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 2);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int beta = 0; beta < 2; beta++) check_matmul(&ctx, ta, tb, (float)beta);
    check_items(&ctx);
    check_errors(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
