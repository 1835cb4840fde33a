/* test_plans.c: measured workspaces equal what a real run uses.
 *
 * For each model size, the plan measured by a dry run (ap_*_plan_measure)
 * is used to make real arenas (with guard pages) and scratch that may not
 * grow; then the real code runs (inference forward, forward with tape,
 * backward) and the arenas' peaks and the scratch the ops took must equal the
 * plan exactly (integers: tolerance 0). A plan too small would fail the run
 * (arena refusal, fixed scratch, or a guard-page fault); one too large would
 * show as a peak below the plan. Sizes: the tiny fixture UNet (8/16
 * channels) and a mid UNet (64/128/256 channels, 2 layers, 8 heads, context
 * 77 x 768, latent 16 x 16, random weights); kernel variant and threads of
 * the process (tools/check runs it as any other test). The hand-written plan
 * it replaces is printed beside it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet.h"
#include "models/vae.h"
#include "testutil.h"

static void fill(ap_tensor *t, uint64_t seed, float lo, float hi) {
    t->data = tu_alloc(ap_numel(t));
    tu_fill_uniform(t->data, ap_numel(t), seed, lo, hi);
}

static void unet_case(const char *name, ap_unet *m, int64_t B, int64_t H, int64_t W, int64_t L) {
    ap_ctx ctx;
    if (ap_ctx_init(&ctx, 2)) {
        tu_check(0, "context: %s", ap_errmsg());
        return;
    }
    ap_unet_plan plan, hand;
    int rc = ap_unet_plan_measure(&ctx, m, B, H, W, L, &plan);
    if (!tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok")) return;
    ap_unet_plan_sizes(m, B, H, W, L, ctx.n_threads, &hand);
    printf("  %s: measured tape %.3f MB, tmp %.3f MB, scratch %.3f MB (hand-written plan: "
           "%.3f / %.3f / %.3f MB)\n", name, plan.tape_bytes / 1e6, plan.tmp_bytes / 1e6,
           plan.scratch_bytes / 1e6, hand.tape_bytes / 1e6, hand.tmp_bytes / 1e6,
           hand.scratch_bytes / 1e6);
    ap_arena tape, tmp;
    tu_check(ap_arena_init(&tape, plan.tape_bytes, "UNet tape") == 0 &&
                 ap_arena_init(&tmp, plan.tmp_bytes, "UNet tmp") == 0 &&
                 ap_ctx_reserve(&ctx, plan.scratch_bytes) == 0,
             "%s: arenas of the measured sizes", name);
    ap_ctx_fix_scratch(&ctx);
    const ap_unet_config *c = &m->cfg;
    ap_tensor x = ap_t4(NULL, B, c->in_channels, H, W), eps = ap_t4(NULL, B, c->out_channels, H, W);
    ap_tensor t = ap_t1(NULL, B), cx = ap_t3(NULL, B, L, c->cross_dim);
    ap_tensor dx = ap_t4(NULL, B, c->in_channels, H, W), deps = eps;
    fill(&x, 1, -1, 1), fill(&t, 2, 0, 999), fill(&cx, 3, -1, 1), fill(&eps, 4, 0, 0);
    fill(&dx, 5, 0, 0), fill(&deps, 6, -1, 1);
    rc = ap_unet_forward(&ctx, m, NULL, &tmp, &eps, &x, &t, &cx);
    tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_unet_forward(&ctx, m, &tape, &tmp, &eps, &x, &t, &cx);
    tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_unet_backward(&ctx, m, &tmp, &dx, &deps);
    tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    tu_check(tape.peak == plan.tape_bytes, "%s: tape peak %zu == measured %zu", name, tape.peak,
             plan.tape_bytes);
    tu_check(tmp.peak == plan.tmp_bytes, "%s: tmp peak %zu == measured %zu", name, tmp.peak,
             plan.tmp_bytes);
    tu_check(ctx.scratch_peak == plan.scratch_bytes, "%s: scratch taken %zu == measured %zu",
             name, ctx.scratch_peak, plan.scratch_bytes);
    free(x.data), free(t.data), free(cx.data), free(eps.data), free(dx.data), free(deps.data);
    ap_arena_free(&tape), ap_arena_free(&tmp);
    ap_ctx_free(&ctx);
}

/* The VAE decoder (block checkpointing, or full tape): ap_vae_plan makes
 * its tmp arena and reserves scratch from the measurement. */
static void vae_case(const char *name, ap_vae *v, int full_tape, int64_t B, int64_t h, int64_t w) {
    ap_ctx ctx;
    if (ap_ctx_init(&ctx, 2)) {
        tu_check(0, "context: %s", ap_errmsg());
        return;
    }
    v->full_tape = full_tape;
    ap_plan plan;
    int rc = ap_vae_plan(v, &ctx, B, h, w, &plan);
    if (!tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok")) return;
    printf("  %s: measured tape %.3f MB, tmp %.3f MB, scratch %.3f MB\n", name,
           plan.tape_bytes / 1e6, plan.tmp_bytes / 1e6, plan.scratch_bytes / 1e6);
    ap_arena tape;
    tu_check(ap_arena_init(&tape, plan.tape_bytes, "VAE tape") == 0, "%s: tape of the measured size",
             name);
    ap_ctx_fix_scratch(&ctx);
    const ap_vae_config *c = &v->cfg;
    int64_t s = (int64_t)1 << (c->n_blocks - 1);
    ap_tensor lat = ap_t4(NULL, B, c->latent_channels, h, w), dlat = lat;
    ap_tensor img = ap_t4(NULL, B, c->out_channels, h * s, w * s), dimg = img;
    fill(&lat, 1, -2, 2), fill(&dlat, 2, 0, 0), fill(&img, 3, 0, 0), fill(&dimg, 4, -1, 1);
    rc = ap_vae_forward(&ctx, v, NULL, &img, &lat);
    tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_vae_forward(&ctx, v, &tape, &img, &lat);
    tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_vae_backward(&ctx, v, &dlat, &dimg);
    tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    tu_check(tape.peak == plan.tape_bytes, "%s: tape peak %zu == measured %zu", name, tape.peak,
             plan.tape_bytes);
    tu_check(v->tmp.peak == plan.tmp_bytes, "%s: tmp peak %zu == measured %zu", name, v->tmp.peak,
             plan.tmp_bytes);
    tu_check(ctx.scratch_peak == plan.scratch_bytes, "%s: scratch taken %zu == measured %zu",
             name, ctx.scratch_peak, plan.scratch_bytes);
    free(lat.data), free(dlat.data), free(img.data), free(dimg.data);
    ap_arena_free(&tape);
    ap_arena_free(&v->tmp);
    ap_ctx_free(&ctx);
}

static void vae_cases(const char *fx) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/vae_tiny", fx);
    ap_vae tiny;
    if (tu_check(ap_vae_load(&tiny, dir) == 0, "open the tiny VAE (%s)", ap_errmsg())) {
        vae_case("VAE tiny B2 6x10 checkpointed", &tiny, 0, 2, 6, 10);
        vae_case("VAE tiny B2 6x10 full tape", &tiny, 1, 2, 6, 10);
        ap_vae_free(&tiny);
    }
    /* SD v1.5's decoder at a quarter of its widths */
    ap_vae_config c;
    ap_vae_config_sd15(&c);
    for (int i = 0; i < c.n_blocks; i++) c.block_out[i] /= 4;
    ap_vae mid;
    if (tu_check(ap_vae_declare(&mid, &c) == 0 && ap_vae_alloc(&mid) == 0,
                 "build the mid VAE (%s)", ap_errmsg())) {
        tu_fill_uniform(mid.params.flat, (int64_t)mid.params.total, 8, -0.05f, 0.05f);
        vae_case("VAE mid (32..128) B2 8x8 checkpointed", &mid, 0, 2, 8, 8);
        vae_case("VAE mid (32..128) B2 8x8 full tape", &mid, 1, 2, 8, 8);
        ap_vae_free(&mid);
    }
}

int main(void) {
    const char *fx = tu_fixtures_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR is not set (run through meson)");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/unet_tiny", fx);
    ap_unet tiny;
    if (tu_check(ap_unet_open(&tiny, dir, 4) == 0, "open the tiny UNet (%s)", ap_errmsg())) {
        unet_case("UNet tiny B2 8x8 L5", &tiny, 2, 8, 8, 5);
        ap_unet_free(&tiny);
    }
    ap_unet_config c;
    snprintf(dir, sizeof dir, "%s/unet_tiny/config.json", fx);
    if (tu_check(ap_unet_config_read(&c, dir) == 0, "tiny config (%s)", ap_errmsg())) {
        c.levels = 3;
        c.block_out[0] = 64, c.block_out[1] = 128, c.block_out[2] = 256;
        for (int i = 0; i < 3; i++) c.layers[i] = 2, c.heads[i] = 8;
        c.down_attn[0] = c.down_attn[1] = 1, c.down_attn[2] = 0;
        c.up_attn[0] = 0, c.up_attn[1] = c.up_attn[2] = 1;
        c.cross_dim = 768, c.groups = 32, c.time_embed_dim = 256;
        ap_unet mid;
        if (tu_check(ap_unet_build(&mid, &c, 4) == 0 && ap_unet_alloc(&mid) == 0,
                     "build the mid UNet (%s)", ap_errmsg())) {
            tu_fill_uniform(mid.params.flat, (int64_t)mid.params.total, 7, -0.05f, 0.05f);
            unet_case("UNet mid B2 16x16 L77", &mid, 2, 16, 16, 77);
            ap_unet_free(&mid);
        }
    }
    vae_cases(fx);
    return tu_exit();
}
