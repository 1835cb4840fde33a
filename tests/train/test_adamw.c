/* test_adamw: ap_clip_grad_norm + ap_adamw_step (src/train/adamw.h) against
 * torch.nn.utils.clip_grad_norm_(5.0) + torch.optim.AdamW(lr 1e-3, betas
 * (0.9, 0.999), eps 1e-8, weight decay 0.1), three steps, one with a norm
 * below the limit (tools/fixtures/adamw.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "testutil.h"
#include "train/adamw.h"

int main(void) {
    printf("test_adamw: clip_grad_norm_ + AdamW vs torch 1.13\n");
    ap_st_file *f = tu_fixture_open("adamw");
    if (!f) return tu_skip("fixture adamw.safetensors missing");
    ap_tensor t;
    float *p = tu_fixture(f, "p0", &t);
    const int64_t n = ap_numel(&t);
    ap_adamw opt;
    if (!tu_check(ap_adamw_init(&opt, n) == 0, "init (%lld floats)", (long long)n)) return tu_exit();
    ap_adamw_hp hp = {1e-3, 0.9, 0.999, 1e-8, 0.1};
    for (int k = 1; k <= 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "step%d.grad", k);
        float *g = tu_fixture(f, name, &t);
        snprintf(name, sizeof name, "step%d.norm", k);
        float *want_norm = tu_fixture(f, name, &t);
        double norm = ap_clip_grad_norm(g, n, 5.0);
        /* torch sums the squares in float32, we in double: 1e-6 relative */
        tu_check(fabs(norm - want_norm[0]) <= 1e-6 * want_norm[0], "step %d: grad norm %.7g vs "
                 "torch %.7g (rel tol 1e-6)%s", k, norm, want_norm[0], norm > 5 ? ", clipped" : "");
        ap_adamw_step(&opt, &hp, p, g);
        /* same float32 formulas, one rounding of the clip coefficient apart:
         * 1e-6 relative + 1e-9 absolute */
        float *want;
        snprintf(name, sizeof name, "step%d.param", k);
        want = tu_fixture(f, name, &t);
        snprintf(name, sizeof name, "step %d: parameters", k);
        tu_compare(name, p, want, n, 1e-9, 1e-6);
        free(want);
        snprintf(name, sizeof name, "step%d.m", k);
        want = tu_fixture(f, name, &t);
        snprintf(name, sizeof name, "step %d: first moments", k);
        tu_compare(name, opt.m, want, n, 1e-9, 1e-5);
        free(want);
        snprintf(name, sizeof name, "step%d.v", k);
        want = tu_fixture(f, name, &t);
        snprintf(name, sizeof name, "step %d: second moments", k);
        tu_compare(name, opt.v, want, n, 1e-12, 1e-5);
        free(want), free(g), free(want_norm);
    }
    ap_adamw_free(&opt);
    free(p);
    ap_st_close(f);
    return tu_exit();
}
