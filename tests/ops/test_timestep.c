/* test_timestep.c: sinusoidal timestep embedding: diffusers 0.17.1 goldens
 * (tools/fixtures/ops_misc.py), docs/unet.md §4 check values, gradchecks
 * of dt, shape and parameter errors. */
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "ops/timestep.h"
#include "testutil.h"

typedef struct {
    int flip;
    float shift, scale;
    int period;
} ts_params;

typedef struct {
    ap_ctx *ctx;
    ap_tensor t, out;
    const float *proj;
    ts_params p;
} ts_case;

static double ts_loss(void *s) {
    ts_case *c = s;
    ap_timestep_embedding_forward(c->ctx, &c->out, &c->t, c->p.flip, c->p.shift, c->p.scale,
                                  c->p.period);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void gradcheck_ts(ap_ctx *ctx, const char *what, int64_t dim, ts_params p) {
    float t[4] = {0.5f, 3.75f, 12.25f, 40.0f}, dt[4];
    int64_t B = 4;
    float *out = tu_alloc(B * dim), *proj = tu_alloc(B * dim);
    tu_fill_uniform(proj, B * dim, 41, -1, 1);
    ts_case c = {ctx, ap_t1(t, B), ap_t2(out, B, dim), proj, p};
    ap_tensor tdt = ap_t1(dt, B), tdy = ap_t2(proj, B, dim);
    tu_check(ap_timestep_embedding_backward(ctx, &tdt, &tdy, &c.t, p.flip, p.shift, p.scale,
                                            p.period) == 0,
             "%s backward runs (%s)", what, ap_errmsg());
    /* t = O(10) is exact in fp32 after +-eps (t chosen on a coarse grid);
     * truncation error of sin(f t) ~ eps^2 f^3 scale^3 / 6 ~ 1e-4. */
    tu_gradcheck(what, ts_loss, &c, t, B, dt, 1e-2, 2e-3, 4);
    free(out), free(proj);
}

static void test_gradchecks(ap_ctx *ctx) {
    gradcheck_ts(ctx, "timestep dt dim 16 flip shift 0", 16, (ts_params){1, 0, 1, 10000});
    gradcheck_ts(ctx, "timestep dt dim 9 no flip shift 1", 9, (ts_params){0, 1, 1, 10000});
    gradcheck_ts(ctx, "timestep dt dim 7 flip shift 0.5 scale 2 period 1000", 7,
                 (ts_params){1, 0.5f, 2, 1000});
}

static void golden(ap_ctx *ctx, ap_st_file *f, const char *cs, ts_params p) {
    char key[128];
    ap_tensor t, out, proj, gt;
    snprintf(key, sizeof key, "%s.t", cs);
    tu_fixture(f, key, &t);
    snprintf(key, sizeof key, "%s.out", cs);
    tu_fixture(f, key, &out);
    snprintf(key, sizeof key, "%s.proj", cs);
    tu_fixture(f, key, &proj);
    snprintf(key, sizeof key, "%s.grad_t", cs);
    tu_fixture(f, key, &gt);
    int64_t B = out.shape[0], dim = out.shape[1];
    float *y = tu_alloc(B * dim), *dt = tu_alloc(B);
    ap_tensor ty = ap_t2(y, B, dim), tdt = ap_t1(dt, B);
    tu_check(ap_timestep_embedding_forward(ctx, &ty, &t, p.flip, p.shift, p.scale, p.period) == 0,
             "%s forward runs (%s)", cs, ap_errmsg());
    /* Frequencies are bit-exact with torch; sin/cos here are correctly
     * rounded, torch's SLEEF ones within 1 ulp: |err| <= 6e-8 for |v| <= 1. */
    char what[160];
    snprintf(what, sizeof what, "%s (B=%lld, dim %lld) forward vs diffusers", cs, (long long)B,
             (long long)dim);
    tu_compare(what, y, out.data, B * dim, 1.2e-7, 0);
    tu_check(ap_timestep_embedding_backward(ctx, &tdt, &proj, &t, p.flip, p.shift, p.scale,
                                            p.period) == 0,
             "%s backward runs (%s)", cs, ap_errmsg());
    /* dt sums dim/2 terms of size <= 2*scale*f_k: torch in fp32, here in
     * double; fp32 summation error ~ 1e-6 of the sum of |terms|. */
    snprintf(what, sizeof what, "%s dt vs torch autograd", cs);
    tu_compare(what, dt, gt.data, B, 1e-5, 1e-5);
    free(y), free(dt), free(t.data), free(out.data), free(proj.data), free(gt.data);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_misc");
    if (!f) return;
    golden(ctx, f, "ts_sd", (ts_params){1, 0, 1, 10000});
    golden(ctx, f, "ts_odd", (ts_params){0, 1, 1, 10000});
    golden(ctx, f, "ts_param", (ts_params){1, 0.5f, 2, 1000});
    golden(ctx, f, "ts_ddim", (ts_params){1, 0, 1, 10000});
    ap_st_close(f);
}

/* docs/unet.md §4 check values (6 significant digits). */
static void test_spec_values(ap_ctx *ctx) {
    float t[2] = {981, 1}, e[2 * 320];
    ap_tensor tt = ap_t1(t, 2), te = ap_t2(e, 2, 320);
    tu_check(ap_timestep_embedding_forward(ctx, &te, &tt, 1, 0, 1, 10000) == 0, "SD embedding runs");
    float got[9] = {e[0], e[1], e[159], e[160], e[161], e[319], e[320], e[480], e[639]};
    const float want[9] = {0.679957f, -0.798429f, 0.994606f, 0.733252f, 0.602089f,
                           0.103726f, 0.540302f,  0.841471f, 1.0593e-4f};
    tu_compare("t=981 emb[0,1,159,160,161,319], t=1 emb[0,160,319] vs docs", got, want, 9, 1e-6,
               1e-4);
    /* dim 1: no frequency, one zero pad column (diffusers pads odd dims). */
    float e1[2] = {7, 7};
    ap_tensor te1 = ap_t2(e1, 2, 1);
    tu_check(ap_timestep_embedding_forward(ctx, &te1, &tt, 1, 0, 1, 10000) == 0 && e1[0] == 0 &&
                 e1[1] == 0,
             "dim 1 gives zeros");
}

static void test_errors(ap_ctx *ctx) {
    float buf[64], t[3] = {1, 2, 3};
    ap_tensor tt = ap_t1(t, 3), out_bad = ap_t2(buf, 2, 8), out = ap_t2(buf, 3, 8);
    tu_expect_error("timestep_embedding_forward with out (2, 8) for t (3)",
                    ap_timestep_embedding_forward(ctx, &out_bad, &tt, 1, 0, 1, 10000),
                    "timestep_embedding_forward", "out", "(3, *)", "(2, 8)", NULL);
    ap_tensor dt_bad = ap_t1(buf, 2);
    tu_expect_error("timestep_embedding_backward with dt (2) for t (3)",
                    ap_timestep_embedding_backward(ctx, &dt_bad, &out, &tt, 1, 0, 1, 10000),
                    "timestep_embedding_backward", "dt", "(3)", "(2)", NULL);
    ap_tensor out2 = ap_t2(buf, 3, 2);
    tu_expect_error("timestep_embedding_forward dim 2 shift 1 (0 divisor)",
                    ap_timestep_embedding_forward(ctx, &out2, &tt, 0, 1, 1, 10000),
                    "timestep_embedding_forward", "downscale_freq_shift", NULL);
    tu_expect_error("timestep_embedding_forward max_period 0",
                    ap_timestep_embedding_forward(ctx, &out, &tt, 0, 0, 1, 0),
                    "timestep_embedding_forward", "max_period", NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_timestep: sinusoidal timestep embedding\n");
    test_gradchecks(&ctx);
    test_goldens(&ctx);
    test_spec_values(&ctx);
    test_errors(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
