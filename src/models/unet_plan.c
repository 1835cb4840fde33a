/* unet_plan.c: the UNet's workspaces, measured by a dry run of the real code
 * (core/ctx.h: ap_measure) instead of computed by hand: an inference
 * forward, a forward with tape and its backward, on measuring arenas. */
#include "core/err.h"
#include "models/unet.h"

typedef struct {
    ap_unet *m;
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
    AP_TRY(ap_unet_forward(dry, k->m, NULL, tmp, &eps, &x, &t, &cx));
    AP_TRY(ap_unet_forward(dry, k->m, tape, tmp, &eps, &x, &t, &cx));
    return ap_unet_backward(dry, k->m, tmp, &dx, &eps);
}

int ap_unet_plan_measure(ap_ctx *ctx, ap_unet *m, int64_t B, int64_t H, int64_t W, int64_t L,
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

int ap_unet_alloc_unbacked(ap_unet *m) {
    AP_TRY(ap_params_alloc_unbacked(&m->params, "UNet weights (unbacked)"));
    if (m->lora_rank <= 0) return AP_OK;
    AP_TRY(ap_params_alloc_unbacked(&m->lora, "UNet LoRA (unbacked)"));
    m->lora_grad = ap_calloc(m->lora.total ? m->lora.total : 1, sizeof(float), "UNet LoRA grads");
    if (!m->lora_grad) return AP_ERR;
    /* as ap_unet_alloc: lora[i].down, lora[i].up of each transformer */
    int k = 0;
    for (int t = 0; t < m->n_tf; t++)
        for (int i = 0; i < 8; i++, k += 2) {
            ap_lora *l = &m->tf[t].lora[i];
            l->ddown = m->lora.items[k].t;
            l->ddown.data = m->lora_grad + m->lora.items[k].offset;
            l->dup = m->lora.items[k + 1].t;
            l->dup.data = m->lora_grad + m->lora.items[k + 1].offset;
        }
    return AP_OK;
}
