/* test_encoder.c: the pre-LN encoder layer against transformers 4.30.2
 * CLIPEncoderLayer (QuickGELU, causal and full) and open_clip 2.20.0
 * ResidualAttentionBlock (GELU, packed in_proj, full and causal): output and
 * input gradient (fixture nn_encoder), weights loaded by their real key names
 * through ap_params/ap_wsrc; a finite-difference check; inference = tape
 * forward; shape and misuse errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "nn/encoder.h"
#include "testutil.h"

/* fp32 vs fp32 through two LayerNorms, five GEMMs and a softmax on outputs of
 * magnitude <= ~10: agreement is at the 1e-6 relative level (summation order);
 * 1e-4 leaves a margin of ~10x over the worst observed. */
#define ATOL 1e-4
#define RTOL 1e-4

typedef struct {
    ap_ctx *ctx;
    ap_enc_layer *l;
    ap_arena *tmp;
    ap_tensor x, out;
    const float *proj;
} gc_state;

/* The calls the case makes, for a dry run (which touches none of the
 * tensors): forward with tape, backward, inference forward in place. */
typedef struct {
    const ap_enc_layer *l;
    const ap_tensor *out, *x, *dx, *dout;
} enc_run;

static int enc_step(ap_ctx *dry, ap_arena *a, void *user) {
    const enc_run *k = user;
    ap_enc_saved sv;
    ap_tape tp = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_enc_forward(dry, &tp, k->l, &sv, k->out, k->x));
    AP_TRY(ap_enc_backward(dry, &tp, k->l, &sv, k->dx, k->dout));
    return ap_enc_forward(dry, NULL, k->l, NULL, k->out, k->out);
}

static double gc_loss(void *p) {
    gc_state *s = p;
    s->ctx->tmp = s->tmp;
    if (ap_enc_forward(s->ctx, NULL, s->l, NULL, &s->out, &s->x)) return NAN;
    return tu_dot(s->out.data, s->proj, ap_numel(&s->out));
}

static void run_case(ap_ctx *ctx, const char *path, const char *name, ap_enc_keys keys,
                     ap_enc_act act, int causal, int gradcheck) {
    ap_st_file *f = tu_fixture_open("nn_encoder");
    char key[128];
    ap_tensor x, out_ref, proj, gx_ref;
    snprintf(key, sizeof key, "%s.x", name);
    tu_fixture(f, key, &x);
    snprintf(key, sizeof key, "%s.out", name);
    tu_fixture(f, key, &out_ref);
    snprintf(key, sizeof key, "%s.proj", name);
    tu_fixture(f, key, &proj);
    snprintf(key, sizeof key, "%s.grad_x", name);
    tu_fixture(f, key, &gx_ref);
    ap_st_close(f);
    int64_t B = x.shape[0], N = x.shape[1], C = x.shape[2];
    /* F and heads from the fixture's shapes */
    ap_st_file *g = tu_fixture_open("nn_encoder");
    ap_tensor fc;
    snprintf(key, sizeof key, "%s.%s", name, keys == AP_ENC_KEYS_HF ? "mlp.fc1.bias" : "mlp.c_fc.bias");
    tu_fixture(g, key, &fc);
    ap_st_close(g);
    int F = (int)fc.shape[0], heads = C == 12 ? 3 : 2;
    free(fc.data);
    printf(" case %s: B %lld, N %lld, C %lld, F %d, heads %d, %s%s\n", name, (long long)B,
           (long long)N, (long long)C, F, heads, act == AP_ACT_GELU ? "GELU" : "QuickGELU",
           causal ? ", causal" : "");

    ap_params params;
    ap_params_init(&params);
    ap_enc_layer l;
    int rc = ap_enc_declare(&l, &params, "", keys, (int)C, F, heads, act, causal, 1e-5f);
    rc = rc ? rc : ap_params_alloc(&params, "encoder test params");
    ap_wsrc *w = NULL;
    rc = rc ? rc : ap_wsrc_open(&w, path);
    snprintf(key, sizeof key, "%s.", name);
    const char *ignore[] = {".x", ".out", ".proj", ".grad_x", NULL};
    rc = rc ? rc : ap_params_fill(&params, w, key, ignore);
    if (!tu_check(rc == 0, "load %s by real key names%s%s", name, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    ap_wsrc_close(w);

    ap_enc_saved sv;
    ap_tensor out = ap_t3(tu_alloc(B * N * C), B, N, C), dx = ap_t3(tu_alloc(B * N * C), B, N, C);
    /* tape, tmp and scratch of the sizes a dry run of the same calls measures */
    enc_run k = {&l, &out, &x, &dx, &proj};
    static const char *const what[2] = {"encoder tape", "encoder tmp"};
    size_t peaks[2] = {0, 0}, scratch = 0;
    rc = ap_measure(ctx, 2, what, enc_step, &k, peaks, &scratch);
    tu_check(rc == 0, "measure the workspaces (%s)", rc ? ap_errmsg() : "ok");
    ap_arena tape, tmp;
    ap_arena_init(&tape, peaks[0], "encoder tape");
    ap_arena_init(&tmp, peaks[1], "encoder tmp");
    ap_ctx_reserve(ctx, scratch);
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    rc = ap_enc_forward(ctx, &tp, &l, &sv, &out, &x);
    if (!tu_check(rc == 0, "forward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_check(tape.used <= tape.cap && tmp.used == 0, "tape %zu of %zu bytes planned; tmp released",
             tape.used, tape.cap);
    tu_compare("out vs reference", out.data, out_ref.data, ap_numel(&out), ATOL, RTOL);
    rc = ap_enc_backward(ctx, &tp, &l, &sv, &dx, &proj);
    if (!tu_check(rc == 0, "backward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_compare("grad x vs autograd", dx.data, gx_ref.data, ap_numel(&dx), ATOL, RTOL);
    tu_check(tmp.used == 0, "backward released its temporaries");
    tu_check(tape.peak == peaks[0], "tape peak %zu == %zu measured", tape.peak, peaks[0]);

    /* inference: same numbers, output may overwrite the input */
    ap_tensor xi = ap_t3(tu_alloc(B * N * C), B, N, C);
    memcpy(xi.data, x.data, (size_t)ap_numel(&x) * sizeof(float));
    rc = ap_enc_forward(ctx, NULL, &l, NULL, &xi, &xi);
    tu_check(rc == 0 && memcmp(xi.data, out.data, (size_t)ap_numel(&x) * sizeof(float)) == 0,
             "inference in place equals the tape forward bit for bit");

    if (gradcheck) {
        gc_state s = {ctx, &l, &tmp, x, ap_t3(tu_alloc(B * N * C), B, N, C), proj.data};
        tu_gradcheck("grad x vs finite differences", gc_loss, &s, x.data, ap_numel(&x), dx.data,
                     1e-2, 2e-2, 24);
        free(s.out.data);
    }

    /* misuse */
    ap_tensor bad = ap_t3(x.data, B, N, C - 1);
    tu_expect_error("x with the wrong width", ap_enc_forward(ctx, NULL, &l, NULL, &out, &bad),
                    "encoder_forward", "x", NULL);
    tu_expect_error("tape forward writing over its input",
                    ap_enc_forward(ctx, &tp, &l, NULL, &x, &x), "out aliases x", NULL);
    ap_enc_saved empty;
    memset(&empty, 0, sizeof empty);
    empty.x = x;
    tu_expect_error("backward without a tape forward",
                    ap_enc_backward(ctx, &tp, &l, &empty, &dx, &proj), "never recorded", NULL);
    /* the tape's one rule: a reset tape refuses the saved activations of
     * its earlier forward, and another tape is foreign */
    ap_tape_reset(&tp);
    tu_expect_error("backward after the tape was reset",
                    ap_enc_backward(ctx, &tp, &l, &sv, &dx, &proj), "stale tape", NULL);
    ap_tape other = ap_tape_on(&tmp);
    tu_expect_error("backward with another tape",
                    ap_enc_backward(ctx, &other, &l, &sv, &dx, &proj), "foreign tape", NULL);

    ctx->tmp = NULL;
    ap_arena_free(&tape);
    ap_arena_free(&tmp);
    ap_params_free(&params);
    free(out.data), free(dx.data), free(xi.data);
    free(x.data), free(out_ref.data), free(proj.data), free(gx_ref.data);
}

int main(void) {
    printf("test_encoder: pre-LN encoder layer vs transformers CLIPEncoderLayer and "
           "open_clip ResidualAttentionBlock\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/nn_encoder.safetensors", dir);
    run_case(&ctx, path, "hf_causal", AP_ENC_KEYS_HF, AP_ACT_QUICK_GELU, 1, 1);
    run_case(&ctx, path, "hf_full", AP_ENC_KEYS_HF, AP_ACT_QUICK_GELU, 0, 0);
    run_case(&ctx, path, "oc_full", AP_ENC_KEYS_OPENCLIP, AP_ACT_GELU, 0, 1);
    run_case(&ctx, path, "oc_causal", AP_ENC_KEYS_OPENCLIP, AP_ACT_GELU, 1, 0);
    ap_ctx_free(&ctx);
    return tu_exit();
}
