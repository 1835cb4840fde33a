/* test_resnet.c: ResnetBlock2D (UNet form with time embedding and 1x1
 * shortcut; VAE form without) against diffusers 0.17.1: output and input
 * gradient, parameters loaded through the real key names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "nn/resnet.h"
#include "ops/activation.h"
#include "testutil.h"

/* Buffers of one case, freed at its end (the suite also runs under LeakSanitizer). */
/* The calls the case makes, for a dry run (which touches none of the
 * tensors): forward with tape, backward, inference forward. */
typedef struct {
    const ap_resnet *r;
    const ap_tensor *out, *x, *temb, *dx, *dout;
} resnet_run;

static int resnet_step(ap_ctx *dry, ap_arena *a, void *user) {
    const resnet_run *k = user;
    ap_resnet_saved sv;
    ap_tape tp = ap_tape_on(&a[0]);
    dry->tmp = &a[1];
    AP_TRY(ap_resnet_forward(dry, &tp, k->r, &sv, k->out, k->x, k->temb));
    AP_TRY(ap_resnet_backward(dry, &tp, k->r, &sv, k->dx, k->dout));
    return ap_resnet_forward(dry, NULL, k->r, NULL, k->out, k->x, k->temb);
}

static float *g_owned[16];
static int g_nowned;
static float *own(float *p) {
    if (g_nowned < 16) g_owned[g_nowned++] = p;
    return p;
}
static void free_owned(void) {
    while (g_nowned) free(g_owned[--g_nowned]);
}

/* Two 3x3 convs and two GroupNorms over O(1) values in fp32: 1e-5 abs. */
#define ATOL 3e-5
#define RTOL 1e-4

static void run_case(ap_ctx *ctx, const char *path, ap_st_file *f, const char *name, int cin,
                     int cout, int temb, int groups, float eps) {
    printf(" case %s: %d -> %d channels, temb %d, %d groups, eps %g\n", name, cin, cout, temb,
           groups, eps);
    ap_resnet r;
    ap_params p;
    ap_params_init(&p);
    char pre[64], key[128];
    snprintf(pre, sizeof pre, "%s.p", name);
    ap_resnet_declare(&r, &p, pre, cin, cout, temb, groups, eps);
    ap_params_alloc(&p, "resnet params");
    ap_wsrc *w = NULL;
    int rc = ap_wsrc_open(&w, path);
    if (rc == 0) {
        const char *ignore[] = {".x", ".emb", ".out", ".proj", ".grad_x", NULL};
        rc = ap_params_fill(&p, w, "", ignore);
    }
    if (!tu_check(rc == 0, "parameters load by key%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
        return;
    ap_tensor x, emb, out_ref, proj, gx_ref;
    snprintf(key, sizeof key, "%s.x", name), own(tu_fixture(f, key, &x));
    snprintf(key, sizeof key, "%s.out", name), own(tu_fixture(f, key, &out_ref));
    snprintf(key, sizeof key, "%s.proj", name), own(tu_fixture(f, key, &proj));
    snprintf(key, sizeof key, "%s.grad_x", name), own(tu_fixture(f, key, &gx_ref));
    ap_tensor temb_act = {0};
    if (temb) {
        snprintf(key, sizeof key, "%s.emb", name), own(tu_fixture(f, key, &emb));
        temb_act = emb;
        temb_act.data = own(tu_alloc(ap_numel(&emb)));
        ap_silu_forward(ctx, &temb_act, &emb); /* the UNet applies SiLU to emb once */
    }
    ap_tensor out = out_ref, dx = x;
    out.data = own(tu_alloc(ap_numel(&out)));
    dx.data = own(tu_alloc(ap_numel(&x)));
    /* tape and tmp of the sizes a dry run of the same calls measures */
    resnet_run k = {&r, &out, &x, temb ? &temb_act : NULL, &dx, &proj};
    static const char *const what[2] = {"resnet tape", "resnet tmp"};
    size_t peaks[2] = {0, 0}, scratch;
    rc = ap_measure(ctx, 2, what, resnet_step, &k, peaks, &scratch);
    tu_check(rc == 0, "measure the workspaces (%s)", rc ? ap_errmsg() : "ok");
    ap_arena tape, tmp;
    ap_arena_init(&tape, peaks[0], "resnet tape");
    ap_arena_init(&tmp, peaks[1], "resnet tmp");
    ap_resnet_saved sv;
    ap_tape tp = ap_tape_on(&tape);
    ctx->tmp = &tmp;
    rc = ap_resnet_forward(ctx, &tp, &r, &sv, &out, &x, temb ? &temb_act : NULL);
    if (!tu_check(rc == 0, "forward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_compare("out vs diffusers", out.data, out_ref.data, ap_numel(&out), ATOL, RTOL);
    rc = ap_resnet_backward(ctx, &tp, &r, &sv, &dx, &proj);
    if (!tu_check(rc == 0, "backward runs%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_compare("grad x vs autograd", dx.data, gx_ref.data, ap_numel(&dx), ATOL, RTOL);
    /* inference (no tape) gives the same output and leaves tmp empty */
    memset(out.data, 0, (size_t)ap_numel(&out) * 4);
    rc = ap_resnet_forward(ctx, NULL, &r, NULL, &out, &x, temb ? &temb_act : NULL);
    tu_compare("inference out vs diffusers", out.data, out_ref.data, ap_numel(&out), ATOL, RTOL);
    tu_check(tmp.used == 0, "inference released its temporaries");
    tu_check(tape.peak == peaks[0] && tmp.peak == peaks[1],
             "tape peak %zu == %zu measured, tmp peak %zu == %zu measured", tape.peak, peaks[0],
             tmp.peak, peaks[1]);
    ctx->tmp = NULL;
    ap_arena_free(&tape);
    ap_arena_free(&tmp);
    ap_wsrc_close(w);
    ap_params_free(&p);
    free_owned();
}

int main(void) {
    printf("test_resnet: ResnetBlock2D vs diffusers 0.17.1\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    ap_st_file *f = tu_fixture_open("nn_resnet");
    if (f) {
        char path[4096];
        snprintf(path, sizeof path, "%s/nn_resnet.safetensors", tu_fixtures_dir());
        run_case(&ctx, path, f, "unet", 6, 8, 5, 2, 1e-5f);
        run_case(&ctx, path, f, "vae", 8, 8, 0, 4, 1e-6f);
        ap_st_close(f);
    }
    ap_ctx_free(&ctx);
    return tu_exit();
}
