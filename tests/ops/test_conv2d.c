/* test_conv2d.c: conv2d forward/backward against finite differences, a naive
 * double-precision reference (including a layer large enough to be cut into
 * row chunks), PyTorch goldens (tools/fixtures/ops_conv.py) on 1 and 2
 * threads, the accumulation rule, shape errors, and every path: packed
 * AVX-512 GEMM where the CPU has it (Winograd F(2x2, 3x3) by default for
 * large 3x3/s1/p1, forced on small shapes with AP_CONV2D_WINOGRAD=1, off with
 * AP_CONV2D_DIRECT=1, with its error at SD size vs im2col), im2col + BLAS. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "io/safetensors.h"
#include "ops/conv2d.h"
#include "core/isa.h"
#include "testutil.h"

typedef struct {
    int B, C, H, W, O, kh, kw, s, p, bias;
} geom;

static int out_h(const geom *g) { return (g->H + 2 * g->p - g->kh) / g->s + 1; }
static int out_w(const geom *g) { return (g->W + 2 * g->p - g->kw) / g->s + 1; }

/* Naive double-precision conv: out, and the gradients of sum(out * proj). */
static void ref_forward(const geom *g, const float *x, const float *w, const float *b,
                        float *y) {
    int Ho = out_h(g), Wo = out_w(g);
    for (int n = 0; n < g->B; n++)
        for (int o = 0; o < g->O; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    double acc = g->bias ? b[o] : 0.0;
                    for (int c = 0; c < g->C; c++)
                        for (int u = 0; u < g->kh; u++)
                            for (int v = 0; v < g->kw; v++) {
                                int yy = i * g->s + u - g->p, xx = j * g->s + v - g->p;
                                if (yy < 0 || yy >= g->H || xx < 0 || xx >= g->W) continue;
                                acc += (double)w[((o * g->C + c) * g->kh + u) * g->kw + v] *
                                       x[(((size_t)n * g->C + c) * g->H + yy) * g->W + xx];
                            }
                    y[(((size_t)n * g->O + o) * Ho + i) * Wo + j] = (float)acc;
                }
}

static void ref_backward(const geom *g, const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db) {
    int Ho = out_h(g), Wo = out_w(g);
    size_t nx = (size_t)g->B * g->C * g->H * g->W;
    size_t nw = (size_t)g->O * g->C * g->kh * g->kw;
    double *ax = calloc(nx, sizeof(double)), *aw = calloc(nw, sizeof(double));
    double *ab = calloc((size_t)g->O, sizeof(double));
    for (int n = 0; n < g->B; n++)
        for (int o = 0; o < g->O; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    double gy = dy[(((size_t)n * g->O + o) * Ho + i) * Wo + j];
                    ab[o] += gy;
                    for (int c = 0; c < g->C; c++)
                        for (int u = 0; u < g->kh; u++)
                            for (int v = 0; v < g->kw; v++) {
                                int yy = i * g->s + u - g->p, xx = j * g->s + v - g->p;
                                if (yy < 0 || yy >= g->H || xx < 0 || xx >= g->W) continue;
                                size_t wi = ((size_t)(o * g->C + c) * g->kh + u) * g->kw + v;
                                size_t xi = (((size_t)n * g->C + c) * g->H + yy) * g->W + xx;
                                ax[xi] += gy * w[wi];
                                aw[wi] += gy * x[xi];
                            }
                }
    for (size_t k = 0; k < nx; k++) dx[k] = (float)ax[k];
    for (size_t k = 0; k < nw; k++) dw[k] = (float)aw[k];
    for (int o = 0; o < g->O; o++) db[o] = (float)ab[o];
    free(ax), free(aw), free(ab);
}

/* One case's tensors. */
typedef struct {
    ap_ctx *ctx;
    geom g;
    ap_tensor x, w, b, y, proj, dx, dw, db;
} conv_case;

static void case_alloc(conv_case *c, ap_ctx *ctx, geom g, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->ctx = ctx, c->g = g;
    int Ho = out_h(&g), Wo = out_w(&g);
    c->x = ap_t4(tu_alloc((int64_t)g.B * g.C * g.H * g.W), g.B, g.C, g.H, g.W);
    c->w = ap_t4(tu_alloc((int64_t)g.O * g.C * g.kh * g.kw), g.O, g.C, g.kh, g.kw);
    c->b = ap_t1(g.bias ? tu_alloc(g.O) : NULL, g.O);
    c->y = ap_t4(tu_alloc((int64_t)g.B * g.O * Ho * Wo), g.B, g.O, Ho, Wo);
    c->proj = ap_t4(tu_alloc(ap_numel(&c->y)), g.B, g.O, Ho, Wo);
    c->dx = ap_t4(tu_alloc(ap_numel(&c->x)), g.B, g.C, g.H, g.W);
    c->dw = ap_t4(tu_alloc(ap_numel(&c->w)), g.O, g.C, g.kh, g.kw);
    c->db = ap_t1(tu_alloc(g.O), g.O);
    tu_fill_uniform(c->x.data, ap_numel(&c->x), seed, -1, 1);
    tu_fill_uniform(c->w.data, ap_numel(&c->w), seed + 1, -0.5f, 0.5f);
    if (g.bias) tu_fill_uniform(c->b.data, g.O, seed + 2, -1, 1);
    tu_fill_uniform(c->proj.data, ap_numel(&c->proj), seed + 3, -1, 1);
}

static void case_free(conv_case *c) {
    free(c->x.data), free(c->w.data), free(c->b.data), free(c->y.data);
    free(c->proj.data), free(c->dx.data), free(c->dw.data), free(c->db.data);
}

static double conv_loss(void *p) {
    conv_case *c = p;
    if (ap_conv2d_forward(c->ctx, &c->y, &c->x, &c->w, &c->b, c->g.s, c->g.p) != 0) {
        printf("    conv2d_forward failed: %s\n", ap_errmsg());
        return NAN;
    }
    return tu_dot(c->y.data, c->proj.data, ap_numel(&c->y));
}

static const char *geom_str(const geom *g, char *buf, size_t len) {
    snprintf(buf, len, "B%d C%d %dx%d O%d k%dx%d s%d p%d%s", g->B, g->C, g->H, g->W,
             g->O, g->kh, g->kw, g->s, g->p, g->bias ? "" : " nobias");
    return buf;
}

/* Gradcheck of din, dw, db plus the naive reference for out and all grads. */
static void test_case(ap_ctx *ctx, geom g, uint64_t seed) {
    char gs[128], what[192];
    geom_str(&g, gs, sizeof gs);
    conv_case c;
    case_alloc(&c, ctx, g, seed);
    /* din is "=": garbage in it must be overwritten. dw, db are "+=" from 0. */
    for (int64_t k = 0; k < ap_numel(&c.dx); k++) c.dx.data[k] = 1e30f;
    tu_check(ap_conv2d_backward(ctx, &c.dx, &c.dw, g.bias ? &c.db : NULL, &c.proj,
                                &c.x, &c.w, g.s, g.p) == 0,
             "conv2d_backward runs (%s) %s", gs, ap_errmsg());
    /* conv is linear in each of x, w, b: central differences have no truncation
     * error, only fp32 rounding of the forward (~1e-6 of the loss / eps). */
    snprintf(what, sizeof what, "conv2d din (%s)", gs);
    tu_gradcheck(what, conv_loss, &c, c.x.data, ap_numel(&c.x), c.dx.data, 1e-2, 1e-3, 400);
    snprintf(what, sizeof what, "conv2d dw (%s)", gs);
    tu_gradcheck(what, conv_loss, &c, c.w.data, ap_numel(&c.w), c.dw.data, 1e-2, 1e-3, 400);
    if (g.bias) {
        snprintf(what, sizeof what, "conv2d db (%s)", gs);
        tu_gradcheck(what, conv_loss, &c, c.b.data, g.O, c.db.data, 1e-2, 1e-3, 64);
    }
    /* Naive double reference: fp32 GEMM sums of C*kh*kw <= 300 O(1) terms
     * differ from it by ~1e-6; 1e-5 abs + 1e-5 rel leaves a 10x margin. */
    float *ry = tu_alloc(ap_numel(&c.y)), *rdx = tu_alloc(ap_numel(&c.x));
    float *rdw = tu_alloc(ap_numel(&c.w)), *rdb = tu_alloc(g.O);
    ref_forward(&g, c.x.data, c.w.data, c.b.data, ry);
    ref_backward(&g, c.x.data, c.w.data, c.proj.data, rdx, rdw, rdb);
    conv_loss(&c);
    snprintf(what, sizeof what, "conv2d out vs naive (%s)", gs);
    tu_compare(what, c.y.data, ry, ap_numel(&c.y), 1e-5, 1e-5);
    snprintf(what, sizeof what, "conv2d din vs naive (%s)", gs);
    tu_compare(what, c.dx.data, rdx, ap_numel(&c.x), 1e-5, 1e-5);
    snprintf(what, sizeof what, "conv2d dw vs naive (%s)", gs);
    tu_compare(what, c.dw.data, rdw, ap_numel(&c.w), 1e-5, 1e-5);
    free(ry), free(rdx), free(rdw), free(rdb);
    case_free(&c);
}

/* Accumulation rule and optional outputs: dw, db +=; din alone, dw alone. */
static void test_accumulate(ap_ctx *ctx) {
    geom g = {2, 3, 7, 5, 4, 3, 3, 2, 1, 1};
    conv_case c;
    case_alloc(&c, ctx, g, 40);
    ap_conv2d_backward(ctx, &c.dx, &c.dw, &c.db, &c.proj, &c.x, &c.w, g.s, g.p);
    int64_t nw = ap_numel(&c.w), nx = ap_numel(&c.x);
    float *dw2 = tu_alloc(nw), *db2 = tu_alloc(g.O), *dx2 = tu_alloc(nx);
    float *want_w = tu_alloc(nw), *want_b = tu_alloc(g.O);
    for (int64_t k = 0; k < nw; k++) dw2[k] = 0.25f, want_w[k] = 0.25f + c.dw.data[k];
    for (int k = 0; k < g.O; k++) db2[k] = -1.0f, want_b[k] = -1.0f + c.db.data[k];
    ap_tensor tdw = ap_t4(dw2, g.O, g.C, g.kh, g.kw), tdb = ap_t1(db2, g.O);
    ap_tensor tdx = ap_t4(dx2, g.B, g.C, g.H, g.W);
    tu_check(ap_conv2d_backward(ctx, NULL, &tdw, &tdb, &c.proj, &c.x, &c.w, g.s, g.p) == 0,
             "conv2d_backward with din NULL runs");
    /* Same GEMM and summation as before plus one fp32 add: 1 ulp of 0.25 + grad. */
    tu_compare("conv2d dw += (prefilled 0.25)", dw2, want_w, nw, 1e-6, 1e-6);
    tu_compare("conv2d db += (prefilled -1)", db2, want_b, g.O, 1e-6, 1e-6);
    tu_check(ap_conv2d_backward(ctx, &tdx, NULL, NULL, &c.proj, &c.x, &c.w, g.s, g.p) == 0,
             "conv2d_backward with din only runs");
    tu_compare("conv2d din alone == din with dw, db", dx2, c.dx.data, nx, 0, 0);
    /* din only needs the input's shape: a frozen layer may drop its input. */
    ap_tensor shape_only = c.x;
    shape_only.data = NULL;
    memset(dx2, 0, (size_t)nx * sizeof(float));
    tu_check(ap_conv2d_backward(ctx, &tdx, NULL, NULL, &c.proj, &shape_only, &c.w, g.s, g.p) == 0,
             "conv2d_backward din-only with a shape-only input descriptor runs");
    tu_compare("conv2d din from a shape-only input == din", dx2, c.dx.data, nx, 0, 0);
    tu_expect_error("shape-only input when dweight is wanted",
                    ap_conv2d_backward(ctx, NULL, &tdw, NULL, &c.proj, &shape_only, &c.w, g.s, g.p),
                    "conv2d_backward", "in", NULL);
    free(dw2), free(db2), free(dx2), free(want_w), free(want_b);
    case_free(&c);
}

/* A layer whose columns exceed AP_CONV2D_COL_FLOATS, so forward and backward
 * run in several row chunks; compared with the naive reference. */
static void test_chunked(ap_ctx *ctx) {
    geom g = {1, 8, 347, 345, 4, 3, 3, 1, 1, 1};
    size_t one = (size_t)g.C * 9 * out_h(&g) * out_w(&g);
    size_t bytes = ap_conv2d_scratch_bytes(g.B, g.C, g.H, g.W, g.O, g.kh, g.kw, g.s, g.p);
    tu_check(one > AP_CONV2D_COL_FLOATS && bytes < one * sizeof(float) &&
                 bytes <= AP_CONV2D_COL_FLOATS * sizeof(float),
             "chunked case: whole-image columns %zu floats > budget %zu; scratch %zu bytes",
             one, (size_t)AP_CONV2D_COL_FLOATS, bytes);
    conv_case c;
    case_alloc(&c, ctx, g, 60);
    conv_loss(&c);
    tu_check(ap_conv2d_backward(ctx, &c.dx, &c.dw, &c.db, &c.proj, &c.x, &c.w, g.s, g.p) == 0,
             "conv2d_backward (chunked) runs");
    float *ry = tu_alloc(ap_numel(&c.y)), *rdx = tu_alloc(ap_numel(&c.x));
    float *rdw = tu_alloc(ap_numel(&c.w)), *rdb = tu_alloc(g.O);
    ref_forward(&g, c.x.data, c.w.data, c.b.data, ry);
    ref_backward(&g, c.x.data, c.w.data, c.proj.data, rdx, rdw, rdb);
    /* out, din: sums of 72 terms as above. dw, db: sums over 119715 output
     * pixels of O(1) terms with random signs (|dw| up to ~300): fp32 GEMM
     * partial sums of a few thousand terms round at ~2e-4 (measured 1.7e-4);
     * 2e-3 abs leaves a 10x margin. db is summed in double: 1e-4. */
    tu_compare("conv2d out vs naive (chunked 347x345)", c.y.data, ry, ap_numel(&c.y), 1e-5, 1e-5);
    tu_compare("conv2d din vs naive (chunked)", c.dx.data, rdx, ap_numel(&c.x), 1e-5, 1e-5);
    tu_compare("conv2d dw vs naive (chunked)", c.dw.data, rdw, ap_numel(&c.w), 2e-3, 1e-5);
    tu_compare("conv2d db vs naive (chunked)", c.db.data, rdb, g.O, 1e-4, 1e-6);
    free(ry), free(rdx), free(rdw), free(rdb);
    case_free(&c);
}

/* Max |got - want| over n values. */
static double max_abs_err(const float *got, const float *want, int64_t n) {
    double m = 0.0;
    for (int64_t k = 0; k < n; k++) {
        double e = fabs((double)got[k] - want[k]);
        if (e > m) m = e;
    }
    return m;
}

/* out, din, dw, db of one case against the naive reference with the given
 * absolute tolerances (no gradcheck: for shapes where it would take minutes). */
static void test_naive(ap_ctx *ctx, geom g, uint64_t seed, const char *label,
                       double tol_y, double tol_dx, double tol_dw) {
    char what[256];
    conv_case c;
    case_alloc(&c, ctx, g, seed);
    conv_loss(&c);
    tu_check(ap_conv2d_backward(ctx, &c.dx, &c.dw, &c.db, &c.proj, &c.x, &c.w, g.s, g.p) == 0,
             "conv2d_backward runs (%s)", label);
    float *ry = tu_alloc(ap_numel(&c.y)), *rdx = tu_alloc(ap_numel(&c.x));
    float *rdw = tu_alloc(ap_numel(&c.w)), *rdb = tu_alloc(g.O);
    ref_forward(&g, c.x.data, c.w.data, c.b.data, ry);
    ref_backward(&g, c.x.data, c.w.data, c.proj.data, rdx, rdw, rdb);
    snprintf(what, sizeof what, "conv2d out vs naive (%s)", label);
    tu_compare(what, c.y.data, ry, ap_numel(&c.y), tol_y, 1e-5);
    snprintf(what, sizeof what, "conv2d din vs naive (%s)", label);
    tu_compare(what, c.dx.data, rdx, ap_numel(&c.x), tol_dx, 1e-5);
    snprintf(what, sizeof what, "conv2d dw vs naive (%s)", label);
    tu_compare(what, c.dw.data, rdw, ap_numel(&c.w), tol_dw, 1e-5);
    free(ry), free(rdx), free(rdw), free(rdb);
    case_free(&c);
}

/* Winograd chunks that straddle images: C + O = 2080 gives 64-tile chunks
 * (WG_BUDGET / (16 (C + O)) rounded down to 64); 3 images of 7x7 tiles =
 * 147 tiles -> chunks of 64, 64, 19, the first two crossing an image
 * boundary. Run with AP_CONV2D_WINOGRAD=1 (147 tiles is below the default
 * threshold). out: sums of 18432 terms |x w| <= 0.5, |out| up to ~60:
 * measured max abs err 4.8e-5, tolerance 3e-4; din: 288 terms as in
 * test_case (1e-5); dw: 507 pixels (measured ~2e-5, 1e-4). */
static void test_wg_chunks(ap_ctx *ctx) {
    test_naive(ctx, (geom){3, 2048, 13, 13, 32, 3, 3, 1, 1, 1}, 70,
               "Winograd, chunks across images", 3e-4, 1e-5, 1e-4);
}

/* SD-size accuracy: 1x320x32x32 -> 320, 3x3 s1 p1 (256 tiles: Winograd by
 * default), out and din against the naive double reference, on the default
 * path and on im2col (AP_CONV2D_DIRECT=1). */
static void test_wg_sd(ap_ctx *ctx) {
    geom g = {1, 320, 32, 32, 320, 3, 3, 1, 1, 1};
    conv_case c;
    case_alloc(&c, ctx, g, 80);
    int64_t ny = ap_numel(&c.y), nx = ap_numel(&c.x);
    float *ry = tu_alloc(ny), *rdx = tu_alloc(nx);
    float *rdw = tu_alloc(ap_numel(&c.w)), *rdb = tu_alloc(g.O);
    ref_forward(&g, c.x.data, c.w.data, c.b.data, ry);
    ref_backward(&g, c.x.data, c.w.data, c.proj.data, rdx, rdw, rdb);
    double err[2][2];
    for (int path = 0; path < 2; path++) {
        if (path) ctx->conv_path = AP_CONV_DIRECT;
        tu_check(ap_conv2d_forward(ctx, &c.y, &c.x, &c.w, &c.b, 1, 1) == 0 &&
                     ap_conv2d_backward(ctx, &c.dx, NULL, NULL, &c.proj, &c.x, &c.w, 1, 1) == 0,
                 "conv2d 1x320x32x32 runs (%s)", path ? "im2col" : "default");
        err[path][0] = max_abs_err(c.y.data, ry, ny);
        err[path][1] = max_abs_err(c.dx.data, rdx, nx);
        if (path) ctx->conv_path = AP_CONV_AUTO;
    }
    double ymax = 0.0, dxmax = 0.0;
    for (int64_t k = 0; k < ny; k++) ymax = fmax(ymax, fabs(ry[k]));
    for (int64_t k = 0; k < nx; k++) dxmax = fmax(dxmax, fabs(rdx[k]));
    /* |out| up to ~30 and |din| up to ~20 (2880 terms |x w| <= 0.5).
     * Measured max abs err (seed 80): Winograd out 2.7e-5, din 2.4e-5; im2col
     * out 1.7e-5, din 1.5e-5 (Winograd ~1.6x im2col, both ~6e-7 of max |out|).
     * Tolerance 2e-4 abs on both paths: ~7x margin, ~4e-6 of max |out|. */
    const char *pn[2] = {"default path: Winograd", "AP_CONV2D_DIRECT=1: im2col"};
    for (int path = 0; path < 2; path++)
        tu_check(err[path][0] <= 2e-4 && err[path][1] <= 2e-4,
                 "1x320x32x32 vs double (%s): max abs err out %.3g (max |out| %.3g), "
                 "din %.3g (max |din| %.3g), tol 2e-4",
                 pn[path], err[path][0], ymax, err[path][1], dxmax);
    free(ry), free(rdx), free(rdw), free(rdb);
    case_free(&c);
}

static const char *GOLDEN_CASES[] = {"conv3x3s1p1", "conv3x3s2p1", "conv1x1",
                                     "conv1x1s2", "conv2x2s2", "conv3x2s3p1",
                                     "conv3x3c16"};

static void test_golden(ap_st_file *f, ap_ctx *ctx, const char *name) {
    char key[128], what[192];
#define LOAD(role, t) (snprintf(key, sizeof key, "%s.%s", name, role), tu_fixture(f, key, t))
    ap_tensor x, w, b = {0}, proj, want_y, want_dx, want_dw, want_db = {0}, st, pd;
    LOAD("in", &x), LOAD("weight", &w), LOAD("proj", &proj), LOAD("out", &want_y);
    LOAD("grad_in", &want_dx), LOAD("grad_weight", &want_dw);
    LOAD("stride", &st), LOAD("pad", &pd);
    snprintf(key, sizeof key, "%s.bias", name);
    int bias = ap_st_find(f, key) != NULL;
    if (bias) LOAD("bias", &b), LOAD("grad_bias", &want_db);
#undef LOAD
    int s = (int)st.data[0], p = (int)pd.data[0];
    int64_t ny = ap_numel(&want_y), nx = ap_numel(&x), nw = ap_numel(&w);
    ap_tensor y = want_y, dx = x, dw = w, db = b;
    y.data = tu_alloc(ny), dx.data = tu_alloc(nx), dw.data = tu_alloc(nw);
    db.data = bias ? tu_alloc(w.shape[0]) : NULL;
    tu_check(ap_conv2d_forward(ctx, &y, &x, &w, bias ? &b : NULL, s, p) == 0 &&
                 ap_conv2d_backward(ctx, &dx, &dw, bias ? &db : NULL, &proj, &x, &w, s,
                                    p) == 0,
             "conv2d %s runs on %d thread(s) %s", name, ctx->n_threads, ap_errmsg());
    /* Both sides are fp32 with different summation orders over up to
     * C*kh*kw = 144 (out, din) or B*Ho*Wo = 198 (dw, db) products of normal
     * values (terms up to ~10, results up to ~40): rounding differences
     * ~sqrt(n) * 6e-8 * 10 ~ 1e-5 (measured max 1.3e-5); atol 1e-4 + rtol 1e-5
     * leaves ~10x margin. */
    snprintf(what, sizeof what, "%s out vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, y.data, want_y.data, ny, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s grad_in vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, dx.data, want_dx.data, nx, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s grad_weight vs torch (%dT)", name, ctx->n_threads);
    tu_compare(what, dw.data, want_dw.data, nw, 1e-4, 1e-5);
    if (bias) {
        snprintf(what, sizeof what, "%s grad_bias vs torch (%dT)", name, ctx->n_threads);
        tu_compare(what, db.data, want_db.data, w.shape[0], 1e-4, 1e-5);
    }
    free(x.data), free(w.data), free(b.data), free(proj.data), free(want_y.data);
    free(want_dx.data), free(want_dw.data), free(want_db.data), free(st.data), free(pd.data);
    free(y.data), free(dx.data), free(dw.data), free(db.data);
}

static void test_shapes(ap_ctx *ctx) {
    static float buf[4096];
    ap_tensor x = ap_t4(buf, 2, 3, 7, 5), w = ap_t4(buf, 4, 3, 3, 3);
    ap_tensor y = ap_t4(buf, 2, 4, 7, 5), b = ap_t1(buf, 4);
    ap_tensor w_badc = ap_t4(buf, 4, 2, 3, 3), y_bad = ap_t4(buf, 2, 4, 4, 3);
    ap_tensor b_bad = ap_t1(buf, 5), big = ap_t4(buf, 4, 3, 11, 3);
    tu_expect_error("conv2d_forward with weight C 2 for in C 3",
                    ap_conv2d_forward(ctx, &y, &x, &w_badc, &b, 1, 1), "conv2d_forward",
                    "weight", "(4, 2, 3, 3)", "(2, 3, 7, 5)", NULL);
    tu_expect_error("conv2d_forward with out (2, 4, 4, 3) for s1 p1",
                    ap_conv2d_forward(ctx, &y_bad, &x, &w, &b, 1, 1), "conv2d_forward",
                    "out", "(2, 4, 7, 5)", "(2, 4, 4, 3)", "(2, 3, 7, 5)", "(4, 3, 3, 3)",
                    NULL);
    tu_expect_error("conv2d_forward with bias (5) for O 4",
                    ap_conv2d_forward(ctx, &y, &x, &w, &b_bad, 1, 1), "conv2d_forward",
                    "bias", "(5)", "(2, 3, 7, 5)", "(4, 3, 3, 3)", NULL);
    tu_expect_error("conv2d_forward with stride 0",
                    ap_conv2d_forward(ctx, &y, &x, &w, &b, 0, 1), "conv2d_forward",
                    "stride", "(2, 3, 7, 5)", "(4, 3, 3, 3)", NULL);
    tu_expect_error("conv2d_forward with an 11x3 kernel on 7x5 pad 1",
                    ap_conv2d_forward(ctx, &y, &x, &big, NULL, 1, 1), "conv2d_forward",
                    "kernel", "(4, 3, 11, 3)", NULL);
    tu_expect_error("conv2d_backward with dout (2, 4, 4, 3) for s1 p1",
                    ap_conv2d_backward(ctx, &x, &w, &b, &y_bad, &x, &w, 1, 1),
                    "conv2d_backward", "dout", "(2, 4, 4, 3)", "(2, 3, 7, 5)", NULL);
    tu_expect_error("conv2d_backward with dweight (4, 2, 3, 3)",
                    ap_conv2d_backward(ctx, NULL, &w_badc, NULL, &y, &x, &w, 1, 1),
                    "conv2d_backward", "dweight", "(4, 2, 3, 3)", "(4, 3, 3, 3)", NULL);
    tu_expect_error("conv2d_backward with dbias (5)",
                    ap_conv2d_backward(ctx, NULL, NULL, &b_bad, &y, &x, &w, 1, 1),
                    "conv2d_backward", "dbias", "(5)", NULL);
    tu_expect_error("conv2d_backward with stride 0",
                    ap_conv2d_backward(ctx, &x, NULL, NULL, &y, &x, &w, 0, 1),
                    "conv2d_backward", "stride", NULL);
}

/* The packed GEMM rounds the same way at every vector width (bias, then the
 * k products in order by FMA, then + C) and the Winograd transforms are the
 * same adds: AVX2 and AVX-512 give the same bits, forward, din and dw. */
static void test_isa_agree(ap_ctx *ctx) {
    if (!ap_cpu_isa_supported(AP_ISA_AVX512) || !ap_cpu_isa_supported(AP_ISA_AVX2)) {
        printf("  skip AVX2 vs AVX-512 bit-identity: this CPU lacks one of them\n");
        return;
    }
    const ap_isa was = ctx->isa;
    const geom gs[] = {{2, 64, 16, 17, 64, 3, 3, 1, 1, 1}, /* Winograd (forced below) */
                       {1, 13, 9, 40, 29, 3, 3, 1, 1, 1},  /* packed, row-spanning panels */
                       {2, 7, 11, 9, 5, 3, 3, 2, 1, 1},    /* strided */
                       {1, 33, 8, 8, 70, 1, 1, 1, 0, 1}};  /* 1x1 direct */
    for (size_t k = 0; k < sizeof gs / sizeof *gs; k++) {
        if (k == 0) ctx->conv_path = AP_CONV_WINOGRAD;
        conv_case c[2];
        for (int v = 0; v < 2; v++) {
            case_alloc(&c[v], ctx, gs[k], 90 + k);
            ap_ctx_set_isa(ctx, v ? AP_ISA_AVX2 : AP_ISA_AVX512);
            tu_check(ap_conv2d_forward(ctx, &c[v].y, &c[v].x, &c[v].w, &c[v].b, gs[k].s,
                                       gs[k].p) == 0, "isa-agree forward runs");
            tu_check(ap_conv2d_backward(ctx, &c[v].dx, &c[v].dw, &c[v].db, &c[v].proj, &c[v].x,
                                        &c[v].w, gs[k].s, gs[k].p) == 0,
                     "isa-agree backward runs");
        }
        char gb[96], what[160];
        geom_str(&gs[k], gb, sizeof gb);
        snprintf(what, sizeof what, "conv2d out AVX2 == AVX-512 bit for bit (%s)", gb);
        tu_compare(what, c[1].y.data, c[0].y.data, ap_numel(&c[0].y), 0, 0);
        snprintf(what, sizeof what, "conv2d din AVX2 == AVX-512 bit for bit (%s)", gb);
        tu_compare(what, c[1].dx.data, c[0].dx.data, ap_numel(&c[0].dx), 0, 0);
        snprintf(what, sizeof what, "conv2d dw AVX2 == AVX-512 bit for bit (%s)", gb);
        tu_compare(what, c[1].dw.data, c[0].dw.data, ap_numel(&c[0].dw), 0, 0);
        case_free(&c[0]), case_free(&c[1]);
        if (k == 0) ctx->conv_path = AP_CONV_AUTO;
    }
    ap_ctx_set_isa(ctx, was);
}

int main(void) {
    ap_ctx ctx1, ctx2;
    ap_ctx_init(&ctx1, 1);
    ap_ctx_init(&ctx2, 2);
    printf("test_conv2d: gradchecks and naive reference\n");
    /* B, C, H, W, O, kh, kw, stride, pad, bias */
    test_case(&ctx2, (geom){2, 3, 7, 5, 4, 3, 3, 1, 1, 1}, 1);
    test_case(&ctx2, (geom){2, 3, 9, 7, 5, 3, 3, 2, 1, 1}, 2);
    test_case(&ctx2, (geom){2, 3, 8, 6, 4, 3, 3, 2, 1, 0}, 3);
    test_case(&ctx2, (geom){2, 5, 3, 7, 4, 1, 1, 1, 0, 1}, 4);
    test_case(&ctx1, (geom){2, 4, 5, 6, 3, 1, 1, 2, 0, 1}, 5);
    test_case(&ctx2, (geom){2, 3, 6, 8, 4, 2, 2, 2, 0, 0}, 6);
    test_case(&ctx2, (geom){1, 2, 8, 7, 3, 3, 2, 3, 1, 1}, 7);
    test_case(&ctx2, (geom){1, 2, 3, 2, 3, 5, 4, 1, 2, 1}, 8);
    test_case(&ctx2, (geom){2, 3, 28, 28, 5, 14, 14, 14, 0, 0}, 9);
    /* Stride 1 with pad > k - 1: din cannot be a forward conv (negative pad)
     * and takes the GEMM + col2im path even where the packed GEMM runs. */
    test_case(&ctx2, (geom){1, 3, 4, 5, 2, 1, 1, 1, 1, 1}, 10);
    test_case(&ctx2, (geom){1, 2, 4, 5, 3, 3, 3, 1, 3, 1}, 11);
    /* Pad k - 1 (flipped conv pad 0), output rows of 33 > one 32-pixel panel. */
    test_case(&ctx1, (geom){1, 2, 5, 33, 13, 3, 3, 1, 2, 0}, 12);
    printf("test_conv2d: accumulation and optional outputs\n");
    test_accumulate(&ctx2);
    printf("test_conv2d: row chunks\n");
    test_chunked(&ctx2);
    printf("test_conv2d: PyTorch goldens\n");
    ap_st_file *f = tu_fixture_open("ops_conv");
    if (f) {
        for (size_t k = 0; k < sizeof GOLDEN_CASES / sizeof *GOLDEN_CASES; k++) {
            test_golden(f, &ctx1, GOLDEN_CASES[k]);
            test_golden(f, &ctx2, GOLDEN_CASES[k]);
        }
        ap_st_close(f);
    }
    printf("test_conv2d: shape errors\n");
    test_shapes(&ctx2);
    printf("test_conv2d: kernel variants agree\n");
    test_isa_agree(&ctx2);
    /* Forward and backward have two paths (packed GEMM on the AVX2 and AVX-512
     * variants, im2col + BLAS on generic); cover the BLAS one here too. */
    printf("test_conv2d: im2col + BLAS forward and backward (AP_CONV2D_BLAS=1)\n");
    ctx1.conv_path = ctx2.conv_path = AP_CONV_BLAS;
    test_case(&ctx2, (geom){2, 3, 7, 5, 4, 3, 3, 1, 1, 1}, 1);
    test_accumulate(&ctx2);
    test_case(&ctx2, (geom){2, 3, 9, 7, 5, 3, 3, 2, 1, 1}, 2);
    test_case(&ctx2, (geom){2, 5, 3, 7, 4, 1, 1, 1, 0, 1}, 4);
    test_case(&ctx2, (geom){1, 2, 3, 2, 3, 5, 4, 1, 2, 1}, 8);
    test_chunked(&ctx2);
    f = tu_fixture_open("ops_conv");
    if (f) {
        for (size_t k = 0; k < sizeof GOLDEN_CASES / sizeof *GOLDEN_CASES; k++)
            test_golden(f, &ctx2, GOLDEN_CASES[k]);
        ap_st_close(f);
    }
    ctx1.conv_path = ctx2.conv_path = AP_CONV_AUTO;
    /* Winograd F(2x2, 3x3) (3x3/s1/p1 forward and din): by default only for
     * C, O >= 64 and >= 256 tiles; AP_CONV2D_WINOGRAD=1 forces it for every
     * 3x3/s1/p1 shape: odd H/W (border tiles), C/O not multiples of 16, B>1,
     * images smaller than a tile block. */
    printf("test_conv2d: Winograd forced on (AP_CONV2D_WINOGRAD=1)\n");
    ctx1.conv_path = ctx2.conv_path = AP_CONV_WINOGRAD;
    test_case(&ctx2, (geom){2, 3, 7, 5, 4, 3, 3, 1, 1, 1}, 1);
    test_case(&ctx2, (geom){3, 5, 9, 7, 7, 3, 3, 1, 1, 1}, 21);
    test_case(&ctx1, (geom){1, 17, 6, 11, 19, 3, 3, 1, 1, 0}, 22);
    test_case(&ctx2, (geom){2, 33, 5, 3, 35, 3, 3, 1, 1, 1}, 23);
    test_case(&ctx2, (geom){1, 2, 1, 1, 3, 3, 3, 1, 1, 1}, 24);
    test_case(&ctx2, (geom){1, 3, 4, 131, 2, 3, 3, 1, 1, 1}, 25);
    test_chunked(&ctx2);
    test_wg_chunks(&ctx2);
    f = tu_fixture_open("ops_conv");
    if (f) {
        for (size_t k = 0; k < sizeof GOLDEN_CASES / sizeof *GOLDEN_CASES; k++)
            test_golden(f, &ctx2, GOLDEN_CASES[k]);
        ap_st_close(f);
    }
    ctx1.conv_path = ctx2.conv_path = AP_CONV_AUTO;
    printf("test_conv2d: Winograd by default at SD size, vs im2col (AP_CONV2D_DIRECT=1)\n");
    test_wg_sd(&ctx2);
    /* A default-eligible shape (C, O >= 64, 2 x 12x12 = 288 tiles) against
     * the naive reference (gradchecks at this size take minutes; the forced
     * cases above gradcheck the same code), and the same forced onto im2col. */
    /* out, din: sums of 585 terms |x w| <= 0.5 (|out| up to ~15), measured
     * <= 1e-5 on both paths: tolerance 5e-5. dw: sums over 1104 pixels of
     * |x proj| <= 1, measured 2.3e-5 (same code on both paths): 1e-4. */
    test_naive(&ctx2, (geom){2, 65, 23, 24, 67, 3, 3, 1, 1, 1}, 26,
               "B2 C65 23x24 O67, default path: Winograd", 5e-5, 5e-5, 1e-4);
    ctx1.conv_path = ctx2.conv_path = AP_CONV_DIRECT;
    test_naive(&ctx2, (geom){2, 65, 23, 24, 67, 3, 3, 1, 1, 1}, 26,
               "B2 C65 23x24 O67, AP_CONV2D_DIRECT=1: im2col", 5e-5, 5e-5, 1e-4);
    ctx1.conv_path = ctx2.conv_path = AP_CONV_AUTO;
    ap_ctx_free(&ctx1);
    ap_ctx_free(&ctx2);
    return tu_exit();
}
