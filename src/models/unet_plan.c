/* unet_plan.c: the UNet's workspaces, measured by a dry run of the real code
 * (core/ctx.h: ap_measure) instead of computed by hand: an inference
 * forward, a forward with tape and its backward, on measuring arenas. */
#include "core/err.h"
#include "models/unet.h"

typedef struct {
    const ap_unet *m;
    int64_t B, H, W, L;
} unet_case;

static int unet_step(ap_ctx *dry, ap_arena *a, void *user) {
    const unet_case *k = user;
    const ap_unet_config *c = &k->m->cfg;
    ap_arena *tape = &a[0], *tmp = &a[1], *in = &a[2];
    ap_tensor x = ap_dry_input(in, 4, (int64_t[]){k->B, c->in_channels, k->H, k->W});
    ap_tensor eps = ap_dry_input(in, 4, (int64_t[]){k->B, c->out_channels, k->H, k->W});
    ap_tensor t = ap_dry_input(in, 1, (int64_t[]){k->B});
    ap_tensor cx = ap_dry_input(in, 3, (int64_t[]){k->B, k->L, c->cross_dim});
    ap_tensor dx = ap_dry_input(in, 4, (int64_t[]){k->B, c->in_channels, k->H, k->W});
    ap_unet_saved sv;
    AP_TRY(ap_unet_saved_init(&sv, k->m));
    ap_tape tp = ap_tape_on(tape);
    dry->tmp = tmp;
    int rc = ap_unet_forward(dry, NULL, k->m, &sv, &eps, &x, &t, &cx);
    if (!rc) rc = ap_unet_forward(dry, &tp, k->m, &sv, &eps, &x, &t, &cx);
    if (!rc) rc = ap_unet_backward(dry, &tp, k->m, &sv, &dx, &eps);
    ap_unet_saved_free(&sv);
    return rc;
}

int ap_unet_plan_measure(ap_ctx *ctx, const ap_unet *m, int64_t B, int64_t H, int64_t W, int64_t L,
                         ap_unet_plan *p) {
    unet_case k = {m, B, H, W, L};
    static const char *const what[3] = {"UNet tape", "UNet temporaries", "UNet inputs"};
    size_t peaks[3];
    if (ap_measure(ctx, 3, what, unet_step, &k, peaks, &p->scratch_bytes)) {
        ap_err_prefix("measuring the UNet's workspaces (B %lld, %lldx%lld, L %lld): ",
                      (long long)B, (long long)H, (long long)W, (long long)L);
        return AP_ERR;
    }
    p->tape_bytes = peaks[0];
    p->tmp_bytes = peaks[1];
    return AP_OK;
}
