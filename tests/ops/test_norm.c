/* test_norm.c: GroupNorm and LayerNorm: gradchecks on small odd shapes,
 * PyTorch goldens (tests/fixtures/ops_norm.safetensors), an SD-size GroupNorm
 * against a double-precision reference computed here, thread-count
 * determinism of the backward, shape errors, and timings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/safetensors.h"
#include "ops/norm.h"
#include "testutil.h"

/* ---- gradchecks ---------------------------------------------------------- */

typedef struct {
    ap_ctx *ctx;
    int layer; /* 0: group_norm, 1: layer_norm */
    ap_tensor in, out, mean, rstd, gamma, beta;
    int groups;
    float eps;
    const float *proj;
} norm_case;

static int norm_forward(norm_case *c) {
    if (c->layer)
        return ap_layer_norm_forward(c->ctx, &c->out, &c->mean, &c->rstd, &c->in,
                                     &c->gamma, &c->beta, c->eps);
    return ap_group_norm_forward(c->ctx, &c->out, &c->mean, &c->rstd, &c->in, &c->gamma,
                                 &c->beta, c->groups, c->eps);
}

static double norm_loss(void *p) {
    norm_case *c = p;
    norm_forward(c);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

/* Gradchecks din, dgamma, dbeta of the op on input shape (ndim, shape). */
static void gradcheck_norm(ap_ctx *ctx, int layer, const char *name, int ndim,
                           const int64_t *shape, int groups) {
    ap_tensor in = ap_tn(NULL, ndim, shape);
    const int64_t n = ap_numel(&in);
    const int64_t C = layer ? shape[ndim - 1] : shape[1];
    const int64_t rows = n / C, B = shape[0];
    float *x = tu_alloc(n), *y = tu_alloc(n), *proj = tu_alloc(n), *dx = tu_alloc(n);
    float *g = tu_alloc(C), *b = tu_alloc(C), *dg = tu_alloc(C), *db = tu_alloc(C);
    const int64_t nstat = layer ? rows : B * groups; /* (rows) or (B, groups) */
    float *mu = tu_alloc(nstat), *rs = tu_alloc(nstat);
    tu_fill_normal(x, n, 11, 1.3f);
    for (int64_t i = 0; i < n; i++) x[i] += 0.4f;
    tu_fill_normal(proj, n, 12, 1.0f);
    tu_fill_uniform(g, C, 13, 0.5f, 1.5f);
    tu_fill_uniform(b, C, 14, -0.5f, 0.5f);
    in.data = x;
    norm_case c = {ctx, layer, in, ap_tn(y, ndim, shape),
                   layer ? ap_t1(mu, rows) : ap_t2(mu, B, groups),
                   layer ? ap_t1(rs, rows) : ap_t2(rs, B, groups),
                   ap_t1(g, C), ap_t1(b, C), groups, 1e-5f, proj};
    ap_tensor tdx = ap_tn(dx, ndim, shape), tdy = ap_tn(proj, ndim, shape);
    ap_tensor tdg = ap_t1(dg, C), tdb = ap_t1(db, C);
    tu_check(norm_forward(&c) == 0, "%s forward runs", name);
    int rc = layer ? ap_layer_norm_backward(ctx, &tdx, &tdg, &tdb, &tdy, &c.in, &c.mean,
                                            &c.rstd, &c.gamma)
                   : ap_group_norm_backward(ctx, &tdx, &tdg, &tdb, &tdy, &c.in, &c.mean,
                                            &c.rstd, &c.gamma, groups);
    tu_check(rc == 0, "%s backward runs %s", name, rc ? ap_errmsg() : "");
    /* fp32 forward, double loss. The loss is smooth at scale ~1 (inputs ~1.3 std):
     * eps 1e-2 keeps truncation ~1e-4 and fp32 rounding noise ~1e-5 / eps. */
    char what[96];
    snprintf(what, sizeof what, "%s din", name);
    tu_gradcheck(what, norm_loss, &c, x, n, dx, 1e-2, 2e-3, 200);
    snprintf(what, sizeof what, "%s dgamma", name);
    tu_gradcheck(what, norm_loss, &c, g, C, dg, 1e-2, 2e-3, 64);
    snprintf(what, sizeof what, "%s dbeta", name);
    tu_gradcheck(what, norm_loss, &c, b, C, db, 1e-2, 2e-3, 64);
    free(x), free(y), free(proj), free(dx), free(g), free(b), free(dg), free(db);
    free(mu), free(rs);
}

/* ---- PyTorch goldens ----------------------------------------------------- */

static float fixture_scalar(ap_st_file *f, const char *name) {
    ap_tensor t;
    float v = tu_fixture(f, name, &t)[0];
    free(t.data);
    return v;
}

/* Loads <case>.<role> into *t (freed by the caller). */
static float *load(ap_st_file *f, const char *cs, const char *role, ap_tensor *t) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", cs, role);
    return tu_fixture(f, key, t);
}

/* Forward and backward of one golden case (affine when <case>.gamma exists).
 * atol_out: absolute tolerance of out and grad_in. */
static void golden_norm(ap_ctx *ctx, ap_st_file *f, int layer, const char *cs,
                        double atol_out) {
    char key[96], what[128];
    ap_tensor in, proj, out_w, mean_w, rstd_w, gin_w, g = {0}, b = {0}, gg_w, gb_w;
    load(f, cs, "in", &in);
    load(f, cs, "proj", &proj);
    load(f, cs, "out", &out_w);
    load(f, cs, "mean", &mean_w);
    load(f, cs, "rstd", &rstd_w);
    load(f, cs, "grad_in", &gin_w);
    snprintf(key, sizeof key, "%s.gamma", cs);
    const int affine = ap_st_find(f, key) != NULL;
    if (affine) {
        load(f, cs, "gamma", &g);
        load(f, cs, "beta", &b);
        load(f, cs, "grad_gamma", &gg_w);
        load(f, cs, "grad_beta", &gb_w);
    }
    snprintf(key, sizeof key, "%s.eps", cs);
    const float eps = fixture_scalar(f, key);
    int groups = 0;
    if (!layer) {
        snprintf(key, sizeof key, "%s.groups", cs);
        groups = (int)fixture_scalar(f, key);
    }
    const int64_t n = ap_numel(&in), C = g.data ? g.shape[0] : in.shape[layer ? in.ndim - 1 : 1];
    const int64_t nstat = ap_numel(&mean_w);
    ap_tensor out = in, mean = mean_w, rstd = rstd_w, din = in, dg = ap_t1(tu_alloc(C), C),
              db = ap_t1(tu_alloc(C), C);
    out.data = tu_alloc(n);
    mean.data = tu_alloc(nstat);
    rstd.data = tu_alloc(nstat);
    din.data = tu_alloc(n);
    int rc = layer ? ap_layer_norm_forward(ctx, &out, &mean, &rstd, &in, &g, &b, eps)
                   : ap_group_norm_forward(ctx, &out, &mean, &rstd, &in, &g, &b, groups, eps);
    tu_check(rc == 0, "%s forward runs %s", cs, rc ? ap_errmsg() : "");
    /* Different summation order than torch: a few fp32 ulps of the result. */
    snprintf(what, sizeof what, "%s out", cs);
    tu_compare(what, out.data, out_w.data, n, atol_out, 1e-5);
    snprintf(what, sizeof what, "%s mean", cs);
    tu_compare(what, mean.data, mean_w.data, nstat, 1e-6, 1e-6);
    snprintf(what, sizeof what, "%s rstd", cs);
    tu_compare(what, rstd.data, rstd_w.data, nstat, 1e-6, 1e-5);
    /* dgamma / dbeta accumulate (+=): start from 0.25 and subtract it. */
    for (int64_t i = 0; i < C; i++) dg.data[i] = db.data[i] = 0.25f;
    rc = layer ? ap_layer_norm_backward(ctx, &din, &dg, &db, &proj, &in, &mean, &rstd, &g)
               : ap_group_norm_backward(ctx, &din, &dg, &db, &proj, &in, &mean, &rstd, &g,
                                        groups);
    tu_check(rc == 0, "%s backward runs %s", cs, rc ? ap_errmsg() : "");
    for (int64_t i = 0; i < C; i++) dg.data[i] -= 0.25f, db.data[i] -= 0.25f;
    /* din mixes dout * gamma * rstd with group means of O(1) terms: a few fp32
     * ulps of values up to ~30 (gn_offset has rstd ~10). */
    snprintf(what, sizeof what, "%s grad_in", cs);
    tu_compare(what, din.data, gin_w.data, n, atol_out, 1e-5);
    if (affine) {
        snprintf(what, sizeof what, "%s grad_gamma (+= from 0.25)", cs);
        tu_compare(what, dg.data, gg_w.data, C, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s grad_beta (+= from 0.25)", cs);
        tu_compare(what, db.data, gb_w.data, C, 1e-5, 1e-5);
        /* Optional outputs: din only, then dgamma only; same numbers. */
        memset(din.data, 0, (size_t)n * sizeof(float));
        memset(dg.data, 0, (size_t)C * sizeof(float));
        ap_tensor none = {0};
        rc = layer ? ap_layer_norm_backward(ctx, &din, NULL, &none, &proj, &in, &mean, &rstd, &g)
                   : ap_group_norm_backward(ctx, &din, NULL, &none, &proj, &in, &mean, &rstd,
                                            &g, groups);
        rc |= layer ? ap_layer_norm_backward(ctx, NULL, &dg, NULL, &proj, &in, &mean, &rstd, &g)
                    : ap_group_norm_backward(ctx, NULL, &dg, NULL, &proj, &in, &mean, &rstd,
                                             &g, groups);
        tu_check(rc == 0, "%s backward with NULL outputs runs", cs);
        snprintf(what, sizeof what, "%s grad_in (din only)", cs);
        tu_compare(what, din.data, gin_w.data, n, atol_out, 1e-5);
        snprintf(what, sizeof what, "%s grad_gamma (dgamma only)", cs);
        tu_compare(what, dg.data, gg_w.data, C, 1e-5, 1e-5);
    }
    free(in.data), free(proj.data), free(out_w.data), free(mean_w.data), free(rstd_w.data);
    free(gin_w.data), free(out.data), free(mean.data), free(rstd.data), free(din.data);
    free(dg.data), free(db.data);
    if (affine) free(g.data), free(b.data), free(gg_w.data), free(gb_w.data);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_norm");
    if (!f) return;
    golden_norm(ctx, f, 0, "gn4d", 1e-5);
    golden_norm(ctx, f, 0, "gn3d", 1e-5);
    golden_norm(ctx, f, 0, "gn2d", 1e-5);
    golden_norm(ctx, f, 0, "gn_noaffine", 1e-5);
    /* x = 30 + 0.1 z (goldens in float64: torch's fp32 is off by ~1e-4 here).
     * The float mean's rounding residual is carried separately (norm.c), so
     * the same tolerances hold. */
    golden_norm(ctx, f, 0, "gn_offset", 1e-5);
    golden_norm(ctx, f, 1, "ln2d", 1e-5);
    golden_norm(ctx, f, 1, "ln3d", 1e-5);
    ap_st_close(f);
}

/* ---- SD-size GroupNorm vs a double reference ----------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Double-precision GroupNorm forward + backward of (B, C, S) with G groups. */
static void gn_reference(const float *x, const float *g, const float *b, const float *dy,
                         int64_t B, int64_t C, int64_t S, int64_t G, double eps, float *y,
                         float *dx, float *dg, float *db) {
    const int64_t cg = C / G, n = cg * S;
    double *dgd = calloc((size_t)C, sizeof(double)), *dbd = calloc((size_t)C, sizeof(double));
    for (int64_t bg = 0; bg < B * G; bg++) {
        const float *xg = x + bg * n, *dyg = dy + bg * n;
        const int64_t c0 = (bg % G) * cg;
        double m = 0, v = 0, s1 = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) m += xg[i];
        m /= n;
        for (int64_t i = 0; i < n; i++) v += (xg[i] - m) * (xg[i] - m);
        const double r = 1.0 / sqrt(v / n + eps);
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = c0 + i / S;
            const double xh = (xg[i] - m) * r, d = (double)dyg[i] * g[c];
            y[bg * n + i] = (float)(xh * g[c] + b[c]);
            s1 += d;
            s2 += d * xh;
            dgd[c] += (double)dyg[i] * xh;
            dbd[c] += dyg[i];
        }
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = c0 + i / S;
            const double xh = (xg[i] - m) * r;
            dx[bg * n + i] = (float)(r * ((double)dyg[i] * g[c] - s1 / n - xh * s2 / n));
        }
    }
    for (int64_t c = 0; c < C; c++) dg[c] = (float)dgd[c], db[c] = (float)dbd[c];
    free(dgd), free(dbd);
}

static void test_sd_size(void) {
    const int64_t B = 2, C = 320, H = 64, W = 64, G = 32, n = B * C * H * W;
    float *x = tu_alloc(n), *dy = tu_alloc(n), *y = tu_alloc(n), *dx = tu_alloc(n);
    float *yr = tu_alloc(n), *dxr = tu_alloc(n), *dx3 = tu_alloc(n);
    float *g = tu_alloc(C), *b = tu_alloc(C), *dg = tu_alloc(C), *db = tu_alloc(C);
    float *dgr = tu_alloc(C), *dbr = tu_alloc(C), *dg3 = tu_alloc(C), *db3 = tu_alloc(C);
    float *mu = tu_alloc(B * G), *rs = tu_alloc(B * G);
    /* Activation-like input with a mean far from 0 relative to its spread
     * (naive fp32 E[x^2] - E[x]^2 would lose ~4 digits here). */
    tu_fill_normal(x, n, 21, 0.8f);
    for (int64_t i = 0; i < n; i++) x[i] += 3.0f + 0.01f * (float)((i / (H * W)) % C);
    tu_fill_normal(dy, n, 22, 1.0f);
    tu_fill_uniform(g, C, 23, 0.5f, 1.5f);
    tu_fill_uniform(b, C, 24, -0.5f, 0.5f);
    gn_reference(x, g, b, dy, B, C, H * W, G, 1e-5, yr, dxr, dgr, dbr);

    ap_ctx c2, c1, c3;
    ap_ctx_init(&c2, 2);
    ap_ctx_init(&c1, 1);
    ap_ctx_init(&c3, 3);
    ap_tensor tx = ap_t4(x, B, C, H, W), ty = ap_t4(y, B, C, H, W), tdy = ap_t4(dy, B, C, H, W);
    ap_tensor tdx = ap_t4(dx, B, C, H, W), tdx3 = ap_t4(dx3, B, C, H, W);
    ap_tensor tm = ap_t2(mu, B, G), tr = ap_t2(rs, B, G), tg = ap_t1(g, C), tb = ap_t1(b, C);
    ap_tensor tdg = ap_t1(dg, C), tdb = ap_t1(db, C), tdg3 = ap_t1(dg3, C), tdb3 = ap_t1(db3, C);
    int rc = ap_group_norm_forward(&c2, &ty, &tm, &tr, &tx, &tg, &tb, (int)G, 1e-5f);
    rc |= ap_group_norm_backward(&c2, &tdx, &tdg, &tdb, &tdy, &tx, &tm, &tr, &tg, (int)G);
    tu_check(rc == 0, "group_norm 2x320x64x64 runs");
    /* Against double: out is O(3) with ~1 ulp rounding of x - mean, scale and
     * shift (~1e-6 observed); din likewise (~1e-6 observed). dgamma / dbeta
     * sum 8192 O(1) terms per channel (|value| ~ 90) in float blocks of 512:
     * ~6e-5 observed, i.e. ~7e-7 of the typical value (PyTorch fp32 on the
     * same kind of input: 1e-3 and 1e-4). atol 2e-4 = ~2e-6 of |value|. */
    tu_compare("SD group_norm out vs double", y, yr, n, 5e-6, 1e-5);
    tu_compare("SD group_norm din vs double", dx, dxr, n, 5e-6, 1e-5);
    tu_compare("SD group_norm dgamma vs double", dg, dgr, C, 2e-4, 1e-6);
    tu_compare("SD group_norm dbeta vs double", db, dbr, C, 2e-4, 1e-6);

    /* Thread-count determinism: 1 and 3 threads give the same bits as 2. */
    for (int k = 0; k < 2; k++) {
        ap_ctx *cx = k ? &c3 : &c1;
        memset(dg3, 0, C * sizeof(float));
        memset(db3, 0, C * sizeof(float));
        rc = ap_group_norm_backward(cx, &tdx3, &tdg3, &tdb3, &tdy, &tx, &tm, &tr, &tg, (int)G);
        tu_check(rc == 0 && !memcmp(dx3, dx, n * sizeof(float)) &&
                     !memcmp(dg3, dg, C * sizeof(float)) && !memcmp(db3, db, C * sizeof(float)),
                 "group_norm backward bit-identical with %d and 2 threads", cx->n_threads);
    }

    /* Timing (informational): best of 5 on 2 threads. */
    double fwd = 1e9, both = 1e9;
    for (int it = 0; it < 5; it++) {
        double t0 = now_s();
        ap_group_norm_forward(&c2, &ty, &tm, &tr, &tx, &tg, &tb, (int)G, 1e-5f);
        double t1 = now_s();
        ap_group_norm_backward(&c2, &tdx, &tdg, &tdb, &tdy, &tx, &tm, &tr, &tg, (int)G);
        double t2 = now_s();
        if (t1 - t0 < fwd) fwd = t1 - t0;
        if (t2 - t0 < both) both = t2 - t0;
    }
    printf("  time group_norm 2x320x64x64 (32 groups), 2 threads, best of 5: forward "
           "%.2f ms, forward+backward %.2f ms\n", 1e3 * fwd, 1e3 * both);
    ap_ctx_free(&c1), ap_ctx_free(&c2), ap_ctx_free(&c3);
    free(x), free(dy), free(y), free(dx), free(yr), free(dxr), free(dx3), free(g), free(b);
    free(dg), free(db), free(dgr), free(dbr), free(dg3), free(db3), free(mu), free(rs);
}

/* LayerNorm backward determinism over the thread count (rows > chunk count). */
static void test_layer_norm_threads(void) {
    const int64_t rows = 1000, C = 96, n = rows * C;
    float *x = tu_alloc(n), *dy = tu_alloc(n), *y = tu_alloc(n), *dx[2];
    float *g = tu_alloc(C), *b = tu_alloc(C), *dg[2], *db[2];
    float *mu = tu_alloc(rows), *rs = tu_alloc(rows);
    tu_fill_normal(x, n, 31, 2.0f);
    tu_fill_normal(dy, n, 32, 1.0f);
    tu_fill_uniform(g, C, 33, 0.5f, 1.5f);
    ap_tensor tx = ap_t2(x, rows, C), ty = ap_t2(y, rows, C), tdy = ap_t2(dy, rows, C);
    ap_tensor tm = ap_t1(mu, rows), tr = ap_t1(rs, rows), tg = ap_t1(g, C), tb = ap_t1(b, C);
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        ap_ctx cx;
        ap_ctx_init(&cx, k ? 3 : 1);
        dx[k] = tu_alloc(n), dg[k] = tu_alloc(C), db[k] = tu_alloc(C);
        ap_tensor tdx = ap_t2(dx[k], rows, C), tdg = ap_t1(dg[k], C), tdb = ap_t1(db[k], C);
        rc |= ap_layer_norm_forward(&cx, &ty, &tm, &tr, &tx, &tg, &tb, 1e-5f);
        rc |= ap_layer_norm_backward(&cx, &tdx, &tdg, &tdb, &tdy, &tx, &tm, &tr, &tg);
        ap_ctx_free(&cx);
    }
    tu_check(rc == 0 && !memcmp(dx[0], dx[1], n * sizeof(float)) &&
                 !memcmp(dg[0], dg[1], C * sizeof(float)) &&
                 !memcmp(db[0], db[1], C * sizeof(float)),
             "layer_norm backward (1000, 96) bit-identical with 1 and 3 threads");
    free(x), free(dy), free(y), free(g), free(b), free(mu), free(rs);
    for (int k = 0; k < 2; k++) free(dx[k]), free(dg[k]), free(db[k]);
}

/* ---- shape errors -------------------------------------------------------- */

static void test_shapes(ap_ctx *ctx) {
    static float buf[2 * 6 * 15];
    ap_tensor x = ap_t4(buf, 2, 6, 5, 3), y = ap_t4(buf, 2, 6, 5, 3);
    ap_tensor m = ap_t2(buf, 2, 3), r = ap_t2(buf, 2, 3), m4 = ap_t2(buf, 2, 4);
    ap_tensor g6 = ap_t1(buf, 6), g5 = ap_t1(buf, 5), v = ap_t1(buf, 7);
    ap_tensor ybad = ap_t4(buf, 2, 6, 3, 5);
    tu_expect_error("group_norm with C = 6, groups = 4",
                    ap_group_norm_forward(ctx, &y, &m4, &m4, &x, &g6, &g6, 4, 1e-5f),
                    "group_norm_forward", "(2, 6, 5, 3)", "C = 6", "groups = 4", NULL);
    tu_expect_error("group_norm with groups = 0",
                    ap_group_norm_forward(ctx, &y, &m, &r, &x, NULL, NULL, 0, 1e-5f),
                    "group_norm_forward", "groups = 0", NULL);
    tu_expect_error("group_norm backward with C = 6, groups = 4",
                    ap_group_norm_backward(ctx, &y, NULL, NULL, &y, &x, &m4, &m4, NULL, 4),
                    "group_norm_backward", "C = 6", "groups = 4", NULL);
    tu_expect_error("group_norm with a 1-D input",
                    ap_group_norm_forward(ctx, &v, &m, &r, &v, NULL, NULL, 1, 1e-5f),
                    "group_norm_forward", "(B, C, *)", "(7)", NULL);
    tu_expect_error("group_norm with mean (2, 4) for 3 groups",
                    ap_group_norm_forward(ctx, &y, &m4, &r, &x, &g6, &g6, 3, 1e-5f),
                    "group_norm_forward", "mean", "(2, 3)", "(2, 4)", NULL);
    tu_expect_error("group_norm with gamma (5) for C = 6",
                    ap_group_norm_forward(ctx, &y, &m, &r, &x, &g5, &g6, 3, 1e-5f),
                    "group_norm_forward", "gamma", "(6)", "(5)", NULL);
    tu_expect_error("group_norm with out (2, 6, 3, 5)",
                    ap_group_norm_forward(ctx, &ybad, &m, &r, &x, &g6, &g6, 3, 1e-5f),
                    "group_norm_forward", "out", "(2, 6, 5, 3)", "(2, 6, 3, 5)", NULL);
    tu_expect_error("group_norm backward with dout (2, 6, 3, 5)",
                    ap_group_norm_backward(ctx, &y, NULL, NULL, &ybad, &x, &m, &r, &g6, 3),
                    "group_norm_backward", "dout", "(2, 6, 3, 5)", NULL);
    tu_expect_error("group_norm backward with dbeta (5)",
                    ap_group_norm_backward(ctx, &y, &g6, &g5, &y, &x, &m, &r, &g6, 3),
                    "group_norm_backward", "dbeta", "(6)", "(5)", NULL);

    ap_tensor lx = ap_t2(buf, 5, 7), lm = ap_t1(buf, 5), lm4 = ap_t1(buf, 4);
    ap_tensor lg = ap_t1(buf, 7), lbad = ap_t2(buf, 7, 5);
    tu_expect_error("layer_norm with gamma (6) for C = 7",
                    ap_layer_norm_forward(ctx, &lx, &lm, &lm, &lx, &g6, &lg, 1e-5f),
                    "layer_norm_forward", "gamma", "(7)", "(6)", NULL);
    tu_expect_error("layer_norm with mean (4) for 5 rows",
                    ap_layer_norm_forward(ctx, &lx, &lm4, &lm, &lx, &lg, &lg, 1e-5f),
                    "layer_norm_forward", "mean", "(5)", "(4)", NULL);
    tu_expect_error("layer_norm backward with dout (7, 5)",
                    ap_layer_norm_backward(ctx, &lx, &lg, &lg, &lbad, &lx, &lm, &lm, &lg),
                    "layer_norm_backward", "dout", "(5, 7)", "(7, 5)", NULL);
    tu_expect_error("layer_norm backward with dgamma (6)",
                    ap_layer_norm_backward(ctx, &lx, &g6, NULL, &lx, &lx, &lm, &lm, &lg),
                    "layer_norm_backward", "dgamma", "(7)", "(6)", NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_norm: group_norm, layer_norm (%d threads)\n", ctx.n_threads);
    gradcheck_norm(&ctx, 0, "group_norm (2,6,5,3) G=3", 4, (int64_t[]){2, 6, 5, 3}, 3);
    gradcheck_norm(&ctx, 0, "group_norm (2,6,7) G=2", 3, (int64_t[]){2, 6, 7}, 2);
    gradcheck_norm(&ctx, 0, "group_norm (3,4) G=2", 2, (int64_t[]){3, 4}, 2);
    gradcheck_norm(&ctx, 1, "layer_norm (5,7)", 2, (int64_t[]){5, 7}, 0);
    gradcheck_norm(&ctx, 1, "layer_norm (2,3,5)", 3, (int64_t[]){2, 3, 5}, 0);
    test_goldens(&ctx);
    test_sd_size();
    test_layer_norm_threads();
    test_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
