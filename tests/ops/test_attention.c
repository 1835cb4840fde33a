/* test_attention.c: gradchecks, PyTorch goldens and shape errors of the fused
 * multi-head attention (src/ops/attention.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "ops/attention.h"
#include "testutil.h"

/* ---- gradchecks -------------------------------------------------------- */

typedef struct {
    ap_ctx *ctx;
    ap_tensor q, k, v, out, lse;
    const float *proj;
    int heads, causal;
    float scale;
} attn_case;

static double attn_loss(void *p) {
    attn_case *c = p;
    if (ap_attention_forward(c->ctx, &c->out, &c->lse, &c->q, &c->k, &c->v, c->heads,
                             c->scale, c->causal) != 0) {
        printf("    forward failed: %s\n", ap_errmsg());
        return NAN;
    }
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void gradcheck_case(ap_ctx *ctx, const char *name, int64_t B, int64_t Lq,
                           int64_t Lk, int H, int64_t D, int causal, uint64_t seed) {
    int64_t C = H * D, nq = B * Lq * C, nk = B * Lk * C;
    float *q = tu_alloc(nq), *k = tu_alloc(nk), *v = tu_alloc(nk);
    float *o = tu_alloc(nq), *lse = tu_alloc(B * H * Lq), *proj = tu_alloc(nq);
    float *dq = tu_alloc(nq), *dk = tu_alloc(nk), *dv = tu_alloc(nk);
    tu_fill_normal(q, nq, seed, 1.0f);
    tu_fill_normal(k, nk, seed + 1, 1.0f);
    tu_fill_normal(v, nk, seed + 2, 1.0f);
    tu_fill_uniform(proj, nq, seed + 3, -1, 1);
    attn_case c = {ctx, ap_t3(q, B, Lq, C), ap_t3(k, B, Lk, C), ap_t3(v, B, Lk, C),
                   ap_t3(o, B, Lq, C), ap_t3(lse, B, H, Lq), proj, H, causal,
                   1.0f / sqrtf((float)D)};
    ap_tensor tdq = ap_t3(dq, B, Lq, C), tdk = ap_t3(dk, B, Lk, C),
              tdv = ap_t3(dv, B, Lk, C), tdo = ap_t3(proj, B, Lq, C);
    attn_loss(&c);
    tu_check(ap_attention_backward(ctx, &tdq, &tdk, &tdv, &tdo, &c.q, &c.k, &c.v, &c.out,
                                   &c.lse, H, c.scale, causal) == 0,
             "attention_backward runs (%s): %s", name, ap_errmsg());
    /* fp32 forward, double loss: eps 1e-2 keeps the central-difference
     * truncation error ~1e-4 and the fp32 rounding of the loss (~1e-6
     * relative, divided by 2 eps) ~1e-4 as well; 2e-3 leaves margin. */
    char what[96];
    snprintf(what, sizeof what, "dq %s", name);
    tu_gradcheck(what, attn_loss, &c, q, nq, dq, 1e-2, 2e-3, 200);
    snprintf(what, sizeof what, "dk %s", name);
    tu_gradcheck(what, attn_loss, &c, k, nk, dk, 1e-2, 2e-3, 200);
    snprintf(what, sizeof what, "dv %s", name);
    tu_gradcheck(what, attn_loss, &c, v, nk, dv, 1e-2, 2e-3, 200);
    free(q), free(k), free(v), free(o), free(lse), free(proj);
    free(dq), free(dk), free(dv);
}

static void test_gradchecks(ap_ctx *ctx) {
    gradcheck_case(ctx, "(B=2 Lq=5 Lk=7 H=3 D=4)", 2, 5, 7, 3, 4, 0, 10);
    gradcheck_case(ctx, "causal (B=2 L=6 H=2 D=3)", 2, 6, 6, 2, 3, 1, 20);
    gradcheck_case(ctx, "(B=1 Lq=1 Lk=7 H=2 D=4)", 1, 1, 7, 2, 4, 0, 30);
    gradcheck_case(ctx, "causal (B=1 L=1 H=1 D=2)", 1, 1, 1, 1, 2, 1, 40);
}

/* ---- PyTorch goldens --------------------------------------------------- */

static float fixture_scalar(ap_st_file *f, const char *cname, const char *param) {
    char key[96];
    ap_tensor t;
    snprintf(key, sizeof key, "%s.%s", cname, param);
    float *x = tu_fixture(f, key, &t);
    float s = x[0];
    free(x);
    return s;
}

/* Runs one golden case on ctx; label names the thread setting. */
static void golden_case(ap_ctx *ctx, ap_st_file *f, const char *cname, const char *label) {
    const char *roles[] = {"q", "k", "v", "proj", "out", "lse", "grad_q", "grad_k", "grad_v"};
    ap_tensor t[9];
    float *x[9];
    char key[96], what[128];
    for (int i = 0; i < 9; i++) {
        snprintf(key, sizeof key, "%s.%s", cname, roles[i]);
        x[i] = tu_fixture(f, key, &t[i]);
    }
    int heads = (int)fixture_scalar(f, cname, "heads");
    int causal = (int)fixture_scalar(f, cname, "causal");
    float scale = fixture_scalar(f, cname, "scale");
    int64_t nq = ap_numel(&t[0]), nk = ap_numel(&t[1]), nl = ap_numel(&t[5]);
    float *o = tu_alloc(nq), *lse = tu_alloc(nl), *dq = tu_alloc(nq), *dk = tu_alloc(nk),
          *dv = tu_alloc(nk);
    ap_tensor to = ap_tn(o, 3, t[0].shape), tl = ap_tn(lse, 3, t[5].shape);
    ap_tensor tdq = ap_tn(dq, 3, t[0].shape), tdk = ap_tn(dk, 3, t[1].shape),
              tdv = ap_tn(dv, 3, t[1].shape);
    int rc = ap_attention_forward(ctx, &to, &tl, &t[0], &t[1], &t[2], heads, scale, causal);
    tu_check(rc == 0, "%s forward runs: %s", cname, ap_errmsg());
    rc = ap_attention_backward(ctx, &tdq, &tdk, &tdv, &t[3], &t[0], &t[1], &t[2], &to, &tl,
                               heads, scale, causal);
    tu_check(rc == 0, "%s backward runs: %s", cname, ap_errmsg());
    /* Both sides are fp32 with different summation orders (tiles, online
     * softmax, our exp vs libm's): observed differences are ~1e-6 on O(1)
     * values; atol 2e-5 + rtol 1e-4 is ~10x that. */
    snprintf(what, sizeof what, "%s out [%s]", cname, label);
    tu_compare(what, o, x[4], nq, 2e-5, 1e-4);
    snprintf(what, sizeof what, "%s lse [%s]", cname, label);
    tu_compare(what, lse, x[5], nl, 2e-5, 1e-4);
    snprintf(what, sizeof what, "%s grad_q [%s]", cname, label);
    tu_compare(what, dq, x[6], nq, 2e-5, 1e-4);
    snprintf(what, sizeof what, "%s grad_k [%s]", cname, label);
    tu_compare(what, dk, x[7], nk, 2e-5, 1e-4);
    snprintf(what, sizeof what, "%s grad_v [%s]", cname, label);
    tu_compare(what, dv, x[8], nk, 2e-5, 1e-4);

    /* Optional outputs: dq alone, then dk and dv without dq, must give the
     * same numbers (the code paths skip GEMMs); no lse when not wanted. */
    float *dq2 = tu_alloc(nq), *dk2 = tu_alloc(nk), *dv2 = tu_alloc(nk);
    ap_tensor tdq2 = ap_tn(dq2, 3, t[0].shape), tdk2 = ap_tn(dk2, 3, t[1].shape),
              tdv2 = ap_tn(dv2, 3, t[1].shape);
    rc = ap_attention_backward(ctx, &tdq2, NULL, NULL, &t[3], &t[0], &t[1], &t[2], &to,
                               &tl, heads, scale, causal);
    rc |= ap_attention_backward(ctx, NULL, &tdk2, &tdv2, &t[3], &t[0], &t[1], &t[2], &to,
                                &tl, heads, scale, causal);
    tu_check(rc == 0, "%s backward with NULL outputs runs: %s", cname, ap_errmsg());
    snprintf(what, sizeof what, "%s dq alone vs all [%s]", cname, label);
    tu_compare(what, dq2, dq, nq, 0, 0);
    snprintf(what, sizeof what, "%s dk, dv without dq vs all [%s]", cname, label);
    tu_compare(what, dk2, dk, nk, 0, 0);
    tu_compare(what, dv2, dv, nk, 0, 0);
    rc = ap_attention_forward(ctx, &tdq2, NULL, &t[0], &t[1], &t[2], heads, scale, causal);
    tu_check(rc == 0, "%s forward without lse runs: %s", cname, ap_errmsg());
    snprintf(what, sizeof what, "%s out without lse vs with [%s]", cname, label);
    tu_compare(what, dq2, o, nq, 0, 0);

    free(dq2), free(dk2), free(dv2);
    free(o), free(lse), free(dq), free(dk), free(dv);
    for (int i = 0; i < 9; i++) free(x[i]);
}

static void test_goldens(ap_ctx *ctx) {
    ap_st_file *f = tu_fixture_open("ops_attn");
    if (!f) {
        tu_check(0, "fixture ops_attn missing (run tools/make_fixtures.py ops_attn)");
        return;
    }
    const char *cases[] = {"cross", "self300", "causal77", "causal300"};
    char label[32];
    snprintf(label, sizeof label, "%d threads", ctx->n_threads);
    for (int i = 0; i < 4; i++) golden_case(ctx, f, cases[i], label);
    /* 5 threads > B*H: the backward splits keys into chunks with private dq
     * buffers (self300 and causal300 have two key tiles); 1 thread: serial. */
    ap_ctx many, one;
    ap_ctx_init(&many, 5);
    ap_ctx_init(&one, 1);
    golden_case(&many, f, "self300", "5 threads, key chunks");
    golden_case(&many, f, "causal300", "5 threads, key chunks");
    golden_case(&one, f, "causal300", "1 thread");
    ap_ctx_free(&many);
    ap_ctx_free(&one);
    ap_st_close(f);
}

/* ---- thread counts ---------------------------------------------------- */

/* Runs forward + backward of one random case on ctx into res (out, dq, dk, dv). */
static void run_case(ap_ctx *ctx, int64_t B, int64_t L, int H, int64_t D, int causal,
                     float *res[4]) {
    int64_t n = B * L * H * D;
    float *q = tu_alloc(n), *k = tu_alloc(n), *v = tu_alloc(n), *g = tu_alloc(n);
    float *lse = tu_alloc(B * H * L);
    tu_fill_normal(q, n, 50, 1.0f);
    tu_fill_normal(k, n, 51, 1.0f);
    tu_fill_normal(v, n, 52, 1.0f);
    tu_fill_normal(g, n, 53, 1.0f);
    ap_tensor tq = ap_t3(q, B, L, H * D), tk = ap_t3(k, B, L, H * D),
              tv = ap_t3(v, B, L, H * D), tg = ap_t3(g, B, L, H * D),
              tl = ap_t3(lse, B, H, L), to = ap_t3(res[0], B, L, H * D),
              tdq = ap_t3(res[1], B, L, H * D), tdk = ap_t3(res[2], B, L, H * D),
              tdv = ap_t3(res[3], B, L, H * D);
    float scale = 1.0f / sqrtf((float)D);
    int rc = ap_attention_forward(ctx, &to, &tl, &tq, &tk, &tv, H, scale, causal);
    rc |= ap_attention_backward(ctx, &tdq, &tdk, &tdv, &tg, &tq, &tk, &tv, &to, &tl, H,
                                scale, causal);
    tu_check(rc == 0, "attention runs on %d threads: %s", ctx->n_threads, ap_errmsg());
    free(q), free(k), free(v), free(g), free(lse);
}

/* Work items own disjoint outputs and sum in a fixed order, so 2 threads and
 * 5 threads (> B*H = 4: keys split into chunks with private dq buffers) must
 * reproduce the 1-thread result; atol 1e-6 only guards against BLAS kernels
 * that differ between calls. Shapes are large enough to run threaded. */
static void test_threads(void) {
    const int64_t B = 2, L = 300, H = 2, D = 8, n = B * L * H * D;
    const char *names[4] = {"out", "dq", "dk", "dv"};
    for (int causal = 0; causal <= 1; causal++) {
        float *ref[4], *got[4];
        for (int i = 0; i < 4; i++) ref[i] = tu_alloc(n), got[i] = tu_alloc(n);
        ap_ctx one;
        ap_ctx_init(&one, 1);
        run_case(&one, B, L, H, D, causal, ref);
        ap_ctx_free(&one);
        for (int nt = 2; nt <= 5; nt += 3) {
            ap_ctx many;
            ap_ctx_init(&many, nt);
            run_case(&many, B, L, H, D, causal, got);
            ap_ctx_free(&many);
            for (int i = 0; i < 4; i++) {
                char what[96];
                snprintf(what, sizeof what, "%s %d threads vs 1 (B=2 L=300 H=2 D=8%s)",
                         names[i], nt, causal ? " causal" : "");
                tu_compare(what, got[i], ref[i], n, 1e-6, 0);
            }
        }
        for (int i = 0; i < 4; i++) free(ref[i]), free(got[i]);
    }
}

/* ---- shape errors ------------------------------------------------------ */

static void test_shapes(ap_ctx *ctx) {
    float buf[2 * 7 * 16], obuf[2 * 7 * 16], lbuf[64];
    ap_tensor q = ap_t3(buf, 2, 5, 12), k = ap_t3(buf, 2, 7, 12), v = ap_t3(buf, 2, 7, 12);
    ap_tensor out = ap_t3(obuf, 2, 5, 12), lse = ap_t3(lbuf, 2, 3, 5);
    ap_tensor k16 = ap_t3(buf, 2, 7, 16), q10 = ap_t3(buf, 2, 5, 10);
    ap_tensor out10 = ap_t3(obuf, 2, 5, 10), lse_bad = ap_t3(lbuf, 2, 4, 5);
    tu_expect_error("k with 16 channels for q with 12",
                    ap_attention_forward(ctx, &out, &lse, &q, &k16, &v, 3, 0.5f, 0),
                    "attention_forward", "k", "(2, 5, 12)", "(2, 7, 16)", NULL);
    tu_expect_error("12 channels with n_heads 5",
                    ap_attention_forward(ctx, &out, &lse, &q, &k, &v, 5, 0.5f, 0),
                    "attention_forward", "not divisible", "n_heads 5", "(2, 5, 12)", NULL);
    tu_expect_error("10 channels with n_heads 3 in backward",
                    ap_attention_backward(ctx, &out10, NULL, NULL, &out10, &q10, &k, &v,
                                          &out10, &lse, 3, 0.5f, 0),
                    "attention_backward", "10 channels", "n_heads 3", NULL);
    tu_expect_error("causal with Lq 5 != Lk 7",
                    ap_attention_forward(ctx, &out, &lse, &q, &k, &v, 3, 0.5f, 1),
                    "attention_forward", "causal", "(2, 5, 12)", "(2, 7, 12)", NULL);
    tu_expect_error("v (2, 7, 16) for k (2, 7, 12)",
                    ap_attention_forward(ctx, &out, &lse, &q, &k, &k16, 3, 0.5f, 0),
                    "attention_forward", "v", "(2, 7, 16)", NULL);
    tu_expect_error("lse (2, 4, 5) for B=2 H=3 Lq=5",
                    ap_attention_forward(ctx, &out, &lse_bad, &q, &k, &v, 3, 0.5f, 0),
                    "attention_forward", "lse", "(2, 3, 5)", "(2, 4, 5)", NULL);
    tu_expect_error("backward dk (2, 5, 12) for k (2, 7, 12)",
                    ap_attention_backward(ctx, NULL, &out, NULL, &out, &q, &k, &v, &out,
                                          &lse, 3, 0.5f, 0),
                    "attention_backward", "dk", "(2, 5, 12)", "(2, 7, 12)", NULL);
    tu_expect_error("backward without lse",
                    ap_attention_backward(ctx, &out, NULL, NULL, &out, &q, &k, &v, &out,
                                          NULL, 3, 0.5f, 0),
                    "attention_backward", "lse", "found none", NULL);
}

/* Non-finite inputs: exp_neg sees NaN, +-inf and huge negative arguments.
 * Under UBSan this would report a NaN converted to int or a negative value
 * shifted; here the NaN must reach the output (so the sampler's finite
 * check names it) and rows without bad values must stay finite. */
static void test_nonfinite(ap_ctx *ctx) {
    enum { B = 1, L = 6, C = 4 };
    float q[B * L * C], k[B * L * C], v[B * L * C], o[B * L * C], lse[B * 2 * L];
    for (int i = 0; i < B * L * C; i++) q[i] = k[i] = v[i] = 0.1f * (float)(i % 7) - 0.3f;
    k[1 * C] = 1e30f;  /* scores of row key 1: huge; exp of the others underflow */
    q[2 * C] = NAN;    /* query 2: NaN scores */
    q[3 * C] = INFINITY;
    ap_tensor tq = ap_t3(q, B, L, C), tk = ap_t3(k, B, L, C), tv = ap_t3(v, B, L, C);
    ap_tensor to = ap_t3(o, B, L, C), tl = ap_t3(lse, B, 2, L);
    int rc = ap_attention_forward(ctx, &to, &tl, &tq, &tk, &tv, 2, 0.5f, 0);
    int nan_row2 = isnan(o[2 * C]), finite_row5 = 1;
    for (int c = 0; c < C; c++) finite_row5 &= isfinite(o[5 * C + c]) != 0;
    tu_check(rc == 0 && nan_row2, "NaN query: forward returns, output row is NaN (%g)", o[2 * C]);
    tu_check(finite_row5, "finite query facing a 1e30 key: output finite (the other keys' "
             "exp(-huge) are exactly 0)");
}

static void test_scratch(void) {
    /* The documented sizes in attention.h. */
    size_t sd = ap_attention_scratch_bytes(2, 4096, 4096, 8, 40, 2);
    size_t clip = ap_attention_scratch_bytes(2, 77, 77, 12, 64, 2);
    printf("  scratch: SD self-attention 2x4096 H=8 D=40 on 2 threads: %zu bytes; "
           "CLIP text 2x77 H=12 D=64: %zu bytes\n", sd, clip);
    tu_check(sd == 527360 && clip == 527360, "scratch bytes match attention.h");
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_attention: fused multi-head attention (%d threads)\n", ctx.n_threads);
    test_gradchecks(&ctx);
    test_goldens(&ctx);
    test_threads();
    test_shapes(&ctx);
    test_nonfinite(&ctx);
    test_scratch();
    ap_ctx_free(&ctx);
    return tu_exit();
}
