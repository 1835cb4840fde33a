/* test_mha.c: the attention module with LoRA on all four projections against
 * diffusers 0.17.1 Attention + LoRAAttnProcessor (forward output, gradients of
 * the input, the cross-attention source and the eight LoRA matrices). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/safetensors.h"
#include "nn/mha.h"
#include "testutil.h"

/* fp32 vs fp32 through a few GEMMs and a softmax of O(1) values: 1e-5
 * absolute on O(1) outputs leaves room for summation-order differences only. */
#define ATOL 2e-5
#define RTOL 1e-4

static const char *kProj[4] = {"to_q", "to_k", "to_v", "to_out"};

/* Buffers of one case, freed at its end (the suite also runs under LeakSanitizer). */
/* The calls the case makes, for a dry run (which touches none of the
 * tensors): forward with tape, backward. */
typedef struct {
    const ap_mha *m;
    const ap_tensor *out, *x, *src, *dx, *dsrc, *dout;
} mha_run;

static int mha_step(ap_ctx *dry, ap_arena *a, void *user) {
    const mha_run *k = user;
    ap_mha_saved sv;
    ap_tape tp = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_mha_forward(dry, &tp, k->m, &sv, k->out, k->x, k->src));
    return ap_mha_backward(dry, &tp, k->m, &sv, k->dx, k->dsrc, k->dout);
}

static float *g_owned[64];
static int g_nowned;
static float *own(float *p) {
    if (g_nowned < 64) g_owned[g_nowned++] = p;
    return p;
}
static void free_owned(void) {
    while (g_nowned) free(g_owned[--g_nowned]);
}

static void run_case(ap_ctx *ctx, ap_st_file *f, const char *name, int heads, int cross) {
    char key[256];
    ap_tensor x, src = {0}, out_ref, proj, gx_ref, gsrc_ref;
    ap_mha m;
    memset(&m, 0, sizeof m);
    ap_lora lora[4];
    ap_tensor grads_ref[4][2];
    ap_proj *projs[4] = {&m.q, &m.k, &m.v, &m.o};
    const char *wkeys[4] = {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"};
    printf(" case %s (%s-attention, %d heads)\n", name, cross ? "cross" : "self", heads);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", name, wkeys[i]);
        own(tu_fixture(f, key, &projs[i]->w));
        snprintf(key, sizeof key, "%s.processor.%s_lora.down.weight", name, kProj[i]);
        own(tu_fixture(f, key, &lora[i].down));
        snprintf(key, sizeof key, "%s.processor.%s_lora.up.weight", name, kProj[i]);
        own(tu_fixture(f, key, &lora[i].up));
        snprintf(key, sizeof key, "%s.grad.processor.%s_lora.down.weight", name, kProj[i]);
        own(tu_fixture(f, key, &grads_ref[i][0]));
        snprintf(key, sizeof key, "%s.grad.processor.%s_lora.up.weight", name, kProj[i]);
        own(tu_fixture(f, key, &grads_ref[i][1]));
        lora[i].ddown = lora[i].down;
        lora[i].ddown.data = own(tu_alloc(ap_numel(&lora[i].down)));
        lora[i].dup = lora[i].up;
        lora[i].dup.data = own(tu_alloc(ap_numel(&lora[i].up)));
        lora[i].scale = 1.0f;
        projs[i]->lora = &lora[i];
    }
    snprintf(key, sizeof key, "%s.to_out.0.bias", name);
    own(tu_fixture(f, key, &m.o.b));
    m.heads = heads;
    int64_t C = m.q.w.shape[0];
    m.scale = 1.0f / sqrtf((float)(C / heads));
    snprintf(key, sizeof key, "%s.x", name);
    own(tu_fixture(f, key, &x));
    if (cross) {
        snprintf(key, sizeof key, "%s.src", name);
        own(tu_fixture(f, key, &src));
        snprintf(key, sizeof key, "%s.grad_src", name);
        own(tu_fixture(f, key, &gsrc_ref));
    }
    snprintf(key, sizeof key, "%s.out", name);
    own(tu_fixture(f, key, &out_ref));
    snprintf(key, sizeof key, "%s.proj", name);
    own(tu_fixture(f, key, &proj));
    snprintf(key, sizeof key, "%s.grad_x", name);
    own(tu_fixture(f, key, &gx_ref));

    int64_t B = x.shape[0], N = x.shape[1], M = cross ? src.shape[1] : N;
    (void)B, (void)N, (void)M;
    ap_tensor out = out_ref, dx = x, dsrc = src;
    out.data = own(tu_alloc(ap_numel(&out_ref)));
    dx.data = own(tu_alloc(ap_numel(&x)));
    if (cross) dsrc.data = own(tu_alloc(ap_numel(&src)));
    /* tape and tmp of the sizes a dry run of the same calls measures */
    mha_run k = {&m, &out, &x, cross ? &src : NULL, &dx, cross ? &dsrc : NULL, &proj};
    static const char *const what[2] = {"mha tape", "mha tmp"};
    size_t peaks[2] = {0, 0}, scratch;
    int rc = ap_measure(ctx, 2, what, mha_step, &k, peaks, &scratch);
    tu_check(rc == 0, "measure the workspaces (%s)", rc ? ap_errmsg() : "ok");
    ap_arena tape, tmp;
    ap_arena_init(&tape, peaks[0], "mha tape");
    ap_arena_init(&tmp, peaks[1], "mha backward tmp");
    ap_mha_saved sv;
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    rc = ap_mha_forward(ctx, &tp, &m, &sv, &out, &x, cross ? &src : NULL);
    if (!tu_check(rc == 0, "forward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        free_owned();
        return;
    }
    tu_compare("out vs diffusers", out.data, out_ref.data, ap_numel(&out), ATOL, RTOL);
    rc = ap_mha_backward(ctx, &tp, &m, &sv, &dx, cross ? &dsrc : NULL, &proj);
    if (!tu_check(rc == 0, "backward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        free_owned();
        return;
    }
    tu_compare("grad x vs autograd", dx.data, gx_ref.data, ap_numel(&dx), ATOL, RTOL);
    tu_check(tape.peak == peaks[0] && tmp.peak == peaks[1],
             "tape peak %zu == %zu measured, tmp peak %zu == %zu measured", tape.peak, peaks[0],
             tmp.peak, peaks[1]);
    if (cross) tu_compare("grad src vs autograd", dsrc.data, gsrc_ref.data, ap_numel(&dsrc), ATOL, RTOL);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "grad %s_lora.down", kProj[i]);
        tu_compare(key, lora[i].ddown.data, grads_ref[i][0].data, ap_numel(&lora[i].down), ATOL, RTOL);
        snprintf(key, sizeof key, "grad %s_lora.up", kProj[i]);
        tu_compare(key, lora[i].dup.data, grads_ref[i][1].data, ap_numel(&lora[i].up), ATOL, RTOL);
    }
    tu_check(tmp.used == 0, "backward released its temporaries");
    ap_tape_reset(&tp); /* the tape is exactly full */
    if (cross)
        tu_expect_error("src with C channels where C_kv are expected",
                        ap_mha_forward(ctx, &tp, &m, &sv, &out, &x, &x), "proj_forward",
                        "expected last dim 6", NULL);
    ctx->tmp = NULL;
    ap_arena_free(&tape);
    ap_arena_free(&tmp);
    free_owned();
}

int main(void) {
    printf("test_mha: attention module + LoRA vs diffusers 0.17.1\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    ap_st_file *f = tu_fixture_open("nn_attn");
    if (f) {
        run_case(&ctx, f, "cross", 2, 1);
        run_case(&ctx, f, "self", 2, 0);
        ap_st_close(f);
    }
    ap_ctx_free(&ctx);
    return tu_exit();
}
