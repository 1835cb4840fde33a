/* test_ddim.c: DDIM schedule/step, CFG and truncation rule against
 * diffusers 0.17.1 (tools/fixtures/ddim.py), the check values
 * of docs/ddim.md, finite differences, the config JSON reader and the
 * error messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "ops/ddim_step.h"
#include "sched/ddim.h"
#include "testutil.h"

#define NLAT 64 /* fixture latent (1, 4, 4, 4) */

/* The step and guidance ops on raw float arrays of n elements (as (n)
 * tensors; a NULL pointer is an absent tensor). */
static ap_ctx g_ctx;
static ap_tensor view(const float *p, int64_t n) { return ap_t1((float *)p, n); }
static int step(const ap_ddim *s, int i, float *y, const float *x, const float *e,
                const float *nz, int64_t n) {
    ap_tensor ty = view(y, n), tx = view(x, n), te = view(e, n), tn = view(nz, n);
    return ap_ddim_step(&g_ctx, s, i, &ty, &tx, &te, &tn);
}
static int step_back(const ap_ddim *s, int i, float *dx, float *de, const float *g,
                     const float *x, const float *e, int64_t n) {
    ap_tensor tdx = view(dx, n), tde = view(de, n), tg = view(g, n), tx = view(x, n),
              te = view(e, n);
    return ap_ddim_step_backward(&g_ctx, s, i, &tdx, &tde, &tg, &tx, &te);
}
static void cfg(float *out, const float *u, const float *c, float g, int64_t n) {
    ap_tensor to = view(out, n), tu = view(u, n), tc = view(c, n);
    if (ap_guidance_forward(&g_ctx, &to, &tu, &tc, g)) printf("guidance: %s\n", ap_errmsg());
}
static void cfg_back(float *du, float *dc, const float *g_, float g, int64_t n) {
    ap_tensor tdu = view(du, n), tdc = view(dc, n), tg = view(g_, n);
    if (ap_guidance_backward(&g_ctx, &tdu, &tdc, &tg, g)) printf("guidance: %s\n", ap_errmsg());
}

/* docs/ddim.md §4 table: t, alpha_t, alpha_prev, c_x, c_eps for i = 0..49 */
static const double spec_table[50][5] = {
    {981, 0.005775497, 0.007281723, 1.122851701, -0.123252006},
    {961, 0.007281723, 0.009117304, 1.118964092, -0.119451746},
    {941, 0.009117304, 0.011337904, 1.115149686, -0.115739579},
    {921, 0.011337904, 0.014004891, 1.111407878, -0.112116535},
    {901, 0.014004891, 0.017185159, 1.107737643, -0.108583237},
    {881, 0.017185159, 0.020950807, 1.104138626, -0.105140966},
    {861, 0.020950807, 0.025378602, 1.100610023, -0.101790509},
    {841, 0.025378602, 0.030549254, 1.097151149, -0.098532699},
    {821, 0.030549254, 0.036546499, 1.093761370, -0.095368318},
    {801, 0.036546499, 0.043455977, 1.090440246, -0.092298213},
    {781, 0.043455977, 0.051363889, 1.087186850, -0.089322578},
    {761, 0.051363889, 0.060355529, 1.084000746, -0.086441925},
    {741, 0.060355529, 0.070513651, 1.080881464, -0.083656538},
    {721, 0.070513651, 0.081916668, 1.077828190, -0.080966130},
    {701, 0.081916668, 0.094636843, 1.074840403, -0.078370498},
    {681, 0.094636843, 0.108738475, 1.071917835, -0.075869480},
    {661, 0.108738475, 0.124275967, 1.069059700, -0.073462153},
    {641, 0.124275967, 0.141292080, 1.066265441, -0.071147618},
    {621, 0.141292080, 0.159816340, 1.063534739, -0.068925031},
    {601, 0.159816340, 0.179863468, 1.060866881, -0.066792947},
    {581, 0.179863468, 0.201432332, 1.058261775, -0.064750437},
    {561, 0.201432332, 0.224504679, 1.055718442, -0.062795469},
    {541, 0.224504679, 0.249044731, 1.053236692, -0.060926777},
    {521, 0.249044731, 0.274998873, 1.050816245, -0.059142950},
    {501, 0.274998873, 0.302295476, 1.048456380, -0.057442042},
    {481, 0.302295476, 0.330845445, 1.046156737, -0.055822541},
    {461, 0.330845445, 0.360543042, 1.043917023, -0.054283094},
    {441, 0.360543042, 0.391266853, 1.041736710, -0.052822200},
    {421, 0.391266853, 0.422881305, 1.039615425, -0.051438732},
    {401, 0.422881305, 0.455238581, 1.037552992, -0.050132118},
    {381, 0.455238581, 0.488180220, 1.035548775, -0.048901563},
    {361, 0.488180220, 0.521539629, 1.033602538, -0.047747297},
    {341, 0.521539629, 0.555144310, 1.031713919, -0.046670051},
    {321, 0.555144310, 0.588818431, 1.029882673, -0.045671616},
    {301, 0.588818431, 0.622385144, 1.028108409, -0.044754742},
    {281, 0.622385144, 0.655669034, 1.026390745, -0.043923749},
    {261, 0.655669034, 0.688498795, 1.024729540, -0.043185506},
    {241, 0.688498795, 0.720709145, 1.023124358, -0.042549406},
    {221, 0.720709145, 0.752143085, 1.021574908, -0.042029358},
    {201, 0.752143085, 0.782654226, 1.020081177, -0.041646187},
    {181, 0.782654226, 0.812107444, 1.018642468, -0.041429012},
    {161, 0.812107444, 0.840381563, 1.017258933, -0.041424144},
    {141, 0.840381563, 0.867369652, 1.015930160, -0.041702726},
    {121, 0.867369652, 0.892980218, 1.014655953, -0.042383187},
    {101, 0.892980218, 0.917137623, 1.013436019, -0.043675965},
    {81, 0.917137623, 0.939782739, 1.012270259, -0.045998298},
    {61, 0.939782739, 0.960872650, 1.011158377, -0.050323889},
    {41, 0.960872650, 0.980380654, 1.010100184, -0.059735150},
    {21, 0.980380654, 0.998296022, 1.009095580, -0.100063821},
    {1, 0.998296022, 0.999149978, 1.000427615, -0.012141781},
};

static ap_ddim g_sd; /* SD v1.5, 50 steps */

/* ---------------------------------------------------------------- docs values */

static void test_spec_values(void) {
    printf("docs/ddim.md check values (SD v1.5, 50 steps):\n");
    ap_ddim *s = &g_sd;
    int ok = s->steps == 50 && s->step_ratio == 20;
    for (int i = 0; i < 50; i++) ok &= s->timesteps[i] == 981 - 20 * i;
    tu_check(ok, "timesteps are 981, 961, ..., 1 (ratio 20, offset 1): got %d .. %d",
             s->timesteps[0], s->timesteps[49]);
    /* docs/ddim.md prints 8-10 significant digits of float32 values: compare
     * with the float value's own precision (rel 1.2e-7). */
    float b[4] = {s->betas[0], s->betas[1], s->betas[500], s->betas[999]};
    float bw[4] = {0.0008499999531f, 0.0008546986f, 0.0048149545f, 0.0119999992f};
    tu_compare("betas 0, 1, 500, 999 vs docs §2", b, bw, 4, 0, 1.2e-7);
    float a[5] = {s->alphas_cumprod[0], s->alphas_cumprod[1], s->alphas_cumprod[499],
                  s->alphas_cumprod[999], s->final_alpha_cumprod};
    float aw[5] = {0.99914998f, 0.99829602f, 0.27766946f, 0.0046600960f, 0.99914998f};
    tu_compare("alphas_cumprod 0, 1, 499, 999, final vs docs §2", a, aw, 5, 0, 1.2e-7);
    float got[4][50], want[4][50];
    int tok = 1;
    for (int i = 0; i < 50; i++) {
        ap_ddim_coef c;
        ap_ddim_coeffs(s, i, &c);
        tok &= c.t == (int)spec_table[i][0] && c.prev_t == c.t - 20;
        got[0][i] = c.alpha_t, got[1][i] = c.alpha_prev, got[2][i] = c.c_x, got[3][i] = c.c_eps;
        for (int k = 0; k < 4; k++) want[k][i] = (float)spec_table[i][k + 1];
    }
    tu_check(tok, "coefficient table: t and prev_t = t - 20 of all 50 rows");
    /* alphas: 9 decimals of a float (abs 5e-10 + its ulp). c_x, c_eps are
     * derived: the docs' and ours are both within ~1 ulp of the real value. */
    tu_compare("table alpha_t (50) vs docs §4", got[0], want[0], 50, 1e-9, 1.2e-7);
    tu_compare("table alpha_prev (50) vs docs §4", got[1], want[1], 50, 1e-9, 1.2e-7);
    tu_compare("table c_x (50) vs docs §4", got[2], want[2], 50, 1e-9, 2.4e-7);
    /* c_eps = sqrt_dir - c_x * sqrt_beta_t cancels: each float sqrt carries
     * up to 6e-8 absolute error (half an ulp of ~1), so abs 1.2e-7. */
    tu_compare("table c_eps (50) vs docs §4", got[3], want[3], 50, 1.2e-7, 0);
    /* docs/ddim.md §7: prod of c_x over all steps telescopes to sqrt(alpha_0 / alpha_981) */
    double prod = 1;
    for (int i = 0; i < 50; i++) {
        ap_ddim_coef c;
        ap_ddim_coeffs(s, i, &c);
        prod *= c.c_x;
    }
    double tel = sqrt((double)s->alphas_cumprod[0] / s->alphas_cumprod[981]);
    tu_check(fabs(prod - tel) < 1e-5 * tel && fabs(prod - 13.15) < 0.01,
             "product of c_x = %.6f = sqrt(a_0 / a_981) = %.6f (docs: ~13.15)", prod, tel);
}

/* ---------------------------------------------------------------- goldens */

static ap_st_file *g_fx;

static float *fx(const char *name, ap_tensor *t) { return tu_fixture(g_fx, name, t); }

static void golden_schedule(void) {
    printf("schedule vs diffusers 0.17.1 DDIMScheduler.from_config(SD v1.5 PNDM config):\n");
    ap_tensor t;
    fx("sd.betas", &t);
    tu_compare("sd betas (1000) exact", g_sd.betas, t.data, 1000, 0, 0);
    free(t.data);
    fx("sd.alphas_cumprod", &t);
    tu_compare("sd alphas_cumprod (1000) exact", g_sd.alphas_cumprod, t.data, 1000, 0, 0);
    free(t.data);
    fx("sd.final_alpha_cumprod", &t);
    tu_compare("sd final_alpha_cumprod exact", &g_sd.final_alpha_cumprod, t.data, 1, 0, 0);
    free(t.data);
    fx("sd.timesteps", &t);
    float ts[50];
    for (int i = 0; i < 50; i++) ts[i] = (float)g_sd.timesteps[i];
    tu_compare("sd timesteps (50) exact", ts, t.data, 50, 0, 0);
    free(t.data);

    ap_ddim_config c;
    ap_ddim_config_defaults(&c);
    ap_ddim lin;
    tu_check(ap_ddim_init(&lin, &c, 50) == 0, "linear defaults init (%s)", ap_errmsg());
    fx("lin.betas", &t);
    tu_compare("linear 1e-4..0.02 betas (1000) exact", lin.betas, t.data, 1000, 0, 0);
    free(t.data);
    fx("lin.alphas_cumprod", &t);
    tu_compare("linear alphas_cumprod (1000) exact", lin.alphas_cumprod, t.data, 1000, 0, 0);
    free(t.data);
    /* odd length (halfway split and the linspace tail at other places) */
    c.num_train_timesteps = 777;
    c.beta_start = 0.001, c.beta_end = 0.03;
    snprintf(c.beta_schedule, sizeof c.beta_schedule, "scaled_linear");
    tu_check(ap_ddim_init(&lin, &c, 10) == 0, "777-step scaled_linear init (%s)", ap_errmsg());
    fx("odd.betas", &t);
    tu_compare("777-step scaled_linear 0.001..0.03 betas exact", lin.betas, t.data, 777, 0, 0);
    free(t.data);
    fx("odd.alphas_cumprod", &t);
    tu_compare("777-step alphas_cumprod exact", lin.alphas_cumprod, t.data, 777, 0, 0);
    free(t.data);

    static const struct { const char *spacing; int n; } sp[] = {
        {"leading", 7}, {"leading", 999}, {"trailing", 7}, {"trailing", 50},
        {"trailing", 999}};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
        ap_ddim_config_sd15(&c);
        snprintf(c.timestep_spacing, sizeof c.timestep_spacing, "%s", sp[k].spacing);
        ap_ddim *s = malloc(sizeof *s);
        char name[64], what[96];
        snprintf(name, sizeof name, "ts_%s%d.timesteps", sp[k].spacing, sp[k].n);
        int rc = ap_ddim_init(s, &c, sp[k].n);
        tu_check(rc == 0, "%s init (%s)", name, rc ? ap_errmsg() : "ok");
        fx(name, &t);
        float *got = tu_alloc(sp[k].n);
        for (int i = 0; i < sp[k].n; i++) got[i] = (float)s->timesteps[i];
        snprintf(what, sizeof what, "%s exact", name);
        tu_check(t.shape[0] == sp[k].n, "%s has %d entries (found %lld)", name, sp[k].n,
                 (long long)t.shape[0]);
        tu_compare(what, got, t.data, sp[k].n, 0, 0);
        free(got), free(t.data), free(s);
    }
}

/* 50 steps from x0 with the fixture's eps: each step from diffusers' own
 * input (per-step check) and the chained trajectory; then the chained
 * backward of sum(x_final * proj). Everything is float32 in the same op order
 * as diffusers/autograd: expected bit-exact (tolerance 0). */
static void golden_trajectory(void) {
    printf("50-step trajectory (1, 4, 4, 4) vs diffusers step() and autograd:\n");
    ap_tensor x0, eps, xs, proj, gx0, geps;
    fx("traj.x0", &x0);
    fx("traj.eps", &eps);
    fx("traj.xs", &xs);
    fx("traj.proj", &proj);
    fx("traj.grad_x0", &gx0);
    fx("traj.grad_eps", &geps);
    float *x = tu_alloc(NLAT), *y = tu_alloc(NLAT), *all = tu_alloc(50 * NLAT);
    memcpy(x, x0.data, sizeof(float) * NLAT);
    for (int i = 0; i < 50; i++) {
        const float *in = i ? xs.data + (i - 1) * NLAT : x0.data;
        step(&g_sd, i, all + i * NLAT, in, eps.data + i * NLAT, NULL, NLAT);
        step(&g_sd, i, x, x, eps.data + i * NLAT, NULL, NLAT); /* in place */
    }
    tu_compare("each step from diffusers' input (50 x 64) exact", all, xs.data, 50 * NLAT, 0, 0);
    tu_compare("chained in-place trajectory, final x exact", x, xs.data + 49 * NLAT, NLAT, 0, 0);
    float *g = tu_alloc(NLAT), *deps = tu_alloc(50 * NLAT);
    memcpy(g, proj.data, sizeof(float) * NLAT);
    for (int i = 49; i >= 0; i--)
        step_back(&g_sd, i, g, deps + i * NLAT, g, NULL, NULL, NLAT);
    tu_compare("chained backward dL/deps_i (50 x 64) exact", deps, geps.data, 50 * NLAT, 0, 0);
    tu_compare("chained backward dL/dx0 exact", g, gx0.data, NLAT, 0, 0);
    free(x), free(y), free(all), free(g), free(deps);
    free(x0.data), free(eps.data), free(xs.data), free(proj.data), free(gx0.data);
    free(geps.data);
}

/* Single steps (eta > 0 with given noise, or clip_sample) at the fixture's
 * step indices; forward and both gradients bit-exact. */
static void golden_single(const char *cs, const ap_ddim *s) {
    ap_tensor ti, x, e, nz = {0}, out, proj, gx, ge;
    char key[64];
#define LOAD(role, t)                                  \
    snprintf(key, sizeof key, "%s.%s", cs, role);     \
    fx(key, &t)
    LOAD("i", ti);
    LOAD("x", x);
    LOAD("eps", e);
    LOAD("out", out);
    LOAD("proj", proj);
    LOAD("grad_x", gx);
    LOAD("grad_eps", ge);
    if (s->eta > 0) {
        LOAD("noise", nz);
    }
#undef LOAD
    for (int64_t r = 0; r < ti.shape[0]; r++) {
        int i = (int)ti.data[r];
        int64_t o = r * NLAT;
        float y[NLAT], dx[NLAT], de[NLAT];
        char what[128];
        int rc = step(s, i, y, x.data + o, e.data + o, nz.data ? nz.data + o : NULL,
                              NLAT);
        rc |= step_back(s, i, dx, de, proj.data + o, x.data + o, e.data + o, NLAT);
        tu_check(rc == 0, "%s step %d runs (%s)", cs, i, rc ? ap_errmsg() : "ok");
        snprintf(what, sizeof what, "%s step i=%d (t=%d) forward exact", cs, i, s->timesteps[i]);
        tu_compare(what, y, out.data + o, NLAT, 0, 0);
        snprintf(what, sizeof what, "%s step i=%d dx exact", cs, i);
        tu_compare(what, dx, gx.data + o, NLAT, 0, 0);
        snprintf(what, sizeof what, "%s step i=%d deps exact", cs, i);
        tu_compare(what, de, ge.data + o, NLAT, 0, 0);
    }
    free(ti.data), free(x.data), free(e.data), free(nz.data), free(out.data);
    free(proj.data), free(gx.data), free(ge.data);
}

static void golden_cfg(void) {
    printf("CFG eps_u + 7.5 * (eps_c - eps_u) vs torch (2, 4, 4, 4):\n");
    ap_tensor u, c, out, proj, gu, gc;
    fx("cfg.u", &u);
    fx("cfg.c", &c);
    fx("cfg.out", &out);
    fx("cfg.proj", &proj);
    fx("cfg.grad_u", &gu);
    fx("cfg.grad_c", &gc);
    int64_t n = ap_numel(&u);
    float *e = tu_alloc(n), *du = tu_alloc(n), *dc = tu_alloc(n);
    cfg(e, u.data, c.data, 7.5f, n);
    tu_compare("cfg forward exact", e, out.data, n, 0, 0);
    cfg_back(du, dc, proj.data, 7.5f, n);
    tu_compare("cfg d/deps_u exact", du, gu.data, n, 0, 0);
    tu_compare("cfg d/deps_c exact", dc, gc.data, n, 0, 0);
    free(e), free(du), free(dc);
    free(u.data), free(c.data), free(out.data), free(proj.data), free(gu.data), free(gc.data);
}

static void test_goldens(void) {
    g_fx = tu_fixture_open("ddim");
    if (!g_fx) return;
    golden_schedule();
    golden_trajectory();
    printf("single steps vs diffusers step() and autograd:\n");
    ap_ddim_config c;
    ap_ddim_config_sd15(&c);
    c.eta = 0.5;
    ap_ddim *s = malloc(sizeof *s);
    tu_check(ap_ddim_init(s, &c, 50) == 0, "eta 0.5 init");
    golden_single("eta", s);
    ap_ddim_config_sd15(&c);
    c.clip_sample = 1;
    tu_check(ap_ddim_init(s, &c, 50) == 0, "clip_sample init");
    golden_single("clip", s);
    free(s);
    golden_cfg();
    ap_st_close(g_fx);
}

/* ---------------------------------------------------------------- gradchecks */

typedef struct {
    const ap_ddim *s;
    int i;
    float *x, *eps, *noise, *out;
    const float *proj;
    int64_t n;
} step_case;

static double step_loss(void *p) {
    step_case *c = p;
    step(c->s, c->i, c->out, c->x, c->eps, c->noise, c->n);
    return tu_dot(c->out, c->proj, c->n);
}

static void gradcheck_step(const char *what, const ap_ddim *s, int i, float xscale) {
    enum { N = 37 };
    float x[N], e[N], nz[N], out[N], proj[N], dx[N], de[N];
    tu_fill_normal(x, N, 11 + i, xscale);
    tu_fill_normal(e, N, 12 + i, 1);
    tu_fill_normal(nz, N, 13 + i, 1);
    tu_fill_uniform(proj, N, 14 + i, -1, 1);
    if (s->clip_sample) { /* keep x0 away from the clamp's kinks by > 4 * eps */
        ap_ddim_coef co;
        ap_ddim_coeffs(s, i, &co);
        for (int k = 0; k < N; k++) {
            float x0 = (x[k] - co.sqrt_beta_t * e[k]) / co.sqrt_alpha_t;
            if (fabsf(fabsf(x0) - s->clip_sample_range) < 0.1f) x[k] += 0.3f * co.sqrt_alpha_t;
        }
    }
    step_case c = {s, i, x, e, nz, out, proj, N};
    int rc = step_back(s, i, dx, de, proj, x, e, N);
    tu_check(rc == 0, "%s backward runs (%s)", what, rc ? ap_errmsg() : "ok");
    if (s->clip_sample) {
        int z = 0;
        for (int k = 0; k < N; k++) z += dx[k] == 0;
        tu_check(z > 0 && z < N, "%s: %d of %d points clamped (both sides of the clamp tested)",
                 what, z, N);
    }
    char w[128];
    /* The step is linear (piecewise with clip; the random points sit away
     * from the kinks with overwhelming probability): central differences in
     * float are exact up to rounding of x +- eps, ~1e-7 / 1e-2 relative. */
    snprintf(w, sizeof w, "%s dx", what);
    tu_gradcheck(w, step_loss, &c, x, N, dx, 1e-2, 1e-3, N);
    snprintf(w, sizeof w, "%s deps", what);
    tu_gradcheck(w, step_loss, &c, e, N, de, 1e-2, 1e-3, N);
}

typedef struct {
    float *u, *c, *out;
    const float *proj;
    float g;
    int64_t n;
} cfg_case;

static double cfg_loss(void *p) {
    cfg_case *c = p;
    cfg(c->out, c->u, c->c, c->g, c->n);
    return tu_dot(c->out, c->proj, c->n);
}

static void test_gradchecks(void) {
    printf("gradchecks (central differences, n = 37):\n");
    gradcheck_step("step i=0 (t=981)", &g_sd, 0, 1);
    gradcheck_step("step i=49 (t=1, final alpha)", &g_sd, 49, 1);
    ap_ddim_config c;
    ap_ddim_config_sd15(&c);
    c.eta = 0.7;
    ap_ddim *s = malloc(sizeof *s);
    ap_ddim_init(s, &c, 25);
    gradcheck_step("eta 0.7, 25 steps, step i=12", s, 12, 1);
    ap_ddim_config_sd15(&c);
    c.clip_sample = 1;
    c.clip_sample_range = 0.8;
    ap_ddim_init(s, &c, 50);
    gradcheck_step("clip_sample 0.8 step i=40", s, 40, 0.5);
    free(s);
    enum { N = 29 };
    float u[N], cc[N], out[N], proj[N], du[N], dc[N];
    tu_fill_normal(u, N, 21, 1);
    tu_fill_normal(cc, N, 22, 1);
    tu_fill_uniform(proj, N, 23, -1, 1);
    cfg_case k = {u, cc, out, proj, 7.5f, N};
    cfg_back(du, dc, proj, 7.5f, N);
    tu_gradcheck("cfg 7.5 deps_u", cfg_loss, &k, u, N, du, 1e-2, 1e-3, N);
    tu_gradcheck("cfg 7.5 deps_c", cfg_loss, &k, cc, N, dc, 1e-2, 1e-3, N);
    /* aliasing: in-place forward and backward agree with out-of-place */
    float e2[N], x2[N], g2[N], de2[N];
    cfg(out, u, cc, 7.5f, N);
    memcpy(e2, u, sizeof u);
    cfg(e2, e2, cc, 7.5f, N);
    tu_compare("cfg in place (eps aliases eps_u)", e2, out, N, 0, 0);
    float xo[N], dxo[N], deo[N];
    memcpy(x2, u, sizeof u);
    step(&g_sd, 3, xo, u, cc, NULL, N);
    step(&g_sd, 3, x2, x2, cc, NULL, N);
    tu_compare("step in place (x_prev aliases x)", x2, xo, N, 0, 0);
    step_back(&g_sd, 3, dxo, deo, proj, NULL, NULL, N);
    memcpy(g2, proj, sizeof proj);
    step_back(&g_sd, 3, g2, de2, g2, NULL, NULL, N);
    tu_compare("step backward in place (dx aliases dx_prev)", g2, dxo, N, 0, 0);
    tu_compare("step backward in place: deps", de2, deo, N, 0, 0);
    /* dx = c_x * g, deps = c_eps * g up to rounding (documented form) */
    ap_ddim_coef co;
    ap_ddim_coeffs(&g_sd, 3, &co);
    float cx[N], ce[N];
    for (int k2 = 0; k2 < N; k2++) cx[k2] = co.c_x * proj[k2], ce[k2] = co.c_eps * proj[k2];
    tu_compare("step backward = c_x * dx_prev (2 roundings)", dxo, cx, N, 1e-7, 3e-7);
    tu_compare("step backward = c_eps * dx_prev (cancellation: abs)", deo, ce, N, 5e-7, 0);
}

/* ---------------------------------------------------------------- config JSON */

static char g_tmpdir[256];

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        printf("  FAIL cannot write %s\n", path);
        exit(1);
    }
    return path;
}

static int same_config(const ap_ddim_config *a, const ap_ddim_config *b) {
    return a->num_train_timesteps == b->num_train_timesteps && a->beta_start == b->beta_start &&
           a->beta_end == b->beta_end && !strcmp(a->beta_schedule, b->beta_schedule) &&
           a->trained_betas == b->trained_betas && a->clip_sample == b->clip_sample &&
           a->clip_sample_range == b->clip_sample_range &&
           a->set_alpha_to_one == b->set_alpha_to_one && a->steps_offset == b->steps_offset &&
           !strcmp(a->prediction_type, b->prediction_type) &&
           a->thresholding == b->thresholding &&
           !strcmp(a->timestep_spacing, b->timestep_spacing) &&
           a->rescale_betas_zero_snr == b->rescale_betas_zero_snr && a->eta == b->eta;
}

/* SD v1.5's file minus the clip_sample key, plus one extra "key": value. */
static const char *variant(const char *name, const char *extra) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\",\n"
             " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\",\n"
             " \"beta_start\": 0.00085, \"num_train_timesteps\": 1000,\n"
             " \"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1,\n"
             " \"trained_betas\": null%s%s}\n",
             extra ? ", " : "", extra ? extra : "");
    return write_tmp(name, text);
}

static void test_config_json(void) {
    printf("scheduler_config.json reader:\n");
    ap_ddim_config c, sd;
    ap_ddim_config_sd15(&sd);
    const char *dir = tu_fixtures_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/ddim/scheduler_config.json", dir ? dir : ".");
    int rc = ap_ddim_config_from_json(&c, path);
    tu_check(rc == 0, "reads SD v1.5 scheduler/scheduler_config.json (%s)",
             rc ? ap_errmsg() : "ok");
    tu_check(rc == 0 && same_config(&c, &sd),
             "SD v1.5 file = ap_ddim_config_sd15 (scaled_linear 0.00085..0.012, clip_sample "
             "false, set_alpha_to_one false, steps_offset 1, epsilon, leading)");
    ap_ddim *s = malloc(sizeof *s);
    rc = ap_ddim_init(s, &c, 50);
    tu_check(rc == 0 && !memcmp(s, &g_sd, sizeof *s),
             "schedule from the file is identical to the preset's");

    rc = ap_ddim_config_from_json(&c, variant("noclip.json", NULL));
    tu_check(rc == 0 && c.clip_sample == 1 && c.clip_sample_range == 1.0,
             "a config without clip_sample gets DDIM's default clip_sample TRUE (docs/ddim.md §1)");
    rc = ap_ddim_config_from_json(
        &c, variant("resave.json",
                    "\"clip_sample\": false, \"prediction_type\": \"epsilon\", "
                    "\"thresholding\": false, \"clip_sample_range\": 1.0, "
                    "\"dynamic_thresholding_ratio\": 0.995, \"sample_max_value\": 1.0, "
                    "\"timestep_spacing\": \"leading\", \"rescale_betas_zero_snr\": false"));
    tu_check(rc == 0 && same_config(&c, &sd), "later re-save with all DDIM keys = preset (%s)",
             rc ? ap_errmsg() : "ok");

    const char *p = variant("vpred.json", "\"prediction_type\": \"v_prediction\"");
    rc = ap_ddim_config_from_json(&c, p);
    if (!rc) rc = ap_ddim_init(s, &c, 50);
    tu_check(rc == 0 && s->vpred == 1 && !strcmp(c.prediction_type, "v_prediction"),
             "prediction_type v_prediction (SD 2.x 768) is read and selects the v step (%s)",
             rc ? ap_errmsg() : "ok");

    printf("config errors name the file, the key, expected and found:\n");
    p = write_tmp("cos.json", "{\"beta_schedule\": \"squaredcos_cap_v2\"}");
    tu_expect_error("beta_schedule squaredcos_cap_v2", ap_ddim_config_from_json(&c, p),
                    "cos.json", "beta_schedule", "\"scaled_linear\" or \"linear\"",
                    "squaredcos_cap_v2", NULL);
    p = write_tmp("spacing.json", "{\"timestep_spacing\": \"linspace\"}");
    tu_expect_error("timestep_spacing linspace", ap_ddim_config_from_json(&c, p),
                    "timestep_spacing", "\"leading\" or \"trailing\"", "linspace", NULL);
    p = write_tmp("thr.json", "{\"thresholding\": true}");
    tu_expect_error("thresholding true", ap_ddim_config_from_json(&c, p), "thr.json",
                    "thresholding", "expected false", NULL);
    p = write_tmp("zsnr.json", "{\"rescale_betas_zero_snr\": true}");
    tu_expect_error("rescale_betas_zero_snr true", ap_ddim_config_from_json(&c, p),
                    "rescale_betas_zero_snr", "expected false", NULL);
    p = write_tmp("tb.json", "{\"trained_betas\": [0.1, 0.2]}");
    tu_expect_error("trained_betas list", ap_ddim_config_from_json(&c, p), "trained_betas",
                    "expected null", NULL);
    p = write_tmp("type.json", "{\"steps_offset\": \"1\"}");
    tu_expect_error("steps_offset as a string", ap_ddim_config_from_json(&c, p), "type.json",
                    "steps_offset", "expected a number", "string", NULL);
    p = write_tmp("frac.json", "{\"num_train_timesteps\": 1000.5}");
    tu_expect_error("num_train_timesteps 1000.5", ap_ddim_config_from_json(&c, p),
                    "num_train_timesteps", "expected an integer", "1000.5", NULL);
    p = write_tmp("bool.json", "{\"clip_sample\": 0}");
    tu_expect_error("clip_sample 0", ap_ddim_config_from_json(&c, p), "clip_sample",
                    "expected true or false", NULL);
    p = write_tmp("arr.json", "[1, 2]");
    tu_expect_error("not an object", ap_ddim_config_from_json(&c, p), "arr.json",
                    "expected a JSON object", NULL);
    snprintf(path, sizeof path, "%s/missing.json", g_tmpdir);
    tu_expect_error("missing file", ap_ddim_config_from_json(&c, path), "missing.json", NULL);
    free(s);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    printf("init and step errors:\n");
    ap_ddim_config c;
    ap_ddim *s = malloc(sizeof *s);
    ap_ddim_config_sd15(&c);
    tu_expect_error("steps 0", ap_ddim_init(s, &c, 0), "steps", "1..", "found 0", NULL);
    tu_expect_error("steps 1001", ap_ddim_init(s, &c, 1001), "steps", "found 1001", NULL);
    c.steps_offset = 1;
    tu_expect_error("1000 leading steps with steps_offset 1 (t = 1000; diffusers fails in "
                    "step())",
                    ap_ddim_init(s, &c, 1000), "timestep 1000", "outside 0..999", NULL);
    c.steps_offset = 20;
    tu_expect_error("steps_offset 20 (t = 1000)", ap_ddim_init(s, &c, 50), "timestep 1000",
                    "outside 0..999", NULL);
    ap_ddim_config_sd15(&c);
    snprintf(c.timestep_spacing, sizeof c.timestep_spacing, "trailing");
    tu_expect_error("trailing with 61 steps", ap_ddim_init(s, &c, 61), "trailing",
                    "62 timesteps", NULL);
    ap_ddim_config_sd15(&c);
    snprintf(c.prediction_type, sizeof c.prediction_type, "sample");
    tu_expect_error("prediction_type sample", ap_ddim_init(s, &c, 50), "prediction_type",
                    "\"epsilon\" or \"v_prediction\"", "\"sample\"", NULL);
    ap_ddim_config_sd15(&c);
    snprintf(c.beta_schedule, sizeof c.beta_schedule, "cosine");
    tu_expect_error("beta_schedule cosine", ap_ddim_init(s, &c, 50), "beta_schedule",
                    "\"scaled_linear\" or \"linear\"", "\"cosine\"", NULL);
    ap_ddim_config_sd15(&c);
    c.eta = -1;
    tu_expect_error("eta -1", ap_ddim_init(s, &c, 50), "eta", ">= 0", NULL);
    float x[4] = {0}, y[4];
    tu_expect_error("step i = 50", step(&g_sd, 50, y, x, x, NULL, 4), "index i",
                    "0..49", "found 50", NULL);
    tu_expect_error("backward i = -1", step_back(&g_sd, -1, y, y, x, NULL, NULL, 4),
                    "index i", "found -1", NULL);
    ap_ddim_config_sd15(&c);
    c.eta = 1;
    ap_ddim_init(s, &c, 50);
    tu_expect_error("eta 1 without noise", step(s, 0, y, x, x, NULL, 4), "noise",
                    "eta > 0", NULL);
    ap_ddim_config_sd15(&c);
    c.clip_sample = 1;
    ap_ddim_init(s, &c, 50);
    tu_expect_error("clip backward without x", step_back(s, 0, y, y, x, NULL, x, 4),
                    "clip_sample", "x, eps", NULL);
    free(s);
}

/* ---------------------------------------------------------------- truncation */

typedef struct {
    const int *seq;
    int pos;
    uint64_t state; /* for the random source */
} draw_src;

static int scripted_draw(void *p, int lo, int hi) {
    draw_src *d = p;
    int v = d->seq[d->pos++];
    return v < lo ? lo : v > hi ? hi : v;
}

static int uniform_draw(void *p, int lo, int hi) {
    draw_src *d = p;
    d->state = d->state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (int)((d->state >> 33) % (uint64_t)(hi - lo + 1));
}

static void test_truncation(void) {
    printf("truncated backprop rule (main.py 7f4503f, docs/ddim.md §8):\n");
    unsigned char at[50];
    ap_trunc_config full = {0, 0, {35, 45}, 100, 0}; /* general(): not truncated */
    int nd = ap_trunc_plan(&full, 50, NULL, NULL, at);
    int cnt = 0;
    for (int i = 0; i < 50; i++) cnt += at[i];
    tu_check(nd == 0 && cnt == 50, "truncated_backprop False: 50 of 50 attached, 0 draws");

    ap_trunc_config k1 = {1, 0, {0, 50}, 49, 0}; /* aesthetic_k1 / hps_k1 */
    nd = ap_trunc_plan(&k1, 50, NULL, NULL, at);
    cnt = 0;
    for (int i = 0; i < 50; i++) cnt += at[i];
    tu_check(nd == 0 && cnt == 1 && at[49] == 1,
             "K=1 (trunc_backprop_timestep 49): only step 49 (t = 1) attached, 0 draws");

    /* aesthetic / hps: a fresh randint(0, 50) per step, detach when i < K */
    ap_trunc_config rnd = {1, 1, {0, 50}, 40, 0};
    int seq[50];
    for (int i = 0; i < 50; i++) seq[i] = (i * 37 + 11) % 51;
    draw_src d = {seq, 0, 0};
    nd = ap_trunc_plan(&rnd, 50, scripted_draw, &d, at);
    int ok = nd == 50;
    for (int i = 0; i < 50; i++) ok &= at[i] == (i >= seq[i]);
    tu_check(ok, "random: 50 draws, one per step in order, step i attached iff i >= K_i");
    /* statistics: P(attached at i) = (i + 1) / 51, mean 25 attached steps */
    int trials = 20000, hits0 = 0, hits49 = 0;
    long total = 0, noncontig = 0;
    d.state = 12345;
    for (int r = 0; r < trials; r++) {
        ap_trunc_plan(&rnd, 50, uniform_draw, &d, at);
        int first = -1, gaps = 0;
        for (int i = 0; i < 50; i++) {
            total += at[i];
            if (at[i] && first < 0) first = i;
            if (!at[i] && first >= 0) gaps = 1;
        }
        hits0 += at[0], hits49 += at[49], noncontig += gaps;
    }
    double mean = (double)total / trials;
    /* binomial std of the mean ~ 3.5 / sqrt(20000) = 0.025: 0.15 is 6 sigma */
    tu_check(fabs(mean - 25.0) < 0.15 && fabs(hits0 / (double)trials - 1 / 51.0) < 0.006 &&
                 fabs(hits49 / (double)trials - 50 / 51.0) < 0.006 && noncontig > trials / 2,
             "random: mean attached %.3f (expect 25), P(step 0) %.4f (1/51 = %.4f), "
             "P(step 49) %.4f (50/51), non-contiguous in %ld of %d",
             mean, hits0 / (double)trials, 1 / 51.0, hits49 / (double)trials, noncontig,
             trials);

    /* per-trajectory variant: one draw, contiguous suffix i >= K attached */
    ap_trunc_config traj = {1, 1, {0, 50}, 40, 1};
    int one[1] = {37};
    draw_src d1 = {one, 0, 0};
    nd = ap_trunc_plan(&traj, 50, scripted_draw, &d1, at);
    ok = nd == 1;
    for (int i = 0; i < 50; i++) ok &= at[i] == (i >= 37);
    tu_check(ok, "per-trajectory: 1 draw (K = 37), steps 37..49 attached (last 13)");

    ap_trunc_config bad = {1, 1, {50, 0}, 40, 0};
    tu_expect_error("minmax (50, 0)", ap_trunc_plan(&bad, 50, uniform_draw, &d, at),
                    "truncated_backprop_minmax", "(50, 0)", NULL);
    tu_expect_error("random without a draw source", ap_trunc_plan(&rnd, 50, NULL, NULL, at),
                    "draw", "random.randint", NULL);
}

int main(void) {
    printf("test_ddim: DDIM scheduler, CFG, truncation rule\n");
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/ap_test_ddim.XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        printf("FAIL: mkdtemp\n");
        return 1;
    }
    ap_ddim_config c;
    ap_ddim_config_sd15(&c);
    if (ap_ddim_init(&g_sd, &c, 50) != 0) {
        printf("FAIL: SD v1.5 init: %s\n", ap_errmsg());
        return 1;
    }
    ap_ctx_init(&g_ctx, 1);
    test_spec_values();
    test_goldens();
    test_gradchecks();
    test_config_json();
    test_errors();
    test_truncation();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) printf("  note: could not remove %s\n", g_tmpdir);
    ap_ctx_free(&g_ctx);
    return tu_exit();
}
