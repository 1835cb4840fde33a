/* test_unet_bf16.c: the UNet with its frozen weights stored in bf16
 * (mixed_precision: bf16, ap_weights_set_frozen_dtype) against fp32, on the
 * tiny diffusers fixture with its LoRA (tools/fixtures/unet.py).
 *
 * 1. Exactness of the mechanism: the fp32 model whose stored-in-bf16 weights
 *    are rounded to bf16 in place gives the bf16 model's eps, grad x and LoRA
 *    gradients bit for bit (ops widen exactly; nothing else differs).
 * 2. Tolerances against plain fp32 (the rounding of the weights, 2^-9
 *    relative, through ~40 layers), each relative to the tensor's max |fp32|:
 *    eps 2e-2, grad x 4e-2, LoRA gradients 3e-2 (see TOL_* below).
 * 3. Memory: the weight block shrinks (bytes printed, bf16 < 0.6 x fp32).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dtype.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/unet.h"
#include "testutil.h"

/* Measured on unet_tiny (AVX-512, AVX2 and generic alike), max |bf16 - fp32|
 * over max |fp32|: eps 4.9e-3, grad x 1.0e-2, LoRA gradients 7.4e-3; about
 * 4x margin each. A wrong weight (an f16 read as bf16, a transposed pack)
 * gives O(1). */
#define TOL_EPS 2e-2
#define TOL_DX 4e-2
#define TOL_GRAD 3e-2

typedef struct {
    float *eps, *dx, *lora_grad;
    size_t weight_bytes, lora_total;
} run_out;

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d || isnan(e)) d = e;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return d / (m > 0 ? m : 1);
}

/* Opens unet_tiny + LoRA with frozen dtype dt, optionally rounds the f32
 * weights that a bf16 model would store (round), runs forward + backward. */
static int run(ap_ctx *ctx, ap_dtype dt, int round, ap_st_file *f, run_out *o) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/unet_tiny", tu_fixtures_dir());
    ap_weights_set_frozen_dtype(dt);
    ap_unet m;
    int rc = ap_unet_open(&m, dir, 2);
    ap_weights_set_frozen_dtype(AP_F32);
    if (!tu_check(rc == 0 && ap_unet_load_lora(&m, dir) == 0, "open %s (%s weights): %s", dir,
                  ap_dtype_name(dt), rc ? ap_errmsg() : "ok"))
        return AP_ERR;
    if (round) { /* what bf16 storage does to the weights it picks */
        ap_weights_set_frozen_dtype(AP_BF16);
        ap_unet probe;
        int prc = ap_unet_open(&probe, dir, 2);
        ap_weights_set_frozen_dtype(AP_F32);
        if (!tu_check(prc == 0, "open the bf16 probe: %s", prc ? ap_errmsg() : "ok")) return AP_ERR;
        int nb = 0;
        for (int k = 0; k < m.params.count; k++) {
            if (probe.params.items[k].t.dtype != AP_BF16) continue;
            float *w = m.params.items[k].t.data;
            for (int64_t i = 0; i < ap_numel(&m.params.items[k].t); i++)
                w[i] = ap_bf16_to_f32(ap_f32_to_bf16(w[i]));
            nb++;
        }
        printf("  rounded %d of %d weight tensors to bf16 in the f32 model\n", nb, m.params.count);
        ap_unet_free(&probe);
    }
    ap_tensor x, t, cx, proj;
    tu_fixture(f, "x", &x), tu_fixture(f, "timesteps", &t), tu_fixture(f, "context", &cx);
    tu_fixture(f, "proj", &proj);
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], L = cx.shape[1];
    ap_unet_plan plan;
    ap_arena tape, tmp;
    rc = ap_unet_plan_measure(ctx, &m, B, H, W, L, &plan);
    ap_arena_init(&tape, plan.tape_bytes, "UNet tape");
    ap_arena_init(&tmp, plan.tmp_bytes, "UNet tmp");
    ctx->tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_unet_saved sv;
    int src = ap_unet_saved_init(&sv, &m); /* always: freed below */
    rc = rc ? rc : src;
    ap_tensor eps = proj, dx = x;
    o->eps = eps.data = tu_alloc(ap_numel(&proj));
    o->dx = dx.data = tu_alloc(ap_numel(&x));
    ap_unet_zero_lora_grads(&m);
    rc = rc ? rc : ap_unet_forward(ctx, &tp, &m, &sv, &eps, &x, &t, &cx);
    rc = rc ? rc : ap_unet_backward(ctx, &tp, &m, &sv, &dx, &proj);
    tu_check(rc == 0, "forward + backward (%s weights%s)%s%s", ap_dtype_name(dt),
             round ? ", rounded to bf16" : "", rc ? ": " : "", rc ? ap_errmsg() : "");
    o->lora_total = m.lora.total;
    o->lora_grad = tu_alloc((int64_t)m.lora.total);
    memcpy(o->lora_grad, m.lora_grad, m.lora.total * sizeof(float));
    o->weight_bytes = ap_params_bytes(&m.params);
    free(x.data), free(t.data), free(cx.data), free(proj.data);
    ap_unet_saved_free(&sv);
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    ap_unet_free(&m);
    return rc;
}

int main(void) {
    printf("test_unet_bf16: UNet with bf16 frozen weights vs fp32 (unet_tiny + LoRA)\n");
    if (!tu_fixtures_dir()) return tu_skip("AP_FIXTURES_DIR is not set");
    char path[4096];
    snprintf(path, sizeof path, "%s/unet_tiny/golden.safetensors", tu_fixtures_dir());
    ap_st_file *f = NULL;
    if (!tu_check(ap_st_open(&f, path) == 0, "open %s", path)) return tu_exit();
    ap_ctx ctx;
    ap_ctx_init(&ctx, 2);
    ap_tensor shape;
    float *tmpx = tu_fixture(f, "eps", &shape);
    const int64_t neps = ap_numel(&shape);
    free(tmpx);
    tmpx = tu_fixture(f, "x", &shape);
    const int64_t nx = ap_numel(&shape);
    free(tmpx);
    run_out a = {0}, b = {0}, r = {0};
    if (run(&ctx, AP_F32, 0, f, &a) || run(&ctx, AP_BF16, 0, f, &b) || run(&ctx, AP_F32, 1, f, &r))
        return tu_exit();
    printf("  weights: fp32 %zu bytes, bf16 %zu bytes (%.2fx)\n", a.weight_bytes, b.weight_bytes,
           (double)b.weight_bytes / (double)a.weight_bytes);
    tu_check(b.weight_bytes < 0.6 * a.weight_bytes, "bf16 weight block < 0.6 x fp32's");
    /* 1. bit for bit against the f32 model on bf16-rounded weights */
    tu_compare("eps: bf16 weights == f32 on bf16-rounded weights", b.eps, r.eps, neps, 0, 0);
    tu_compare("grad x: bf16 weights == f32 on bf16-rounded weights", b.dx, r.dx, nx, 0, 0);
    tu_compare("LoRA grads: bf16 weights == f32 on bf16-rounded weights", b.lora_grad,
               r.lora_grad, (int64_t)a.lora_total, 0, 0);
    /* 2. against plain fp32 */
    double e_eps = rel_err(b.eps, a.eps, neps), e_dx = rel_err(b.dx, a.dx, nx);
    double e_lora = rel_err(b.lora_grad, a.lora_grad, (int64_t)a.lora_total);
    tu_check(e_eps <= TOL_EPS, "eps bf16 vs fp32: max err %.3g of max |eps| (tolerance %g)",
             e_eps, TOL_EPS);
    tu_check(e_dx <= TOL_DX, "grad x bf16 vs fp32: max err %.3g of max |grad| (tolerance %g)",
             e_dx, TOL_DX);
    tu_check(e_lora <= TOL_GRAD,
             "LoRA gradients bf16 vs fp32: max err %.3g of max |grad| (tolerance %g)", e_lora,
             TOL_GRAD);
    free(a.eps), free(a.dx), free(a.lora_grad), free(b.eps), free(b.dx), free(b.lora_grad);
    free(r.eps), free(r.dx), free(r.lora_grad);
    ap_st_close(f);
    ap_ctx_free(&ctx);
    return tu_exit();
}
