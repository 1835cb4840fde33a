/* test_chain_kl: the regulariser toward the base model (kl_coeff,
 * docs/draft.md §2, src/train/chain.h) against PyTorch autograd
 * (tools/fixtures/train_chain_kl.py: AlignProp's loop on the tiny saved
 * pipeline plus DRaFT+'s penalty, the base model being diffusers' LoRA at
 * scale 0 under no_grad): per-sample KL values, losses and every LoRA
 * gradient of L = 0.01 mean(loss) + 0.5 mean(KL) for four truncation masks;
 * that the penalty moves the gradients (the comparison is not vacuous); and
 * finite differences of the penalty alone where its gradient is exact
 * (only step 0 attached: its input is the fixed noise, so the base
 * prediction's stop-gradient changes nothing). */
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
#define KL_COEFF 0.5f

typedef struct env {
    ap_ctx ctx;
    ap_sd sd;
    ap_st_file *g;
    ap_reward *rw;
    float *noise, *cond, *uncond;
} env;

static const char *prompts[B] = {"a photo of a cat", "a dog"};

static int chain_open(env *e, ap_chain *ch, const char *what) {
    const ap_text_tower *tt = &e->sd.text.t;
    int rc = ap_chain_init(ch, &e->ctx, &e->sd.unet, &e->sd.vae, e->rw, &e->sd.sched, S, 7.5f, B,
                           HW, HW, tt->max_pos, tt->C);
    if (!rc) rc = ap_chain_set_base(ch, &e->ctx);
    return tu_check(rc == 0, "%s: chain init + base view%s%s", what, rc ? ": " : "",
                    rc ? ap_errmsg() : "");
}

/* max over tensors of max|got - want| / max|want| (the chain golden's measure) */
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
        double r = d / (wmax + 1e-12);
        if (r > worst || isnan(r)) worst = r;
    }
    return worst;
}

static void run_case(env *e, const char *cname) {
    char name[256];
    ap_tensor t;
    snprintf(name, sizeof name, "%s.mask", cname);
    float *maskf = tu_fixture(e->g, name, &t);
    unsigned char att[B * S];
    for (int k = 0; k < B * S; k++) att[k] = maskf[k] != 0;
    free(maskf);
    ap_chain ch;
    if (!chain_open(e, &ch, cname)) return;
    ap_unet *u = &e->sd.unet;
    float dloss[B] = {0.01f / B, 0.01f / B}, dkl[B] = {KL_COEFF / B, KL_COEFF / B};
    float loss[B], reward[B], kl[B];
    ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                      .prompts = prompts, .attached = att, .dloss = dloss, .loss = loss,
                      .reward = reward, .dkl = dkl, .kl = kl};
    ap_unet_zero_lora_grads(u);
    int rc = ap_chain_run(&ch, &e->ctx, &io);
    float *got = tu_alloc((int64_t)u->lora.total), *want = tu_alloc((int64_t)u->lora.total);
    if (tu_check(rc == 0, "%s: chain with the regulariser%s%s", cname, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        memcpy(got, u->lora_grad, u->lora.total * sizeof(float));
        float *w;
        /* KL: the squared difference of two CFG combinations (x7.5) of 4-step
         * fp32 UNet outputs, summed in double: 1e-4 rel + 1e-7 abs (measured
         * in the report below); losses as the chain golden (1e-5 rel) */
        snprintf(name, sizeof name, "%s.kl", cname);
        w = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "%s: KL per sample vs autograd", cname);
        tu_compare(name, kl, w, B, 1e-7, 1e-4);
        free(w);
        snprintf(name, sizeof name, "%s.loss", cname);
        w = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "%s: losses", cname);
        tu_compare(name, loss, w, B, 1e-6, 1e-5);
        free(w);
        for (int i = 0; i < u->lora.count; i++) {
            const ap_param *p = &u->lora.items[i];
            snprintf(name, sizeof name, "%s.grad.%s", cname, p->name);
            w = tu_fixture(e->g, name, &t);
            memcpy(want + p->offset, w, (size_t)ap_numel(&p->t) * sizeof(float));
            free(w);
        }
        int zero;
        double err = grad_err(u, want, got, &zero);
        /* the chain golden's tolerance: per tensor 5e-4 * max|grad| */
        tu_check(err <= 5e-4 && zero == 0, "%s: %d LoRA gradients (%d all zero) of 0.01 mean(loss) "
                 "+ %g mean(KL) vs autograd: worst tensor max|err| / max|grad| %.3g (tol 5e-4)",
                 cname, u->lora.count, zero, (double)KL_COEFF, err);
        /* without the regulariser the gradients must differ from the reference
         * by far more than the tolerance, or the comparison above proves nothing */
        io.dkl = NULL, io.kl = NULL;
        ap_unet_zero_lora_grads(u);
        rc = ap_chain_run(&ch, &e->ctx, &io);
        double off = rc ? 0 : grad_err(u, want, u->lora_grad, &zero);
        tu_check(rc == 0 && off > 20 * 5e-4, "%s: the penalty's share of the gradients: without it "
                 "max|err| / max|grad| %.3g (> 1e-2 expected)", cname, off);
    }
    free(got), free(want);
    ap_chain_free(&ch);
}

/* d(sum_k dkl_k KL_k)/d LoRA by central differences with only step 0
 * attached and dloss 0 (the reward's gradient off): KL then depends on the
 * LoRA only through eps(x_0) with x_0 the fixed noise, so the analytic
 * gradient is exact. Signed unequal dkl; the largest |grad| entry of every
 * 5th LoRA tensor; h 1e-2 as the chain golden; tol 1% |ana| + 1e-3 max|ana|. */
static void finite_differences(env *e) {
    ap_chain ch;
    if (!chain_open(e, &ch, "finite differences")) return;
    unsigned char att[B * S] = {1, 0, 0, 0, 1, 0, 0, 0};
    float dloss[B] = {0, 0}, dkl[B] = {0.3f, -0.7f}, loss[B], reward[B], kl[B];
    ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                      .prompts = prompts, .attached = att, .dloss = dloss, .loss = loss,
                      .reward = reward, .dkl = dkl, .kl = kl};
    ap_unet *u = &e->sd.unet;
    ap_unet_zero_lora_grads(u);
    int rc = ap_chain_run(&ch, &e->ctx, &io);
    if (!tu_check(rc == 0, "finite differences: analytic run%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        ap_chain_free(&ch);
        return;
    }
    float *ana = tu_alloc((int64_t)u->lora.total);
    memcpy(ana, u->lora_grad, u->lora.total * sizeof(float));
    double amax = 0, worst = 0, worst_rel = 0;
    for (size_t k = 0; k < u->lora.total; k++) if (fabs(ana[k]) > amax) amax = fabs(ana[k]);
    const double h = 1e-2, rtol = 1e-2;
    int points = 0, bad = 0, failed = 0;
    for (int ti = 0; ti < u->lora.count && !failed; ti += 5) {
        const ap_param *p = &u->lora.items[ti];
        int64_t n = ap_numel(&p->t), best = 0;
        for (int64_t k = 1; k < n; k++)
            if (fabs(ana[p->offset + k]) > fabs(ana[p->offset + best])) best = k;
        size_t i = p->offset + (size_t)best;
        float *x = u->lora.flat + i, old = *x, xp = (float)(old + h), xm = (float)(old - h);
        double lp = 0, lm = 0;
        *x = xp;
        failed |= ap_chain_run(&ch, &e->ctx, &io) != 0;
        for (int k = 0; k < B; k++) lp += (double)dkl[k] * kl[k];
        *x = xm;
        failed |= ap_chain_run(&ch, &e->ctx, &io) != 0;
        for (int k = 0; k < B; k++) lm += (double)dkl[k] * kl[k];
        *x = old;
        double num = (lp - lm) / ((double)xp - xm), err = fabs(num - ana[i]);
        double tol = rtol * fabs(ana[i]) + 1e-3 * amax;
        if (err / tol > worst) worst = err / tol;
        if (ana[i] != 0 && err / fabs(ana[i]) > worst_rel) worst_rel = err / fabs(ana[i]);
        if (err > tol && bad++ < 3)
            printf("    %s[%lld]: numeric %.6g analytic %.6g\n", p->name, (long long)best, num,
                   (double)ana[i]);
        points++;
    }
    tu_check(!failed && bad == 0 && amax > 0, "KL alone (step 0 attached): finite differences (h %.0e) at "
             "%d LoRA coordinates: worst |num - ana| / |ana| %.3g, worst err / tol %.3g (tol %.0g "
             "|ana| + 1e-3 max|ana|, max|ana| %.3g)%s", h, points, worst_rel, worst, rtol, amax,
             failed ? ap_errmsg() : "");
    free(ana);
    ap_chain_free(&ch);
}

int main(void) {
    printf("test_chain_kl: the regulariser toward the base model vs PyTorch autograd\n");
    const char *fx = tu_fixtures_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR is not set");
    env e;
    memset(&e, 0, sizeof e);
    e.g = tu_fixture_open("train_chain_kl");
    if (!e.g) return tu_skip("fixture train_chain_kl.safetensors missing");
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
        const char *cases[] = {"full", "k1", "traj", "perstep"};
        for (int c = 0; c < 4; c++) run_case(&e, cases[c]);
        finite_differences(&e);
    }
    ap_reward_free(e.rw);
    free(e.noise), free(e.cond), free(e.uncond);
    ap_st_close(e.g);
    ap_sd_close(&e.sd);
    ap_ctx_free(&e.ctx);
    return tu_exit();
}
