/* norm.c: argument checks and dispatch of GroupNorm and LayerNorm; the CPU
 * bodies are in cpu/norm.c. */
#include "norm.h"

#include "backend.h"
#include "core/err.h"

typedef struct {
    int64_t B, C, S, cg; /* batch, channels, spatial size, channels per group */
} gn_dims;

static int gn_dims_of(const char *op, const ap_tensor *in, int groups,
                      const ap_tensor *gamma, const ap_tensor *beta, gn_dims *d) {
    char s[96];
    if (!ap_present(in)) return ap_fail("%s: in: missing tensor", op);
    if (in->ndim < 2)
        return ap_fail("%s: in: expected shape (B, C, *) with at least 2 dims, found %s",
                       op, ap_shape_str(in, s, sizeof s));
    d->B = in->shape[0];
    d->C = in->shape[1];
    d->S = 1;
    for (int i = 2; i < in->ndim; i++) d->S *= in->shape[i];
    if (groups <= 0 || d->C % groups != 0)
        return ap_fail("%s: in %s: C = %lld channels are not divisible into groups = %d",
                       op, ap_shape_str(in, s, sizeof s), (long long)d->C, groups);
    d->cg = d->C / groups;
    if (ap_present(gamma)) AP_TRY(ap_expect1(op, "gamma", gamma, d->C));
    if (ap_present(beta)) AP_TRY(ap_expect1(op, "beta", beta, d->C));
    return AP_OK;
}

static int ln_dims_of(const char *op, const ap_tensor *in, const ap_tensor *gamma,
                      const ap_tensor *beta, int64_t *C, int64_t *rows) {
    char s[96];
    if (!ap_present(in)) return ap_fail("%s: in: missing tensor", op);
    if (in->ndim < 1 || in->shape[in->ndim - 1] <= 0)
        return ap_fail("%s: in: expected shape (..., C) with C > 0, found %s", op,
                       ap_shape_str(in, s, sizeof s));
    *C = in->shape[in->ndim - 1];
    *rows = ap_numel(in) / *C;
    if (ap_present(gamma)) AP_TRY(ap_expect1(op, "gamma", gamma, *C));
    if (ap_present(beta)) AP_TRY(ap_expect1(op, "beta", beta, *C));
    return AP_OK;
}

int ap_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, int groups,
                          float eps) {
    const char *op = "group_norm_forward";
    gn_dims d;
    AP_TRY(gn_dims_of(op, in, groups, gamma, beta, &d));
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect2(op, "mean", mean, d.B, groups));
    AP_TRY(ap_expect2(op, "rstd", rstd, d.B, groups));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "mean", mean, "rstd", rstd, "in", in, "gamma",
                        gamma, "beta", beta, NULL));
    return AP_DISPATCH(ctx, group_norm_forward, out, mean, rstd, in, gamma, beta, groups, eps);
}

int ap_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma, int groups) {
    const char *op = "group_norm_backward";
    gn_dims d;
    AP_TRY(gn_dims_of(op, in, groups, gamma, NULL, &d));
    AP_TRY(ap_expect_same(op, "in", in, "dout", dout));
    if (ap_present(din)) AP_TRY(ap_expect_same(op, "in", in, "din", din));
    if (ap_present(dgamma)) AP_TRY(ap_expect1(op, "dgamma", dgamma, d.C));
    if (ap_present(dbeta)) AP_TRY(ap_expect1(op, "dbeta", dbeta, d.C));
    AP_TRY(ap_expect2(op, "mean", mean, d.B, groups));
    AP_TRY(ap_expect2(op, "rstd", rstd, d.B, groups));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dgamma", dgamma, "dbeta", dbeta, "dout", dout,
                        "in", in, "mean", mean, "rstd", rstd, "gamma", gamma, NULL));
    return AP_DISPATCH(ctx, group_norm_backward, din, dgamma, dbeta, dout, in, mean, rstd, gamma,
                       groups);
}

int ap_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, float eps) {
    const char *op = "layer_norm_forward";
    int64_t C = 0, rows = 0;
    AP_TRY(ln_dims_of(op, in, gamma, beta, &C, &rows));
    AP_TRY(ap_expect_same(op, "in", in, "out", out));
    AP_TRY(ap_expect1(op, "mean", mean, rows));
    AP_TRY(ap_expect1(op, "rstd", rstd, rows));
    AP_TRY(ap_expect_on(ctx, op, "out", out, "mean", mean, "rstd", rstd, "in", in, "gamma",
                        gamma, "beta", beta, NULL));
    return AP_DISPATCH(ctx, layer_norm_forward, out, mean, rstd, in, gamma, beta, eps);
}

int ap_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma) {
    const char *op = "layer_norm_backward";
    int64_t C = 0, rows = 0;
    AP_TRY(ln_dims_of(op, in, gamma, NULL, &C, &rows));
    AP_TRY(ap_expect_same(op, "in", in, "dout", dout));
    if (ap_present(din)) AP_TRY(ap_expect_same(op, "in", in, "din", din));
    if (ap_present(dgamma)) AP_TRY(ap_expect1(op, "dgamma", dgamma, C));
    if (ap_present(dbeta)) AP_TRY(ap_expect1(op, "dbeta", dbeta, C));
    AP_TRY(ap_expect1(op, "mean", mean, rows));
    AP_TRY(ap_expect1(op, "rstd", rstd, rows));
    AP_TRY(ap_expect_on(ctx, op, "din", din, "dgamma", dgamma, "dbeta", dbeta, "dout", dout,
                        "in", in, "mean", mean, "rstd", rstd, "gamma", gamma, NULL));
    return AP_DISPATCH(ctx, layer_norm_backward, din, dgamma, dbeta, dout, in, mean, rstd,
                       gamma);
}
