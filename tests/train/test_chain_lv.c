/* test_chain_lv: DRaFT-LV (draft_lv_n, docs/draft.md §1, src/train/chain.h)
 * against PyTorch autograd running our reading of the paper on the tiny saved
 * pipeline with its LoRA (tools/fixtures/train_chain_lv.py): the sample's
 * losses (x_S's, the logged ones) and every LoRA gradient of the mean over n
 * re-noised last steps, for n = 1 and n = 3 with the reference's noise draws;
 * and that the two differ by far more than the tolerance (each draw
 * matters, so the comparison is not vacuous). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "pipeline/sd.h"
#include "testutil.h"
#include "train/chain.h"

#define B 2
#define S 4
#define HW 16

typedef struct env {
    ap_ctx ctx;
    ap_sd sd;
    ap_st_file *g;
    ap_reward *rw;
    float *noise, *cond, *uncond;
} env;

/* max over LoRA tensors of max|got - want| / max|want| */
static double grad_err(const ap_unet *u, const float *want_all, const float *got_all, int *zero) {
    double worst = 0;
    *zero = 0;
    for (int i = 0; i < u->lora.count; i++) {
        const ap_param *p = &u->lora.items[i];
        const float *want = want_all + p->offset, *got = got_all + p->offset;
        double wmax = 0, d = 0;
        for (int64_t k = 0; k < ap_numel(&p->t); k++) {
            if (fabs(want[k]) > wmax) wmax = fabs(want[k]);
            double e = fabs((double)got[k] - want[k]);
            if (e > d || isnan(e)) d = e;
        }
        *zero += wmax == 0;
        double r = d / (wmax > 0 ? wmax : 1e-30);
        if (r > worst || isnan(r)) worst = r;
    }
    return worst;
}

/* runs draft_lv_n = n; leaves the gradients in got (lora.total floats) */
static int run_n(env *e, int n, float *got) {
    char name[256];
    ap_tensor t;
    ap_unet *u = &e->sd.unet;
    const ap_text_tower *tt = &e->sd.text.t;
    ap_chain ch;
    int rc = ap_chain_init(&ch, &e->ctx, u, &e->sd.vae, e->rw, &e->sd.sched, S, 7.5f, B, HW, HW,
                           tt->max_pos, tt->C);
    if (!rc) rc = ap_chain_set_lv(&ch, &e->ctx);
    if (!tu_check(rc == 0, "n = %d: chain init + DRaFT-LV buffers%s%s", n, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return AP_ERR;
    snprintf(name, sizeof name, "n%d.draws", n);
    float *draws = tu_fixture(e->g, name, &t);
    unsigned char att[B * S] = {0, 0, 0, 1, 0, 0, 0, 1}; /* K = 1 (not read by DRaFT-LV) */
    float dloss[B] = {0.01f / B, 0.01f / B}, loss[B], reward[B];
    const char *prompts[B] = {"a photo of a cat", "a dog"};
    ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                      .prompts = prompts, .attached = att, .dloss = dloss, .loss = loss,
                      .reward = reward, .lv_n = n, .lv_noise = draws};
    ap_unet_zero_lora_grads(u);
    rc = ap_chain_run(&ch, &e->ctx, &io);
    if (tu_check(rc == 0, "n = %d: chain with DRaFT-LV%s%s", n, rc ? ": " : "", rc ? ap_errmsg() : "")) {
        memcpy(got, u->lora_grad, u->lora.total * sizeof(float));
        snprintf(name, sizeof name, "n%d.loss", n);
        float *w = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "n = %d: losses of the sampled x_S (logged)", n);
        tu_compare(name, loss, w, B, 1e-6, 1e-5); /* as the chain golden */
        free(w);
        float *want = tu_alloc((int64_t)u->lora.total);
        for (int i = 0; i < u->lora.count; i++) {
            const ap_param *p = &u->lora.items[i];
            snprintf(name, sizeof name, "n%d.grad.%s", n, p->name);
            w = tu_fixture(e->g, name, &t);
            memcpy(want + p->offset, w, (size_t)ap_numel(&p->t) * sizeof(float));
            free(w);
        }
        int zero;
        double err = grad_err(u, want, got, &zero);
        /* one UNet pair, the VAE and the reward in fp32 on both sides: the
         * chain golden's per-tensor 5e-4 * max|grad| */
        tu_check(err <= 5e-4 && zero == 0, "n = %d: %d LoRA gradients (%d all zero) of the mean "
                 "over %d re-noised last steps vs autograd: worst tensor max|err| / max|grad| "
                 "%.3g (tol 5e-4)", n, u->lora.count, zero, n, err);
        free(want);
    }
    free(draws);
    ap_chain_free(&ch);
    return rc;
}

int main(void) {
    printf("test_chain_lv: DRaFT-LV (K = 1, n re-noised last steps) vs PyTorch autograd\n");
    const char *fx = tu_fixtures_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR is not set");
    env e;
    memset(&e, 0, sizeof e);
    e.g = tu_fixture_open("train_chain_lv");
    if (!e.g) return tu_skip("fixture train_chain_lv.safetensors missing");
    ap_ctx_init(&e.ctx, 0);
    char dir[4096], lora[4200];
    snprintf(dir, sizeof dir, "%s/sd_tiny", fx);
    snprintf(lora, sizeof lora, "%s/sd_tiny/lora", fx);
    int rc = ap_sd_open(&e.sd, dir, lora);
    if (!tu_check(rc == 0, "open %s + LoRA%s%s", dir, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return tu_exit();
    ap_tensor t;
    e.noise = tu_fixture(e.g, "inputs.noise", &t);
    e.cond = tu_fixture(e.g, "inputs.cond", &t);
    e.uncond = tu_fixture(e.g, "inputs.uncond", &t);
    rc = ap_reward_open_kind(&e.rw, AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    if (tu_check(rc == 0, "demo reward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        const size_t nl = e.sd.unet.lora.total;
        float *g1 = tu_alloc((int64_t)nl), *g3 = tu_alloc((int64_t)nl);
        int ok = run_n(&e, 1, g1) == 0;
        ok &= run_n(&e, 3, g3) == 0;
        if (ok) {
            int zero;
            double d = grad_err(&e.sd.unet, g3, g1, &zero);
            tu_check(d > 20 * 5e-4, "n = 1 vs n = 3: the draws move the gradients: max|diff| / "
                     "max|grad| %.3g (> 1e-2 expected)", d);
        }
        free(g1), free(g3);
    }
    ap_reward_free(e.rw);
    free(e.noise), free(e.cond), free(e.uncond);
    ap_st_close(e.g);
    ap_sd_close(&e.sd);
    ap_ctx_free(&e.ctx);
    return tu_exit();
}
