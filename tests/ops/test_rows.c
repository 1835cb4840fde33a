/* test_rows.c: the row ops (ops/rows.h): views, copies and host transfers
 * bit for bit, row gather and its backward (central differences of the
 * forward; repeated rows summed), the sum of rows with and without
 * accumulation in its documented order, fills, the non-finite count and
 * the finite check's message, argument errors; the head ops (l2norm, row
 * dot, |x - target|) by central differences, broadcast add, affine and
 * divide bit for bit. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/rows.h"
#include "testutil.h"

typedef struct {
    ap_ctx *ctx;
    ap_tensor in, out;
    const int *idx;
    int m;
    const float *proj;
} gather_case;

static double gather_loss(void *p) {
    gather_case *c = p;
    ap_gather_rows(c->ctx, &c->out, &c->in, c->idx, c->m);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void test_gather(ap_ctx *ctx) {
    enum { N = 4, M = 5, R = 6 };
    static const int idx[M] = {2, 0, 2, 3, 2};
    float in[N * R], out[M * R], proj[M * R], din[N * R];
    tu_fill_normal(in, N * R, 51, 1);
    tu_fill_uniform(proj, M * R, 52, -1, 1);
    gather_case c = {ctx, ap_t3(in, N, 2, 3), ap_t3(out, M, 2, 3), idx, M, proj};
    int rc = ap_gather_rows(ctx, &c.out, &c.in, idx, M);
    int same = rc == 0;
    for (int j = 0; j < M && same; j++) same = !memcmp(out + j * R, in + idx[j] * R, sizeof(float) * R);
    tu_check(same, "gather_rows (5, 2, 3) from (4, 2, 3), idx {2, 0, 2, 3, 2}: rows copied bit for bit");
    ap_tensor tdin = ap_t3(din, N, 2, 3), tdout = ap_t3(proj, M, 2, 3);
    rc = ap_gather_rows_backward(ctx, &tdin, &tdout, idx, M);
    tu_check(rc == 0, "gather_rows_backward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    int zero = 1;
    for (int e = 0; e < R; e++) zero &= din[1 * R + e] == 0.0f;
    tu_check(zero, "gather_rows_backward: an unpicked row's gradient is 0");
    /* linear: central differences exact up to rounding, 1e-3 * max(1, max|ana|) */
    tu_gradcheck("gather_rows d(in) (row 2 picked three times)", gather_loss, &c, in, N * R, din,
                 1e-2, 1e-3, N * R);
}

static void test_sum_rows(ap_ctx *ctx) {
    enum { R = 3, E = 50 };
    float in[R * E], out[E], acc[E], want[E];
    tu_fill_normal(in, R * E, 61, 1);
    tu_fill_normal(acc, E, 62, 1);
    ap_tensor tin = ap_t2(in, R, E), to = ap_t2(out, 5, 10), ta = ap_t1(acc, E);
    int rc = ap_sum_rows(ctx, &to, &tin, 0);
    for (int e = 0; e < E; e++) want[e] = (in[e] + in[E + e]) + in[2 * E + e];
    tu_check(rc == 0 && !memcmp(out, want, sizeof want),
             "sum_rows (3, 50) -> (5, 10): (r0 + r1) + r2 bit for bit");
    for (int e = 0; e < E; e++) want[e] = acc[e] + ((in[e] + in[E + e]) + in[2 * E + e]);
    rc = ap_sum_rows(ctx, &ta, &tin, 1);
    tu_check(rc == 0 && !memcmp(acc, want, sizeof want),
             "sum_rows accumulate: out + ((r0 + r1) + r2) bit for bit (the chain's dx += dx_u + dx_c)");
}

static void test_moves(ap_ctx *ctx) {
    enum { N = 24 };
    float a[N], b[N], host[N];
    tu_fill_normal(a, N, 71, 1);
    a[3] = -0.0f;
    ap_tensor ta = ap_t3(a, 2, 3, 4), tb = ap_t3(b, 2, 3, 4);
    int rc = ap_copy(ctx, &tb, &ta);
    tu_check(rc == 0 && !memcmp(a, b, sizeof a), "copy (2, 3, 4): bit for bit (-0 kept)");
    rc = ap_tensor_read(ctx, host, &ta);
    tu_check(rc == 0 && !memcmp(a, host, sizeof a), "tensor_read: bit for bit");
    tu_fill_normal(host, N, 72, 1);
    rc = ap_tensor_write(ctx, &tb, host);
    tu_check(rc == 0 && !memcmp(b, host, sizeof b), "tensor_write: bit for bit");
    ap_tensor r = ap_rows(&ta, 1, 1), row = ap_row(&ta, 1);
    tu_check(r.data == a + 12 && r.ndim == 3 && r.shape[0] == 1 && r.shape[1] == 3,
             "rows(t, 1, 1) of (2, 3, 4): (1, 3, 4) at element 12");
    tu_check(row.data == a + 12 && row.ndim == 2 && row.shape[0] == 3 && row.shape[1] == 4,
             "row(t, 1) of (2, 3, 4): (3, 4) at element 12");
    tu_check(ap_rows(&ta, 1, 2).data == NULL, "rows past the end: no data");
    rc = ap_fill(ctx, &tb, 0.25f);
    int all = rc == 0;
    for (int i = 0; i < N; i++) all &= b[i] == 0.25f;
    tu_check(all, "fill 0.25 everywhere");
}

static void test_nonfinite(ap_ctx *ctx) {
    enum { N = 10000 };
    static float x[N];
    tu_fill_normal(x, N, 81, 1);
    float count = -1;
    ap_tensor tx = ap_t1(x, N), tc = ap_t1(&count, 1);
    int rc = ap_count_nonfinite(ctx, &tc, &tx);
    tu_check(rc == 0 && count == 0, "count_nonfinite of 10000 normals: 0 (got %g)", count);
    tu_check(ap_check_finite_tensor(ctx, &tx, "x") == 0, "check_finite_tensor passes finite values");
    x[17] = NAN, x[4096] = INFINITY, x[9999] = -INFINITY;
    rc = ap_count_nonfinite(ctx, &tc, &tx);
    tu_check(rc == 0 && count == 3, "count_nonfinite: NaN, +inf, -inf across blocks: 3 (got %g)",
             count);
    tu_expect_error("check_finite_tensor with a NaN", ap_check_finite_tensor(ctx, &tx, "latents"),
                    "latents", "non-finite", "index 17", "2 more", NULL);
}

static void test_errors(ap_ctx *ctx) {
    float buf[64];
    int idx[2] = {0, 3};
    ap_tensor in = ap_t2(buf, 3, 4), out = ap_t2(buf + 32, 2, 4), bad = ap_t2(buf + 32, 2, 5);
    tu_expect_error("gather index out of range", ap_gather_rows(ctx, &out, &in, idx, 2),
                    "gather_rows", "idx[1]", "0..2", "found 3", NULL);
    idx[1] = 1;
    tu_expect_error("gather trailing dims", ap_gather_rows(ctx, &bad, &in, idx, 2), "gather_rows",
                    "out", "(3, 4)", "(2, 5)", NULL);
    tu_expect_error("gather count", ap_gather_rows(ctx, &out, &in, idx, 1), "gather_rows", "idx",
                    "found 1", NULL);
    ap_tensor ov = ap_t2(buf + 4, 2, 4);
    tu_expect_error("gather overlap", ap_gather_rows(ctx, &ov, &in, idx, 2), "must not overlap", NULL);
    ap_tensor s = ap_t1(buf + 32, 5);
    tu_expect_error("sum_rows size", ap_sum_rows(ctx, &s, &in, 0), "sum_rows", "expected 4 elements",
                    NULL);
    ap_tensor c2 = ap_t1(buf + 40, 2);
    tu_expect_error("count_nonfinite out", ap_count_nonfinite(ctx, &c2, &in), "count_nonfinite", "out",
                    "(1)", NULL);
    ap_tensor cp = ap_t2(buf + 32, 4, 3);
    tu_expect_error("copy shapes", ap_copy(ctx, &cp, &in), "copy", "(3, 4)", "(4, 3)", NULL);
}

/* ---- head ops: l2norm, row dot, |x - target|, broadcast add, affine ---- */

enum { H_L2NORM, H_ROWDOT, H_ABSDIFF };

typedef struct {
    ap_ctx *ctx;
    int op;
    ap_tensor a, b, out, norm;
    float eps;
    const float *proj;
} head_case;

static int head_forward(head_case *c) {
    switch (c->op) {
    case H_L2NORM: return ap_l2norm_forward(c->ctx, &c->out, &c->norm, &c->a, c->eps);
    case H_ROWDOT: return ap_row_dot_forward(c->ctx, &c->out, &c->a, &c->b);
    default: return ap_abs_diff_forward(c->ctx, &c->out, &c->a, 0.3f);
    }
}

static double head_loss(void *p) {
    head_case *c = p;
    head_forward(c);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void gradcheck_head(ap_ctx *ctx, const char *what, int op, float eps) {
    enum { B = 3, D = 7 };
    float a[B * D], b[B * D], out[B * D], norm[B], proj[B * D], da[B * D], db[B * D];
    tu_fill_normal(a, B * D, 91, 1);
    tu_fill_normal(b, B * D, 92, 1);
    tu_fill_uniform(proj, B * D, 93, -1, 1);
    if (op == H_L2NORM && eps > 1) /* row 1 below eps: the clamped branch */
        for (int i = 0; i < D; i++) a[D + i] *= 0.05f;
    if (op == H_ABSDIFF) /* keep x away from the kink at 0.3 */
        for (int i = 0; i < B * D; i++)
            if (fabsf(a[i] - 0.3f) < 0.05f) a[i] += 0.2f;
    head_case c = {ctx, op, ap_t2(a, B, D), ap_t2(b, B, D),
                   op == H_ROWDOT ? ap_t1(out, B) : ap_t2(out, B, D), ap_t1(norm, B), eps, proj};
    int rc = head_forward(&c);
    ap_tensor tda = ap_t2(da, B, D), tdb = ap_t2(db, B, D), tu = c.out;
    ap_tensor tp = op == H_ROWDOT ? ap_t1(proj, B) : ap_t2(proj, B, D);
    if (op == H_L2NORM) rc |= ap_l2norm_backward(ctx, &tda, &tp, &tu, &c.norm, eps);
    else if (op == H_ROWDOT) rc |= ap_row_dot_backward(ctx, &tda, &tdb, &tp, &c.a, &c.b);
    else rc |= ap_abs_diff_backward(ctx, &tda, &tp, &c.a, 0.3f);
    tu_check(rc == 0, "%s forward and backward run%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    /* smooth (or linear) where sampled: central differences at eps 1e-3 in
     * float; 2e-3 * max(1, max|ana|) covers the fp32 rounding of the loss */
    char name[128];
    snprintf(name, sizeof name, "%s d(a)", what);
    tu_gradcheck(name, head_loss, &c, a, B * D, da, 1e-3, 2e-3, B * D);
    if (op == H_ROWDOT) {
        snprintf(name, sizeof name, "%s d(b)", what);
        tu_gradcheck(name, head_loss, &c, b, B * D, db, 1e-3, 2e-3, B * D);
    }
}

static void test_heads(ap_ctx *ctx) {
    gradcheck_head(ctx, "l2norm (3, 7), eps 0", H_L2NORM, 0.0f);
    gradcheck_head(ctx, "l2norm (3, 7), eps 1.5 (row 1 clamped)", H_L2NORM, 1.5f);
    gradcheck_head(ctx, "row_dot (3, 7)", H_ROWDOT, 0);
    gradcheck_head(ctx, "abs_diff |x - 0.3| (3, 7)", H_ABSDIFF, 0);
    enum { R = 3, E = 10 };
    float a[R * E], pos[E], out[R * E], want[R * E];
    tu_fill_normal(a, R * E, 94, 1);
    tu_fill_normal(pos, E, 95, 1);
    for (int k = 0; k < R; k++)
        for (int e = 0; e < E; e++) want[k * E + e] = a[k * E + e] + pos[e];
    ap_tensor ta = ap_t3(a, R, 2, 5), tpos = ap_t2(pos, 2, 5), to = ap_t3(out, R, 2, 5);
    int rc = ap_add_broadcast_rows(ctx, &to, &ta, &tpos);
    tu_check(rc == 0 && !memcmp(out, want, sizeof want),
             "add_broadcast_rows (3, 2, 5) + (2, 5): a + b bit for bit");
    ap_tensor tpos1 = ap_t3(pos, 1, 2, 5);
    rc = ap_add_broadcast_rows(ctx, &ta, &ta, &tpos1);
    tu_check(rc == 0 && !memcmp(a, want, sizeof want),
             "add_broadcast_rows in place with b (1, 2, 5): the same bits");
    for (int i = 0; i < R * E; i++) want[i] = 1.0f - a[i];
    rc = ap_affine_forward(ctx, &to, &ta, -1.0f, 1.0f);
    tu_check(rc == 0 && !memcmp(out, want, sizeof want), "affine -x + 1: exactly 1 - x");
    for (int i = 0; i < R * E; i++) want[i] = a[i] / 0.18215f;
    rc = ap_divide_forward(ctx, &to, &ta, 0.18215f);
    tu_check(rc == 0 && !memcmp(out, want, sizeof want),
             "divide x / 0.18215: a true division bit for bit (not x * (1 / s))");
    tu_expect_error("divide by 0", ap_divide_forward(ctx, &to, &ta, 0.0f), "divide_forward",
                    "non-zero", NULL);
    ap_tensor bad = ap_t2(pos, 5, 2);
    tu_expect_error("add_broadcast_rows shape", ap_add_broadcast_rows(ctx, &to, &ta, &bad),
                    "add_broadcast_rows", "b", "(3, 2, 5)", "(5, 2)", NULL);
    ap_tensor n2 = ap_t1(pos, 2), v = ap_t2(a, 3, 10);
    tu_expect_error("l2norm norm shape", ap_l2norm_forward(ctx, &v, &n2, &v, 0), "l2norm_forward",
                    "norm", "(3)", "(2)", NULL);
}

int main(void) {
    printf("test_rows: row gathers and sums, copies, host transfers, non-finite count\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 1);
    test_gather(&ctx);
    test_sum_rows(&ctx);
    test_moves(&ctx);
    test_nonfinite(&ctx);
    test_errors(&ctx);
    test_heads(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
