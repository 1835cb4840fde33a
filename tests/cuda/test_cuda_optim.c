/* test_cuda_optim.c: AdamW, the gradient norm and its clipping on the GPU
 * (kernels/cuda_optim.h) against train/adamw.c: three AdamW steps on
 * 1,000,003 elements bit for bit (params and both moments), the norm to
 * 1e-12 relative (double sums in another order), clipping bit for bit
 * given the same coefficient. Skips (exit 77) without a CUDA device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "cuda_backend.h"
#include "cuda_optim.h"
#include "ops/memory.h"
#include "ops/rows.h"
#include "testutil.h"
#include "train/adamw.h"

#define N 1000003

static float *up(ap_ctx *g, const float *h) {
    float *d = ap_dev_alloc(g, (size_t)N * 4, "test buffer");
    ap_tensor t = ap_tensor_of(d, AP_F32, AP_CUDA, 1, (int64_t[]){N});
    if (d && ap_tensor_write(g, &t, h) != AP_OK) return NULL;
    return d;
}

static void down(ap_ctx *g, float *h, float *d) {
    ap_tensor t = ap_tensor_of(d, AP_F32, AP_CUDA, 1, (int64_t[]){N});
    tu_check(ap_tensor_read(g, h, &t) == 0, "read back");
}

int main(void) {
    printf("test_cuda_optim: AdamW and the gradient norm on the GPU vs train/adamw.c\n");
    char why[256];
    if (ap_cuda_device_count(why, sizeof why) == 0) return tu_skip("no CUDA device (%s)", why);
    ap_ctx g;
    if (!tu_check(ap_cuda_ctx_init(&g, -1, 0) == 0, "cuda context: %s", ap_errmsg()))
        return tu_exit();
    float *p = tu_alloc(N), *gr = tu_alloc(N), *z = tu_alloc(N), *back = tu_alloc(N);
    tu_fill_uniform(p, N, 3, -1, 1);
    float *dp = up(&g, p), *dm = up(&g, z), *dv = up(&g, z), *dg = up(&g, z);
    ap_adamw a;
    ap_adamw_init(&a, N);
    const ap_adamw_hp hp = {1e-3, 0.9, 0.999, 1e-8, 1e-2};
    int rc = 0;
    for (int t = 1; t <= 3; t++) {
        tu_fill_uniform(gr, N, 50 + (uint64_t)t, -0.05f, 0.05f);
        ap_adamw_step(&a, &hp, p, gr);
        ap_tensor tg = ap_tensor_of(dg, AP_F32, AP_CUDA, 1, (int64_t[]){N});
        rc |= ap_tensor_write(&g, &tg, gr);
        rc |= ap_cuda_adamw_step(&g, t, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, dp,
                                 dg, dm, dv, N);
    }
    tu_check(rc == 0, "3 device AdamW steps: %s", rc ? ap_errmsg() : "ok");
    down(&g, back, dp);
    tu_compare("AdamW params after 3 steps (exact)", back, p, N, 0, 0);
    down(&g, back, dm);
    tu_compare("AdamW first moments (exact)", back, a.m, N, 0, 0);
    down(&g, back, dv);
    tu_compare("AdamW second moments (exact)", back, a.v, N, 0, 0);
    double dn = 0, cn = ap_grad_norm(gr, N);
    rc = ap_cuda_grad_norm(&g, dg, N, &dn);
    tu_check(rc == 0 && fabs(dn - cn) <= 1e-12 * cn, "gradient norm %.17g vs CPU %.17g (1e-12 rel)",
             dn, cn);
    double before = 0;
    rc = ap_cuda_clip_grad_norm(&g, dg, N, 0.5 * cn, &before);
    ap_clip_grad_norm(gr, N, 0.5 * cn);
    down(&g, back, dg);
    tu_check(rc == 0 && before == dn, "clip returns the norm before clipping");
    tu_compare("clipped gradient (exact given the same coefficient)", back, gr, N, 0, 0);
    ap_adamw_free(&a);
    free(p), free(gr), free(z), free(back);
    ap_cuda_ctx_free(&g);
    return tu_exit();
}
