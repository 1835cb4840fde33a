/* test_ddim_step.c: the DDIM update and guidance ops (ops/ddim_step.h):
 * backward against central differences of the forward (plain, with noise,
 * with the clamp; epsilon and v prediction), in-place forms equal to
 * out-of-place bit for bit, and argument errors. Bit-exactness against diffusers and autograd is
 * tests/sched/test_ddim.c's (through sched/ddim.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/ddim_step.h"
#include "testutil.h"

enum { N = 41 };

/* SD v1.5's step 10 of 50 (t = 781) to float precision, eta 0.6. */
static const ap_ddim_scalars k_plain = {.sqrt_alpha_t = 0.20846f, .sqrt_beta_t = 0.97803f,
                                        .sqrt_alpha_prev = 0.22663f, .sqrt_dir = 0.97222f,
                                        .sigma = 0.05f};

typedef struct {
    ap_ctx *ctx;
    int guidance; /* 0: DDIM update, 1: guidance */
    ap_tensor a, b, noise, out; /* update: a = x, b = eps; guidance: a = eps_u, b = eps_c */
    const ap_ddim_scalars *k;
    const float *proj;
} step_case;

static double loss(void *p) {
    step_case *c = p;
    if (c->guidance) ap_guidance_forward(c->ctx, &c->out, &c->a, &c->b, 7.5f);
    else ap_ddim_update_forward(c->ctx, &c->out, &c->a, &c->b, &c->noise, c->k);
    return tu_dot(c->out.data, c->proj, N);
}

static void gradcheck(ap_ctx *ctx, const char *what, int guidance, const ap_ddim_scalars *k,
                      int noisy) {
    float a[N], b[N], nz[N], out[N], proj[N], da[N], db[N];
    tu_fill_normal(a, N, 31, 1);
    tu_fill_normal(b, N, 32, 1);
    tu_fill_normal(nz, N, 33, 1);
    tu_fill_uniform(proj, N, 34, -1, 1);
    if (k && k->clip) /* keep x0 away from the clamp's kinks */
        for (int i = 0; i < N; i++) {
            float x0 = k->vpred ? k->sqrt_alpha_t * a[i] - k->sqrt_beta_t * b[i]
                                : (a[i] - k->sqrt_beta_t * b[i]) / k->sqrt_alpha_t;
            if (fabsf(fabsf(x0) - k->clip_range) < 0.2f)
                a[i] += k->vpred ? 0.5f / k->sqrt_alpha_t : 0.5f * k->sqrt_alpha_t;
        }
    step_case c = {ctx, guidance, ap_t1(a, N), ap_t1(b, N), ap_t1(noisy ? nz : NULL, N),
                   ap_t1(out, N), k, proj};
    ap_tensor tda = ap_t1(da, N), tdb = ap_t1(db, N), tp = ap_t1(proj, N);
    int rc = guidance ? ap_guidance_backward(ctx, &tda, &tdb, &tp, 7.5f)
                      : ap_ddim_update_backward(ctx, &tda, &tdb, &tp, &c.a, &c.b, k);
    tu_check(rc == 0, "%s backward runs%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    if (k && k->clip) {
        int z = 0; /* clamped points (v prediction: dx keeps its e path there) */
        for (int i = 0; i < N; i++) {
            float x0 = k->vpred ? k->sqrt_alpha_t * a[i] - k->sqrt_beta_t * b[i]
                                : (a[i] - k->sqrt_beta_t * b[i]) / k->sqrt_alpha_t;
            z += !(x0 >= -k->clip_range && x0 <= k->clip_range);
        }
        tu_check(z > 0 && z < N, "%s: %d of %d points clamped (both sides tested)", what, z, N);
    }
    /* Linear (piecewise with the clamp, points away from the kinks): central
     * differences in float are exact up to the rounding of x +- eps:
     * 1e-3 * max(1, max|ana|). */
    char name[128];
    snprintf(name, sizeof name, "%s d(%s)", what, guidance ? "eps_u" : "x");
    tu_gradcheck(name, loss, &c, a, N, da, 1e-2, 1e-3, N);
    snprintf(name, sizeof name, "%s d(%s)", what, guidance ? "eps_c" : "eps");
    tu_gradcheck(name, loss, &c, b, N, db, 1e-2, 1e-3, N);
}

static void in_place(ap_ctx *ctx, const ap_ddim_scalars *k, const char *what) {
    float x[N], e[N], y[N], x2[N], g[N], dx[N], de[N], g2[N], de2[N];
    tu_fill_normal(x, N, 41, 1);
    tu_fill_normal(e, N, 42, 1);
    tu_fill_uniform(g, N, 43, -1, 1);
    memcpy(x2, x, sizeof x);
    memcpy(g2, g, sizeof g);
    ap_tensor tx = ap_t1(x, N), te = ap_t1(e, N), ty = ap_t1(y, N), tx2 = ap_t1(x2, N);
    ap_tensor tg = ap_t1(g, N), tdx = ap_t1(dx, N), tde = ap_t1(de, N), tg2 = ap_t1(g2, N),
              tde2 = ap_t1(de2, N);
    int rc = ap_ddim_update_forward(ctx, &ty, &tx, &te, NULL, k);
    rc |= ap_ddim_update_forward(ctx, &tx2, &tx2, &te, NULL, k);
    tu_check(rc == 0 && !memcmp(x2, y, sizeof y),
             "%s: update in place (x_prev aliases x) equals out of place bit for bit", what);
    rc = ap_ddim_update_backward(ctx, &tdx, &tde, &tg, NULL, NULL, k);
    rc |= ap_ddim_update_backward(ctx, &tg2, &tde2, &tg2, NULL, NULL, k);
    tu_check(rc == 0 && !memcmp(g2, dx, sizeof dx) && !memcmp(de2, de, sizeof de),
             "%s: update backward in place (dx aliases dx_prev) equals out of place bit for bit",
             what);
    if (k->vpred) return; /* guidance does not depend on the prediction type */
    memcpy(x2, x, sizeof x);
    rc = ap_guidance_forward(ctx, &ty, &tx, &te, 7.5f);
    rc |= ap_guidance_forward(ctx, &tx2, &tx2, &te, 7.5f);
    tu_check(rc == 0 && !memcmp(x2, y, sizeof y),
             "guidance in place (eps aliases eps_u) equals out of place bit for bit");
    memcpy(g2, g, sizeof g);
    rc = ap_guidance_backward(ctx, &tdx, &tde, &tg, 7.5f);
    rc |= ap_guidance_backward(ctx, &tg2, &tde2, &tg2, 7.5f);
    tu_check(rc == 0 && !memcmp(g2, dx, sizeof dx) && !memcmp(de2, de, sizeof de),
             "guidance backward in place (deps_u aliases deps) equals out of place bit for bit");
}

static void errors(ap_ctx *ctx) {
    float buf[16];
    ap_tensor a = ap_t1(buf, 8), b = ap_t1(buf + 8, 7), none = ap_t1(NULL, 8);
    tu_expect_error("update eps shape", ap_ddim_update_forward(ctx, &a, &a, &b, NULL, &k_plain),
                    "ddim_update_forward", "eps", "(7)", "(8)", NULL);
    ap_ddim_scalars kc = k_plain;
    kc.clip = 1, kc.clip_range = 1;
    tu_expect_error("clip backward without x",
                    ap_ddim_update_backward(ctx, &a, NULL, &a, &none, &a, &kc),
                    "ddim_update_backward", "x, eps", "clip_sample", NULL);
    ap_tensor c = ap_t1(buf + 8, 8);
    tu_expect_error("update backward dx aliases deps",
                    ap_ddim_update_backward(ctx, &c, &c, &a, NULL, NULL, &k_plain),
                    "must not alias", NULL);
    tu_expect_error("guidance eps_c shape", ap_guidance_forward(ctx, &a, &a, &b, 7.5f),
                    "guidance_forward", "eps_c", "(7)", NULL);
    tu_expect_error("guidance backward without deps",
                    ap_guidance_backward(ctx, &a, NULL, &none, 7.5f), "guidance_backward",
                    "deps", "found none", NULL);
}

int main(void) {
    printf("test_ddim_step: DDIM update and guidance ops\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 1);
    gradcheck(&ctx, "update", 0, &k_plain, 0);
    gradcheck(&ctx, "update with noise", 0, &k_plain, 1);
    ap_ddim_scalars kc = k_plain;
    kc.clip = 1, kc.clip_range = 0.8f;
    gradcheck(&ctx, "update with clamp 0.8", 0, &kc, 0);
    ap_ddim_scalars kv = k_plain;
    kv.vpred = 1;
    gradcheck(&ctx, "v-prediction update", 0, &kv, 0);
    gradcheck(&ctx, "v-prediction update with noise", 0, &kv, 1);
    kv.clip = 1, kv.clip_range = 0.8f;
    gradcheck(&ctx, "v-prediction update with clamp 0.8", 0, &kv, 0);
    kv.clip = 0;
    gradcheck(&ctx, "guidance 7.5", 1, NULL, 0);
    in_place(&ctx, &k_plain, "epsilon");
    in_place(&ctx, &kv, "v-prediction");
    errors(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
