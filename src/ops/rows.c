/* rows.c: argument checks of the row ops (rows.h) and the finite check
 * built on them; the bodies are in cpu/rows.c.
 *
 * Accumulation rule: activation grads = (ap_sum_rows += when asked).
 */
#include "ops/rows.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/finite.h"
#include "backend.h"

static int need(const char *op, const char *arg, const ap_tensor *t) {
    if (ap_present(t) && t->ndim >= 1) return AP_OK;
    return ap_fail("%s: %s: expected a tensor, found none", op, arg);
}

/* b has a's trailing dims (any first dim). */
static int same_rows(const char *op, const char *arg_a, const ap_tensor *a, const char *arg_b,
                     const ap_tensor *b) {
    AP_TRY(need(op, arg_a, a));
    AP_TRY(need(op, arg_b, b));
    int ok = a->ndim == b->ndim;
    for (int i = 1; ok && i < a->ndim; i++) ok = a->shape[i] == b->shape[i];
    if (ok) return AP_OK;
    char sa[160], sb[160];
    return ap_fail("%s: %s: expected the trailing dims of %s %s, found %s", op, arg_b, arg_a,
                   ap_shape_str(a, sa, sizeof sa), ap_shape_str(b, sb, sizeof sb));
}

static int check_idx(const char *op, const int *idx, int m, int64_t N, int64_t rows_out) {
    if (m < 1 || !idx) return ap_fail("%s: idx: expected at least one row index, found none", op);
    if (m != rows_out)
        return ap_fail("%s: idx: expected as many indices as rows of the gathered tensor (%lld), "
                       "found %d", op, (long long)rows_out, m);
    for (int j = 0; j < m; j++)
        if (idx[j] < 0 || idx[j] >= N)
            return ap_fail("%s: idx[%d]: expected a row index in 0..%lld, found %d", op, j,
                           (long long)N - 1, idx[j]);
    return AP_OK;
}

ap_tensor ap_rows(const ap_tensor *t, int64_t r0, int64_t n) {
    ap_tensor v = *t;
    if (t->ndim < 1) {
        v.data = NULL;
        return v;
    }
    int ok = t->data && r0 >= 0 && n >= 1 && r0 + n <= t->shape[0];
    /* in bytes: the rows of a bf16 / f16 weight are 2-byte elements */
    v.data = ok ? (float *)((char *)t->data + (size_t)(r0 * (ap_numel(t) / t->shape[0])) *
                                                  ap_dtype_size(t->dtype))
                : NULL;
    v.shape[0] = n;
    return v;
}

ap_tensor ap_row(const ap_tensor *t, int64_t i) {
    ap_tensor v = ap_rows(t, i, 1);
    if (v.ndim > 1) {
        for (int d = 1; d < v.ndim; d++) v.shape[d - 1] = v.shape[d];
        v.ndim--;
    }
    return v;
}

ap_tensor ap_reshape(const ap_tensor *t, int ndim, const int64_t *shape) {
    ap_tensor v = ap_tensor_of(t->data, t->dtype, t->device, ndim, shape);
    if (ndim < 1 || ndim > AP_MAX_DIMS || !t->data || ap_numel(&v) != ap_numel(t)) v.data = NULL;
    return v;
}

static int on_host_or_ctx(const ap_ctx *ctx, const char *arg, const ap_tensor *t) {
    if (t->device == AP_CPU || t->device == ctx->device) return AP_OK;
    char s[200];
    return ap_fail("copy: %s: expected a tensor on cpu or %s, found %s", arg,
                   ap_device_name(ctx->device), ap_tensor_str(t, s, sizeof s));
}

int ap_copy(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_TRY(need("copy", "in", in));
    AP_TRY(need("copy", "out", out));
    int same = out->ndim == in->ndim;
    for (int i = 0; same && i < out->ndim; i++) same = out->shape[i] == in->shape[i];
    if (!same) {
        char a[200], b[200];
        return ap_fail("copy: out is %s but in is %s (expected the same shape)",
                       ap_tensor_str(out, a, sizeof a), ap_tensor_str(in, b, sizeof b));
    }
    AP_TRY(on_host_or_ctx(ctx, "out", out));
    AP_TRY(on_host_or_ctx(ctx, "in", in));
    if (out->data == in->data && out->dtype != in->dtype)
        return ap_fail("copy: out and in share a buffer but differ in dtype");
    return AP_DISPATCH(ctx, copy, out, in);
}

int ap_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t) {
    AP_TRY(need("tensor_read", "t", t));
    if (!host) return ap_fail("tensor_read: host: expected a host buffer, found none");
    AP_TRY(ap_expect_on(ctx, "tensor_read", "t", t, NULL));
    if (ctx->dry_run) { /* nothing was computed: the host sees zeros (finite) */
        memset(host, 0, (size_t)ap_numel(t) * sizeof(float));
        return AP_OK;
    }
    return AP_DISPATCH(ctx, tensor_read, host, t);
}

int ap_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host) {
    AP_TRY(need("tensor_write", "t", t));
    if (!host) return ap_fail("tensor_write: host: expected host values, found none");
    AP_TRY(ap_expect_on(ctx, "tensor_write", "t", t, NULL));
    return AP_DISPATCH(ctx, tensor_write, t, host);
}

int ap_fill(ap_ctx *ctx, const ap_tensor *out, float value) {
    AP_TRY(need("fill", "out", out));
    if (out->device != ctx->device) {
        char s[200];
        return ap_fail("fill: out: expected a tensor on %s, found %s", ap_device_name(ctx->device),
                       ap_tensor_str(out, s, sizeof s));
    }
    return AP_DISPATCH(ctx, fill, out, value);
}

int ap_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx,
                   int m) {
    const char *op = "gather_rows";
    AP_TRY(same_rows(op, "in", in, "out", out));
    AP_TRY(check_idx(op, idx, m, in->shape[0], out->shape[0]));
    const float *a = in->data, *ae = a + ap_numel(in), *o = out->data, *oe = o + ap_numel(out);
    if (o < ae && a < oe) return ap_fail("%s: out: must not overlap in", op);
    AP_TRY(ap_expect_on(ctx, "gather_rows", "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, gather_rows, out, in, idx, m);
}

int ap_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                            const int *idx, int m) {
    const char *op = "gather_rows_backward";
    AP_TRY(same_rows(op, "dout", dout, "din", din));
    AP_TRY(check_idx(op, idx, m, din->shape[0], dout->shape[0]));
    const float *a = dout->data, *ae = a + ap_numel(dout), *o = din->data,
                *oe = o + ap_numel(din);
    if (o < ae && a < oe) return ap_fail("%s: din: must not overlap dout", op);
    AP_TRY(ap_expect_on(ctx, "gather_rows_backward", "din", din, "dout", dout, NULL));
    return AP_DISPATCH(ctx, gather_rows_backward, din, dout, idx, m);
}

int ap_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate) {
    const char *op = "sum_rows";
    AP_TRY(need(op, "in", in));
    AP_TRY(need(op, "out", out));
    int64_t r = ap_numel(in) / in->shape[0];
    if (ap_numel(out) != r) {
        char si[160], so[160];
        return ap_fail("%s: out: expected %lld elements (one row of in %s), found %s (%lld)", op,
                       (long long)r, ap_shape_str(in, si, sizeof si),
                       ap_shape_str(out, so, sizeof so), (long long)ap_numel(out));
    }
    const float *a = in->data, *ae = a + ap_numel(in), *o = out->data, *oe = o + r;
    if (o < ae && a < oe) return ap_fail("%s: out: must not overlap in", op);
    AP_TRY(ap_expect_on(ctx, "sum_rows", "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, sum_rows, out, in, accumulate);
}

int ap_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_TRY(need("count_nonfinite", "in", in));
    AP_TRY(ap_expect1("count_nonfinite", "out", out, 1));
    AP_TRY(ap_expect_on(ctx, "count_nonfinite", "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, count_nonfinite, out, in);
}

int ap_check_finite_tensor(ap_ctx *ctx, const ap_tensor *t, const char *what) {
    float count = 0;
    ap_tensor tc = ap_t1(&count, 1); /* on a device: a one-float device buffer */
    AP_TRY(ap_count_nonfinite(ctx, &tc, t));
    float seen = 0;
    AP_TRY(ap_tensor_read(ctx, &seen, &tc));
    if (seen == 0) return AP_OK;
    /* failure path only: bring the values over to say which and where */
    int64_t n = ap_numel(t);
    float *h = ap_malloc((size_t)n * sizeof(float), "non-finite report");
    if (!h) return AP_ERR;
    int rc = ap_tensor_read(ctx, h, t);
    if (!rc) rc = ap_check_finite(h, n, what);
    free(h);
    return rc ? rc : ap_fail("%s: %g non-finite values counted, none found on reading", what,
                             (double)seen);
}

/* ---- per-row arithmetic of the model heads -------------------------------- */

int ap_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                          const ap_tensor *b) {
    const char *op = "add_broadcast_rows";
    AP_TRY(ap_expect_same(op, "a", a, "out", out));
    AP_TRY(need(op, "b", b));
    int64_t r = ap_numel(a) / a->shape[0];
    int ok = ap_numel(b) == r && (b->ndim == a->ndim - 1 || b->ndim == a->ndim);
    for (int i = 1; ok && i < a->ndim; i++)
        ok = b->shape[b->ndim - a->ndim + i] == a->shape[i];
    if (b->ndim == a->ndim && b->shape[0] != 1) ok = 0;
    if (!ok) {
        char sa[160], sb[160];
        return ap_fail("%s: b: expected the trailing dims of a %s (optionally with a leading 1), "
                       "found %s", op, ap_shape_str(a, sa, sizeof sa), ap_shape_str(b, sb, sizeof sb));
    }
    AP_TRY(ap_expect_on(ctx, "add_broadcast_rows", "out", out, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, add_broadcast_rows, out, a, b);
}

int ap_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm,
                      const ap_tensor *v, float eps) {
    const char *op = "l2norm_forward";
    AP_TRY(ap_expect(op, "v", v, 2, (int64_t[]){-1, -1}));
    AP_TRY(ap_expect_same(op, "v", v, "u", u));
    AP_TRY(ap_expect1(op, "norm", norm, v->shape[0]));
    AP_TRY(ap_expect_on(ctx, "l2norm_forward", "u", u, "norm", norm, "v", v, NULL));
    return AP_DISPATCH(ctx, l2norm_forward, u, norm, v, eps);
}

int ap_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du,
                       const ap_tensor *u, const ap_tensor *norm, float eps) {
    const char *op = "l2norm_backward";
    AP_TRY(ap_expect(op, "u", u, 2, (int64_t[]){-1, -1}));
    AP_TRY(ap_expect_same(op, "u", u, "du", du));
    AP_TRY(ap_expect_same(op, "u", u, "dv", dv));
    AP_TRY(ap_expect1(op, "norm", norm, u->shape[0]));
    AP_TRY(ap_expect_on(ctx, "l2norm_backward", "dv", dv, "du", du, "u", u, "norm", norm, NULL));
    return AP_DISPATCH(ctx, l2norm_backward, dv, du, u, norm, eps);
}

int ap_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                       const ap_tensor *b) {
    const char *op = "row_dot_forward";
    AP_TRY(ap_expect(op, "a", a, 2, (int64_t[]){-1, -1}));
    AP_TRY(ap_expect_same(op, "a", a, "b", b));
    AP_TRY(ap_expect1(op, "out", out, a->shape[0]));
    AP_TRY(ap_expect_on(ctx, "row_dot_forward", "out", out, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, row_dot_forward, out, a, b);
}

int ap_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                        const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b) {
    const char *op = "row_dot_backward";
    AP_TRY(ap_expect(op, "a", a, 2, (int64_t[]){-1, -1}));
    AP_TRY(ap_expect_same(op, "a", a, "b", b));
    AP_TRY(ap_expect1(op, "dout", dout, a->shape[0]));
    if (ap_present(da)) AP_TRY(ap_expect_same(op, "a", a, "da", da));
    if (ap_present(db)) AP_TRY(ap_expect_same(op, "b", b, "db", db));
    AP_TRY(ap_expect_on(ctx, "row_dot_backward", "da", da, "db", db, "dout", dout, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, row_dot_backward, da, db, dout, a, b);
}

int ap_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target) {
    AP_TRY(ap_expect_same("abs_diff_forward", "x", x, "out", out));
    AP_TRY(ap_expect_on(ctx, "abs_diff_forward", "out", out, "x", x, NULL));
    return AP_DISPATCH(ctx, abs_diff_forward, out, x, target);
}

int ap_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                         const ap_tensor *x, float target) {
    AP_TRY(ap_expect_same("abs_diff_backward", "x", x, "dout", dout));
    AP_TRY(ap_expect_same("abs_diff_backward", "x", x, "dx", dx));
    AP_TRY(ap_expect_on(ctx, "abs_diff_backward", "dx", dx, "dout", dout, "x", x, NULL));
    return AP_DISPATCH(ctx, abs_diff_backward, dx, dout, x, target);
}

int ap_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b) {
    AP_TRY(ap_expect_same("affine_forward", "x", x, "out", out));
    AP_TRY(ap_expect_on(ctx, "affine_forward", "out", out, "x", x, NULL));
    return AP_DISPATCH(ctx, affine_forward, out, x, a, b);
}

int ap_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s) {
    AP_TRY(ap_expect_same("divide_forward", "x", x, "out", out));
    if (s == 0.0f) return ap_fail("divide_forward: s: expected a non-zero divisor, found 0");
    AP_TRY(ap_expect_on(ctx, "divide_forward", "out", out, "x", x, NULL));
    return AP_DISPATCH(ctx, divide_forward, out, x, s);
}
