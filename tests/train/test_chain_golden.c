/* test_chain_golden: the whole reward-backprop chain (src/train/chain.h:
 * DDIM with CFG, per-sample truncation masks, VAE decoder, reward, loss =
 * 0.01 * mean) against PyTorch autograd running AlignProp main.py's loop on
 * the same tiny saved pipeline with the same LoRA, noise, embeddings and
 * masks (tools/fixtures/train_chain.py): loss, rewards, images and the
 * gradient of every LoRA tensor, for the demo reward on five truncation
 * masks (full, K = 1, main.py-style per-step, per-trajectory suffixes, none),
 * the aesthetic and HPS rewards on two, and two of them again planned for 3
 * and run as two accumulating micro-batches of 1. Also finite differences of
 * the chain's objective (signed per-sample dloss) w.r.t. LoRA coordinates for
 * each reward (PickScore too), independent of PyTorch, and a mixture
 * {demo, aesthetic} against its parts run separately. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "pipeline/sd.h"
#include "testutil.h"
#include "text/tokenizer.h"
#include "train/chain.h"

#define B 2
#define S 4
#define HW 16

typedef struct env {
    ap_ctx ctx;
    ap_sd sd;
    ap_st_file *g;
    float *noise, *cond, *uncond;
} env;

/* max |got - want| over a tensor, relative to the tensor's largest |want| */
static void compare_grads(const char *key, const char *label, const ap_unet *u, ap_st_file *g) {
    double worst = 0, wmax_all = 0, dmax_all = 0;
    const char *worst_name = "";
    int zero_ref = 0; /* a reference tensor of zeros would make its comparison vacuous */
    for (int i = 0; i < u->lora.count; i++) {
        const ap_param *p = &u->lora.items[i];
        char name[512];
        snprintf(name, sizeof name, "%s.grad.%s", key, p->name);
        ap_tensor t;
        float *want = tu_fixture(g, name, &t);
        const float *got = u->lora_grad + p->offset;
        int64_t n = ap_numel(&p->t);
        double wmax = 0, d = 0;
        for (int64_t k = 0; k < n; k++) {
            if (fabs(want[k]) > wmax) wmax = fabs(want[k]);
            double e = fabs((double)got[k] - want[k]);
            if (e > d || isnan(e)) d = e;
        }
        if (wmax > wmax_all) wmax_all = wmax;
        zero_ref += wmax == 0;
        if (d > dmax_all || isnan(d)) dmax_all = d;
        /* per tensor: |err| <= 5e-4 * max|want| + 1e-9 (measured <= 9e-5: fp32 on both sides, sums in other orders) */
        double r = d / (5e-4 * wmax + 1e-9);
        if (r > worst || isnan(r)) worst = r, worst_name = p->name;
        free(want);
    }
    tu_check(worst <= 1.0 && zero_ref == 0, "%s: %d LoRA gradients (%d all zero in the reference) vs autograd: worst tensor max|err| / max|grad| "
             "%.3g (%s), over all max|err| %.3g of largest |grad| %.3g (%.3g); tol 5e-4 * "
             "max|grad| per tensor + 1e-9", label, u->lora.count, zero_ref, worst * 5e-4, worst_name,
             dmax_all, wmax_all, dmax_all / (wmax_all > 0 ? wmax_all : 1));
}

/* split: planned for 3 samples, run as two micro-batches of one sample that
 * accumulate into the LoRA gradients (the job's gradient accumulation):
 * the same numbers as one batch of 2 */
static void run_case(env *e, ap_reward *rw, const char *rname, const char *cname, int split) {
    char key[64], label[128], name[160];
    snprintf(key, sizeof key, "%s.%s", rname, cname);
    snprintf(label, sizeof label, "%s%s", key, split ? " (cap 3, two micro-batches of 1)" : "");
    ap_tensor t;
    snprintf(name, sizeof name, "%s.mask", key);
    float *maskf = tu_fixture(e->g, name, &t);
    unsigned char att[B * S];
    int any = 0;
    for (int k = 0; k < B * S; k++) att[k] = maskf[k] != 0, any |= att[k];
    free(maskf);
    ap_chain ch;
    const ap_text_tower *tt = &e->sd.text.t;
    int rc = ap_chain_init(&ch, &e->ctx, &e->sd.unet, &e->sd.vae, rw, &e->sd.sched, S, 7.5f,
                           split ? 3 : B, HW, HW, tt->max_pos, tt->C);
    if (!tu_check(rc == 0, "%s: chain init%s%s", label, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    float dloss[B] = {0.01f / B, 0.01f / B}, loss[B], reward[B], img[B * 3 * HW * HW];
    const char *prompts[B] = {"a photo of a cat", "a dog"};
    ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                      .attached = att, .dloss = dloss, .loss = loss, .reward = reward,
                      .images = img};
    io.prompts = prompts;
    ap_unet_zero_lora_grads(&e->sd.unet);
    if (!split) {
        rc = ap_chain_run(&ch, &e->ctx, &io);
    } else {
        const int64_t nl = ch.C * ch.h * ch.w, nc = ch.L * ch.D;
        for (int k = 0; k < B && !rc; k++) {
            ap_chain_io one = {.b = 1, .noise = e->noise + k * nl, .cond = e->cond + k * nc,
                               .uncond = e->uncond, .prompts = prompts + k, .attached = att + k * S,
                               .dloss = dloss + k, .loss = loss + k, .reward = reward + k,
                               .images = img + k * 3 * HW * HW};
            rc = ap_chain_run(&ch, &e->ctx, &one);
        }
    }
    if (tu_check(rc == 0, "%s: chain forward + backward%s%s", label, rc ? ": " : "", rc ? ap_errmsg() : "")) {
        float *want;
        /* 4 UNet pairs with CFG 7.5 in fp32 on both sides (the pipeline golden
         * measures 2e-5 on latents of |13|); images |1|: 2e-5 abs. Rewards
         * and losses: 1e-5 rel + 1e-6 abs. */
        snprintf(name, sizeof name, "%s.image", key);
        want = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "%s: images vs diffusers", label);
        tu_compare(name, img, want, B * 3 * HW * HW, 2e-5, 0);
        free(want);
        snprintf(name, sizeof name, "%s.loss", key);
        want = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "%s: losses", label);
        tu_compare(name, loss, want, B, 1e-6, 1e-5);
        free(want);
        snprintf(name, sizeof name, "%s.reward", key);
        want = tu_fixture(e->g, name, &t);
        snprintf(name, sizeof name, "%s: rewards", label);
        tu_compare(name, reward, want, B, 1e-6, 1e-5);
        free(want);
        if (any) {
            compare_grads(key, label, &e->sd.unet, e->g);
        } else {
            int nz = 0;
            for (size_t k = 0; k < e->sd.unet.lora.total; k++) nz += e->sd.unet.lora_grad[k] != 0;
            tu_check(nz == 0, "%s: nothing attached: every LoRA gradient exactly 0 (%d nonzero)", label, nz);
        }
    }
    ap_chain_free(&ch);
}

/* d(sum_k dloss_k loss_k) / d LoRA by central differences, independent of
 * PyTorch: full backprop, unequal (signed) per-sample dloss so that a sample
 * mix-up in backward shows. Coordinates: the largest |analytic| entry of every
 * 5th LoRA tensor (down and up, self- and cross-attention, every block), each
 * checked on its own: |num - ana| <= rtol |ana| + 1e-3 max|ana|. */
static void finite_differences(env *e, ap_reward *rw, const char *rname, double h, double rtol) {
    ap_chain ch;
    const ap_text_tower *tt = &e->sd.text.t;
    if (ap_chain_init(&ch, &e->ctx, &e->sd.unet, &e->sd.vae, rw, &e->sd.sched, S, 7.5f, B, HW,
                      HW, tt->max_pos, tt->C)) {
        tu_check(0, "%s finite differences: chain init: %s", rname, ap_errmsg());
        return;
    }
    unsigned char att[B * S];
    memset(att, 1, sizeof att);
    float dloss[B] = {0.004f, -0.011f}, loss[B], reward[B];
    const char *prompts[B] = {"a photo of a cat", "a dog"};
    ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                      .prompts = prompts, .attached = att, .dloss = dloss, .loss = loss,
                      .reward = reward};
    ap_unet *u = &e->sd.unet;
    ap_unet_zero_lora_grads(u);
    if (ap_chain_run(&ch, &e->ctx, &io)) {
        tu_check(0, "%s finite differences: %s", rname, ap_errmsg());
        ap_chain_free(&ch);
        return;
    }
    float *ana = tu_alloc((int64_t)u->lora.total);
    memcpy(ana, u->lora_grad, u->lora.total * sizeof(float));
    io.dloss = NULL;
    double amax = 0, worst = 0, worst_rel = 0;
    for (size_t k = 0; k < u->lora.total; k++) if (fabs(ana[k]) > amax) amax = fabs(ana[k]);
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
        for (int k = 0; k < B; k++) lp += (double)dloss[k] * loss[k];
        *x = xm;
        failed |= ap_chain_run(&ch, &e->ctx, &io) != 0;
        for (int k = 0; k < B; k++) lm += (double)dloss[k] * loss[k];
        *x = old;
        double num = (lp - lm) / ((double)xp - xm), err = fabs(num - ana[i]);
        double tol = rtol * fabs(ana[i]) + 1e-3 * amax;
        if (err / tol > worst) worst = err / tol;
        if (err / fabs(ana[i]) > worst_rel) worst_rel = err / fabs(ana[i]);
        if (err > tol && bad++ < 3)
            printf("    %s[%lld]: numeric %.6g analytic %.6g\n", p->name, (long long)best, num,
                   (double)ana[i]);
        points++;
    }
    tu_check(!failed && bad == 0, "%s: finite differences (h %.0e, fp32 chain, loss in double) at %d LoRA coordinates (the "
             "largest |grad| of every 5th tensor): worst |num - ana| / |ana| %.3g, worst err / tol "
             "%.3g (tol %.0g |ana| + 1e-3 max|ana|, max|ana| %.3g)%s", rname, h, points, worst_rel,
             worst, rtol, amax, failed ? ap_errmsg() : "");
    free(ana);
    ap_chain_free(&ch);
}

/* A reward mixture {demo: WD, aesthetic: WA} through the whole chain against
 * the two rewards run separately on the same inputs with dloss scaled by
 * their weights (LoRA gradients accumulating over both runs): the images are
 * the same computation, so each part's reward and loss equal the separate
 * runs' bit for bit, and the mixture's loss and reward equal the weighted sums
 * (double, rounded once) bit for bit. The LoRA gradients differ only in
 * rounding: the mixture back-propagates d(image) = d_demo + d_aesthetic
 * through one VAE and UNet backward where the separate runs go through two
 * (fp32 sums in another order; measured worst 1.1e-5 of the tensor's
 * max|grad|; a wrong weight or a dropped part shows as O(1)): tolerance per
 * tensor 1e-4 * max|grad|. */
#define WD 0.7
#define WA 2.0
static void mixture(env *e, const char *clip, const char *mlp) {
    ap_reward *parts[2] = {NULL, NULL}, *mix = NULL, *demo = NULL, *aes = NULL;
    int rc = ap_reward_open_kind(&parts[0], AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    if (!rc) rc = ap_reward_open_kind(&parts[1], AP_REWARD_AESTHETIC, clip, mlp, NULL, NULL, NULL, 10, 1);
    if (!rc) rc = ap_reward_open_mixture(&mix, 2, parts, (double[]){WD, WA});
    if (!rc) rc = ap_reward_open_kind(&demo, AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    if (!rc) rc = ap_reward_open_kind(&aes, AP_REWARD_AESTHETIC, clip, mlp, NULL, NULL, NULL, 10, 1);
    if (!tu_check(rc == 0, "mixture {demo: %g, aesthetic: %g}: open%s%s", WD, WA, rc ? ": " : "",
                  rc ? ap_errmsg() : "")) {
        if (!mix) ap_reward_free(parts[0]), ap_reward_free(parts[1]);
        ap_reward_free(mix), ap_reward_free(demo), ap_reward_free(aes);
        return;
    }
    tu_check(ap_reward_parts(mix) == 2 && !strcmp(ap_reward_part_name(mix, 0), "demo") &&
                 !strcmp(ap_reward_part_name(mix, 1), "aesthetic") &&
                 !strcmp(ap_reward_name(mix), "0.7*demo + 2*aesthetic"),
             "mixture: 2 parts, named demo and aesthetic, \"%s\"", ap_reward_name(mix));
    const ap_text_tower *tt = &e->sd.text.t;
    unsigned char att[B * S];
    memset(att, 1, sizeof att);
    const char *prompts[B] = {"a photo of a cat", "a dog"};
    float dloss[B] = {0.004f, -0.011f}, dl_d[B], dl_a[B];
    for (int k = 0; k < B; k++) dl_d[k] = (float)(WD * dloss[k]), dl_a[k] = (float)(WA * dloss[k]);
    float loss[3][B], reward[3][B], part[2][B];
    ap_reward *rw[3] = {mix, demo, aes};
    const float *dl[3] = {dloss, dl_d, dl_a};
    ap_unet *u = &e->sd.unet;
    float *gmix = tu_alloc((int64_t)u->lora.total);
    for (int c = 0; c < 3 && !rc; c++) {
        ap_chain ch;
        rc = ap_chain_init(&ch, &e->ctx, u, &e->sd.vae, rw[c], &e->sd.sched, S, 7.5f, B, HW, HW,
                           tt->max_pos, tt->C);
        if (rc) break;
        ap_chain_io io = {.b = B, .noise = e->noise, .cond = e->cond, .uncond = e->uncond,
                          .prompts = prompts, .attached = att, .dloss = dl[c], .loss = loss[c],
                          .reward = reward[c]};
        if (c != 2) ap_unet_zero_lora_grads(u); /* demo and aesthetic accumulate */
        rc = ap_chain_run(&ch, &e->ctx, &io);
        if (!rc && c == 0) {
            memcpy(gmix, u->lora_grad, u->lora.total * sizeof(float));
            for (int i = 0; i < 2; i++)
                memcpy(part[i], ap_reward_part_values(&ch.reward_sv, i), sizeof part[i]);
        }
        ap_chain_free(&ch);
    }
    if (tu_check(rc == 0, "mixture and its parts through the chain%s%s", rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        int same = 1;
        for (int k = 0; k < B; k++) {
            same &= part[0][k] == reward[1][k] && part[1][k] == reward[2][k];
            same &= loss[0][k] == (float)(WD * loss[1][k] + WA * loss[2][k]);
            same &= reward[0][k] == (float)(WD * reward[1][k] + WA * reward[2][k]);
        }
        tu_check(same, "mixture: part rewards = the separate runs', loss and reward = weighted sums "
                 "(bit for bit): loss %.7g %.7g, demo %.7g %.7g, aesthetic %.7g %.7g",
                 (double)loss[0][0], (double)loss[0][1], (double)part[0][0], (double)part[0][1],
                 (double)part[1][0], (double)part[1][1]);
        double worst = 0, gmax = 0;
        const char *wname = "";
        for (int i = 0; i < u->lora.count; i++) {
            const ap_param *p = &u->lora.items[i];
            const float *a = gmix + p->offset, *b = u->lora_grad + p->offset;
            double m = 0, d = 0;
            for (int64_t k = 0; k < ap_numel(&p->t); k++) {
                if (fabs(b[k]) > m) m = fabs(b[k]);
                if (fabs((double)a[k] - b[k]) > d || isnan(a[k])) d = fabs((double)a[k] - b[k]);
            }
            if (m > gmax) gmax = m;
            double r = d / (m > 0 ? m : 1e-30);
            if (r > worst || isnan(r)) worst = r, wname = p->name;
        }
        tu_check(worst <= 1e-4 && gmax > 0, "mixture: LoRA gradients vs %g * demo's + %g * aesthetic's: "
                 "worst tensor max|err| / max|grad| %.3g (%s; tol 1e-4), largest |grad| %.3g",
                 WD, WA, worst, wname, gmax);
    }
    free(gmix);
    ap_reward_free(mix), ap_reward_free(demo), ap_reward_free(aes);
    /* the same reward twice, a non-finite weight: refused (the parts freed) */
    ap_reward *d[2] = {NULL, NULL};
    ap_reward_open_kind(&d[0], AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    ap_reward_open_kind(&d[1], AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    tu_expect_error("mixture of demo twice", ap_reward_open_mixture(&mix, 2, d, (double[]){1, 1}),
                    "demo twice", NULL);
    ap_reward_open_kind(&d[0], AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    tu_expect_error("mixture weight NaN", ap_reward_open_mixture(&mix, 1, d, (double[]){NAN}),
                    "demo", "finite", NULL);
}

int main(void) {
    printf("test_chain_golden: reward backprop through DDIM + CFG + VAE + reward vs PyTorch autograd\n");
    const char *fx = tu_fixtures_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR is not set");
    env e;
    memset(&e, 0, sizeof e);
    e.g = tu_fixture_open("train_chain");
    if (!e.g) return tu_skip("fixture train_chain.safetensors missing");
    ap_ctx_init(&e.ctx, 0);
    char dir[4096], lora[4200], clip[4200], mlp[4200], hcfg[4200], hckpt[4200], hbpe[4200];
    snprintf(dir, sizeof dir, "%s/sd_tiny", fx);
    snprintf(lora, sizeof lora, "%s/sd_tiny/lora", fx);
    int rc = ap_sd_open(&e.sd, dir, lora);
    if (!tu_check(rc == 0, "open %s + LoRA%s%s", dir, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return tu_exit();
    ap_tensor t;
    e.noise = tu_fixture(e.g, "inputs.noise", &t);
    e.cond = tu_fixture(e.g, "inputs.cond", &t);
    e.uncond = tu_fixture(e.g, "inputs.uncond", &t);
    ap_reward *demo = NULL, *aes = NULL, *hps = NULL;
    snprintf(clip, sizeof clip, "%s/clip/clip_model", fx);
    snprintf(mlp, sizeof mlp, "%s/clip/aesthetic_mlp.pth", fx);
    rc = ap_reward_open_kind(&demo, AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    tu_check(rc == 0, "demo reward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    rc = ap_reward_open_kind(&aes, AP_REWARD_AESTHETIC, clip, mlp, NULL, NULL, NULL, 10, 1);
    tu_check(rc == 0, "aesthetic reward (tiny CLIP + MLP)%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    /* a tiny open_clip whose vocabulary covers its 40-merge BPE (hps_tiny.pt
     * of tools/fixtures/hps.py has 100 tokens, below any open_clip tokenizer's) */
    snprintf(hcfg, sizeof hcfg, "%s/train_chain_hps/open_clip_tiny.json", fx);
    snprintf(hckpt, sizeof hckpt, "%s/train_chain_hps/hps_tiny.pt", fx);
    snprintf(hbpe, sizeof hbpe, "%s/train_chain_hps/bpe_tiny.txt.gz", fx);
    {   /* the ids the HPS reward sees: open_clip.tokenize's (scores depend on them) */
        ap_tokenizer *tok = NULL;
        float *want = tu_fixture(e.g, "hps.ids", &t);
        int32_t ids[77];
        const char *pr[B] = {"a photo of a cat", "a dog"};
        int bad = ap_tokenizer_load_openclip(&tok, hbpe) != 0;
        for (int k = 0; k < B && !bad; k++) {
            bad |= ap_tokenize(tok, pr[k], ids, 77) != 0;
            for (int j = 0; j < 77 && !bad; j++) bad |= ids[j] != (int32_t)want[k * 77 + j];
        }
        tu_check(!bad, "hps: open_clip ids of the prompts (40-merge BPE) equal open_clip.tokenize's");
        ap_tokenizer_free(tok);
        free(want);
    }
    rc = ap_reward_open_kind(&hps, AP_REWARD_HPS, NULL, NULL, hcfg, hckpt, hbpe, 10, 1);
    tu_check(rc == 0, "hps reward (tiny open_clip + 40-merge BPE)%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    const char *cases[] = {"full", "k1", "perstep", "traj", "none"};
    for (int c = 0; c < 5 && demo; c++) run_case(&e, demo, "demo", cases[c], 0);
    if (aes) {
        run_case(&e, aes, "aesthetic", "full", 0);
        run_case(&e, aes, "aesthetic", "perstep", 0);
    }
    if (hps) {
        run_case(&e, hps, "hps", "full", 0);
        run_case(&e, hps, "hps", "perstep", 0);
    }
    if (demo) run_case(&e, demo, "demo", "perstep", 1);
    if (hps) run_case(&e, hps, "hps", "perstep", 1);
    /* h = 1e-2 (LoRA entries are ~0.5): the fp32 chain's round-off in the
     * loss difference grows as 1/h (measured worst |num - ana| / |ana|: h 1e-2
     * 0.4%, 3e-3 1.1%, 1e-3 2.4%, 3e-4 13%), the O(h^2) term stays below it
     * at 1e-2. Tolerance 1% |ana| + 1e-3 max|ana|. */
    if (demo) finite_differences(&e, demo, "demo", 1e-2, 1e-2);
    if (aes) finite_differences(&e, aes, "aesthetic", 1e-2, 1e-2);
    if (hps) finite_differences(&e, hps, "hps", 1e-2, 1e-2);
    if (aes) mixture(&e, clip, mlp);
    {   /* PickScore (not in the original: no PyTorch chain golden) through the
         * reward interface: its tiny CLIPModel reads the sd_tiny tokenizer's
         * ids (tools/fixtures/pickscore.py); finite differences as above */
        ap_reward *ps = NULL;
        char pdir[4200], tdir[4200];
        snprintf(pdir, sizeof pdir, "%s/pickscore", fx);
        snprintf(tdir, sizeof tdir, "%s/sd_tiny/tokenizer", fx);
        rc = ap_reward_open_pickscore(&ps, pdir, tdir);
        if (tu_check(rc == 0, "pickscore reward (tiny CLIPModel + sd_tiny tokenizer)%s%s",
                     rc ? ": " : "", rc ? ap_errmsg() : ""))
            finite_differences(&e, ps, "pickscore", 1e-2, 1e-2);
        ap_reward_free(ps);
    }
    ap_reward_free(demo);
    ap_reward_free(aes);
    ap_reward_free(hps);
    free(e.noise), free(e.cond), free(e.uncond);
    ap_st_close(e.g);
    ap_sd_close(&e.sd);
    ap_ctx_free(&e.ctx);
    return tu_exit();
}
