/* elementwise.c: argument checks and dispatch of add, mul, scale, axpy,
 * channel concat, channel bias and the NCHW <-> NLC permutes; the CPU bodies
 * are in cpu/elementwise.c. */
#include "elementwise.h"

#include "backend.h"
#include "core/err.h"

/* (B, C, H, W) <-> (B, H*W, C); the two must not alias. */
static int check_permute(const char *op, const char *nchw_name, const ap_tensor *nchw,
                         const char *nlc_name, const ap_tensor *nlc) {
    AP_TRY(ap_expect4(op, nchw_name, nchw, -1, -1, -1, -1));
    int64_t B = nchw->shape[0], C = nchw->shape[1], L = nchw->shape[2] * nchw->shape[3];
    AP_TRY(ap_expect3(op, nlc_name, nlc, B, L, C));
    if (nlc->data == nchw->data) return ap_fail("%s: %s must not alias %s", op, nlc_name, nchw_name);
    return AP_OK;
}

static int need(const char *op, const char *arg, const ap_tensor *t) {
    if (ap_present(t)) return AP_OK;
    return ap_fail("%s: %s: expected a tensor, found none", op, arg);
}

int ap_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b) {
    const char *op = "add_forward";
    AP_TRY(ap_expect_same(op, "a", a, "b", b));
    AP_TRY(ap_expect_same(op, "a", a, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, add_forward, out, a, b);
}

int ap_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout) {
    const char *op = "add_backward";
    AP_TRY(need(op, "dout", dout));
    if (ap_present(da)) AP_TRY(ap_expect_same(op, "dout", dout, "da", da));
    if (ap_present(db)) AP_TRY(ap_expect_same(op, "dout", dout, "db", db));
    AP_TRY(ap_expect_on(ctx, op, "da", da, "db", db, "dout", dout, NULL));
    return AP_DISPATCH(ctx, add_backward, da, db, dout);
}

int ap_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b) {
    const char *op = "mul_forward";
    AP_TRY(ap_expect_same(op, "a", a, "b", b));
    AP_TRY(ap_expect_same(op, "a", a, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, mul_forward, out, a, b);
}

int ap_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b) {
    const char *op = "mul_backward";
    AP_TRY(ap_expect_same(op, "a", a, "b", b));
    AP_TRY(ap_expect_same(op, "a", a, "dout", dout));
    if (ap_present(da)) AP_TRY(ap_expect_same(op, "a", a, "da", da));
    if (ap_present(db)) AP_TRY(ap_expect_same(op, "a", a, "db", db));
    AP_TRY(ap_expect_on(ctx, op, "da", da, "db", db, "dout", dout, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, mul_backward, da, db, dout, a, b);
}

int ap_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s) {
    const char *op = "scale_forward";
    AP_TRY(ap_expect_same(op, "a", a, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "a", a, NULL));
    return AP_DISPATCH(ctx, scale_forward, out, a, s);
}

int ap_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s) {
    const char *op = "scale_backward";
    AP_TRY(ap_expect_same(op, "dout", dout, "da", da));
    AP_TRY(ap_expect_on(ctx, op, "da", da, "dout", dout, NULL));
    return AP_DISPATCH(ctx, scale_backward, da, dout, s);
}

int ap_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x) {
    const char *op = "axpy";
    AP_TRY(ap_expect_same(op, "y", y, "x", x));
    AP_TRY(ap_expect_on(ctx, op, "y", y, "x", x, NULL));
    return AP_DISPATCH(ctx, axpy, y, s, x);
}

int ap_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                               const ap_tensor *b) {
    const char *op = "concat_channels_forward";
    AP_TRY(ap_expect4(op, "a", a, -1, -1, -1, -1));
    int64_t B = a->shape[0], H = a->shape[2], W = a->shape[3];
    AP_TRY(ap_expect4(op, "b", b, B, -1, H, W));
    AP_TRY(ap_expect4(op, "out", out, B, a->shape[1] + b->shape[1], H, W));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "a", a, "b", b, NULL));
    return AP_DISPATCH(ctx, concat_channels_forward, out, a, b);
}

int ap_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                const ap_tensor *dout) {
    const char *op = "concat_channels_backward";
    AP_TRY(ap_expect4(op, "dout", dout, -1, -1, -1, -1));
    int64_t B = dout->shape[0], C = dout->shape[1], H = dout->shape[2], W = dout->shape[3];
    const int have_a = ap_present(da), have_b = ap_present(db);
    if (have_a) AP_TRY(ap_expect4(op, "da", da, B, -1, H, W));
    if (have_b) AP_TRY(ap_expect4(op, "db", db, B, -1, H, W));
    if (!have_a && !have_b) return AP_OK;
    int64_t C1 = have_a ? da->shape[1] : C - db->shape[1];
    int64_t C2 = C - C1;
    if (C1 <= 0 || C2 <= 0 || (have_a && have_b && C1 + db->shape[1] != C)) {
        char sa[160] = "(absent)", sb[160] = "(absent)", sd[160];
        if (have_a) ap_shape_str(da, sa, sizeof sa);
        if (have_b) ap_shape_str(db, sb, sizeof sb);
        return ap_fail("%s: da %s and db %s must split the %lld channels of dout %s", op, sa,
                       sb, (long long)C, ap_shape_str(dout, sd, sizeof sd));
    }
    AP_TRY(ap_expect_on(ctx, op, "da", da, "db", db, "dout", dout, NULL));
    return AP_DISPATCH(ctx, concat_channels_backward, da, db, dout);
}

int ap_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                const ap_tensor *bias) {
    const char *op = "add_channel_bias_forward";
    AP_TRY(ap_expect4(op, "in", in, -1, -1, -1, -1));
    AP_TRY(ap_expect2(op, "bias", bias, in->shape[0], in->shape[1]));
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, "bias", bias, NULL));
    return AP_DISPATCH(ctx, add_channel_bias_forward, out, in, bias);
}

int ap_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias,
                                 const ap_tensor *dout) {
    const char *op = "add_channel_bias_backward";
    AP_TRY(ap_expect4(op, "dout", dout, -1, -1, -1, -1));
    if (ap_present(din)) AP_TRY(ap_expect_same(op, "dout", dout, "din", din));
    if (ap_present(dbias)) AP_TRY(ap_expect2(op, "dbias", dbias, dout->shape[0], dout->shape[1]));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dbias", dbias, "dout", dout, NULL));
    return AP_DISPATCH(ctx, add_channel_bias_backward, din, dbias, dout);
}

int ap_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "nchw_to_nlc_forward";
    AP_TRY(check_permute(op, "in", in, "out", out));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, nchw_to_nlc_forward, out, in);
}

int ap_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    const char *op = "nchw_to_nlc_backward";
    AP_TRY(check_permute(op, "din", din, "dout", dout));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, NULL));
    return AP_DISPATCH(ctx, nchw_to_nlc_backward, din, dout);
}

int ap_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const char *op = "nlc_to_nchw_forward";
    AP_TRY(check_permute(op, "out", out, "in", in));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "in", in, NULL));
    return AP_DISPATCH(ctx, nlc_to_nchw_forward, out, in);
}

int ap_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    const char *op = "nlc_to_nchw_backward";
    AP_TRY(check_permute(op, "dout", dout, "din", din));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dout", dout, NULL));
    return AP_DISPATCH(ctx, nlc_to_nchw_backward, din, dout);
}
