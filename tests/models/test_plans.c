/* test_plans.c: measured workspaces equal what a real run uses.
 *
 * For each model and size, the plan measured by a dry run
 * (ap_*_plan_measure) is used to make real arenas (with guard pages) and
 * scratch that may not grow; then the real code runs (inference forward,
 * forward with tape, backward; the text tower forward only; HPS encodes its
 * prompts first) and the arenas' peaks and the scratch the ops took must
 * equal the plan exactly (integers: tolerance 0). A plan too small would
 * fail the run (arena refusal, fixed scratch, or a guard-page fault); one
 * too large would show as a peak below the plan. Models: UNet, VAE decoder
 * (checkpointed and full tape), text tower, ViT, aesthetic scorer, HPS;
 * each at its tiny fixture and at a mid size with random weights (UNet
 * 64/128/256 channels with context 77 x 768, latent 16 x 16; VAE at SD
 * v1.5's widths / 4, latent 8 x 8; ViT width 256, 3 layers, 65 tokens,
 * images 128 x 128; text width 256, 3 layers, 77 tokens). Kernel variant
 * and threads of the process (tools/check runs it as any other test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "models/aesthetic.h"
#include "models/clip_text.h"
#include "models/hps.h"
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
    ap_unet_plan plan;
    int rc = ap_unet_plan_measure(&ctx, m, B, H, W, L, &plan);
    if (!tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok")) return;
    printf("  %s: measured tape %.3f MB, tmp %.3f MB, scratch %.3f MB\n", name,
           plan.tape_bytes / 1e6, plan.tmp_bytes / 1e6, plan.scratch_bytes / 1e6);
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
    ctx.tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_unet_saved sv;
    rc = ap_unet_saved_init(&sv, m);
    tu_check(rc == 0, "%s: saved descriptors (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_unet_forward(&ctx, NULL, m, &sv, &eps, &x, &t, &cx);
    tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_unet_forward(&ctx, &tp, m, &sv, &eps, &x, &t, &cx);
    tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_unet_backward(&ctx, &tp, m, &sv, &dx, &deps);
    tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    tu_check(tape.peak == plan.tape_bytes, "%s: tape peak %zu == measured %zu", name, tape.peak,
             plan.tape_bytes);
    tu_check(tmp.peak == plan.tmp_bytes, "%s: tmp peak %zu == measured %zu", name, tmp.peak,
             plan.tmp_bytes);
    tu_check(ctx.scratch_peak == plan.scratch_bytes, "%s: scratch taken %zu == measured %zu",
             name, ctx.scratch_peak, plan.scratch_bytes);
    free(x.data), free(t.data), free(cx.data), free(eps.data), free(dx.data), free(deps.data);
    ap_unet_saved_free(&sv);
    ap_arena_free(&tape), ap_arena_free(&tmp);
    ap_ctx_free(&ctx);
}

/* The VAE decoder (block checkpointing, or full tape). */
static void vae_case(const char *name, ap_vae *v, int full_tape, int64_t B, int64_t h, int64_t w) {
    ap_ctx ctx;
    if (ap_ctx_init(&ctx, 2)) {
        tu_check(0, "context: %s", ap_errmsg());
        return;
    }
    v->full_tape = full_tape;
    ap_plan plan;
    int rc = ap_vae_plan_measure(&ctx, v, B, h, w, &plan);
    if (!tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok")) return;
    printf("  %s: measured tape %.3f MB, tmp %.3f MB, scratch %.3f MB\n", name,
           plan.tape_bytes / 1e6, plan.tmp_bytes / 1e6, plan.scratch_bytes / 1e6);
    ap_arena tape, tmp;
    tu_check(ap_arena_init(&tape, plan.tape_bytes, "VAE tape") == 0 &&
                 ap_arena_init(&tmp, plan.tmp_bytes, "VAE tmp") == 0 &&
                 ap_ctx_reserve(&ctx, plan.scratch_bytes) == 0,
             "%s: arenas of the measured sizes", name);
    ap_ctx_fix_scratch(&ctx);
    ctx.tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_vae_saved sv;
    const ap_vae_config *c = &v->cfg;
    int64_t s = (int64_t)1 << (c->n_blocks - 1);
    ap_tensor lat = ap_t4(NULL, B, c->latent_channels, h, w), dlat = lat;
    ap_tensor img = ap_t4(NULL, B, c->out_channels, h * s, w * s), dimg = img;
    fill(&lat, 1, -2, 2), fill(&dlat, 2, 0, 0), fill(&img, 3, 0, 0), fill(&dimg, 4, -1, 1);
    rc = ap_vae_forward(&ctx, NULL, v, &sv, &img, &lat);
    tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_vae_forward(&ctx, &tp, v, &sv, &img, &lat);
    tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    rc = ap_vae_backward(&ctx, &tp, v, &sv, &dlat, &dimg);
    tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
    tu_check(tape.peak == plan.tape_bytes, "%s: tape peak %zu == measured %zu", name, tape.peak,
             plan.tape_bytes);
    tu_check(tmp.peak == plan.tmp_bytes, "%s: tmp peak %zu == measured %zu", name, tmp.peak,
             plan.tmp_bytes);
    tu_check(ctx.scratch_peak == plan.scratch_bytes, "%s: scratch taken %zu == measured %zu",
             name, ctx.scratch_peak, plan.scratch_bytes);
    free(lat.data), free(dlat.data), free(img.data), free(dimg.data);
    ap_arena_free(&tape), ap_arena_free(&tmp);
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

/* Arenas of the measured sizes (guard pages after them) and scratch that may
 * not grow; then check_ws compares the peaks a real run reached. */
static int open_ws(const char *name, const ap_plan *plan, ap_ctx *ctx, ap_arena *tape,
                   ap_arena *tmp) {
    printf("  %s: measured tape %.3f MB, tmp %.3f MB, scratch %.3f MB\n", name,
           plan->tape_bytes / 1e6, plan->tmp_bytes / 1e6, plan->scratch_bytes / 1e6);
    int ok = tu_check(ap_arena_init(tape, plan->tape_bytes, "tape") == 0 &&
                          ap_arena_init(tmp, plan->tmp_bytes, "tmp") == 0 &&
                          ap_ctx_reserve(ctx, plan->scratch_bytes) == 0,
                      "%s: arenas of the measured sizes", name);
    ap_ctx_fix_scratch(ctx);
    return ok;
}

static void check_ws(const char *name, const ap_plan *plan, const ap_ctx *ctx,
                     const ap_arena *tape, const ap_arena *tmp) {
    tu_check(tape->peak == plan->tape_bytes, "%s: tape peak %zu == measured %zu", name,
             tape->peak, plan->tape_bytes);
    tu_check(tmp->peak == plan->tmp_bytes, "%s: tmp peak %zu == measured %zu", name, tmp->peak,
             plan->tmp_bytes);
    tu_check(ctx->scratch_peak == plan->scratch_bytes, "%s: scratch taken %zu == measured %zu",
             name, ctx->scratch_peak, plan->scratch_bytes);
}

static int32_t *token_ids(int64_t B, int64_t N, int vocab) {
    int32_t *ids = malloc((size_t)(B * N) * sizeof *ids);
    for (int64_t i = 0; i < B * N; i++) ids[i] = (int32_t)((i * 7919) % vocab);
    return ids;
}

/* The text tower (forward only): tape 0. */
static void text_case(const char *name, const ap_text_tower *t, int64_t B, int64_t N) {
    ap_ctx ctx;
    ap_arena tape, tmp;
    ap_plan plan;
    if (ap_ctx_init(&ctx, 2)) return (void)tu_check(0, "context: %s", ap_errmsg());
    int rc = ap_text_tower_plan_measure(&ctx, t, B, N, &plan);
    if (tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok") &&
        open_ws(name, &plan, &ctx, &tape, &tmp)) {
        int32_t *ids = token_ids(B, N, t->vocab);
        ap_tensor out = ap_t3(NULL, B, N, t->C);
        fill(&out, 1, 0, 0);
        ctx.tmp = &tmp;
        rc = ap_text_tower_forward(&ctx, t, &out, ids, B, N);
        tu_check(rc == 0, "%s: forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        check_ws(name, &plan, &ctx, &tape, &tmp);
        free(ids), free(out.data);
        ap_arena_free(&tape), ap_arena_free(&tmp);
    }
    ap_ctx_free(&ctx);
}

/* The vision tower: inference forward, forward with tape, backward. */
static void vit_case(const char *name, const ap_vit *v, int64_t B) {
    ap_ctx ctx;
    ap_arena tape, tmp;
    ap_plan plan;
    if (ap_ctx_init(&ctx, 2)) return (void)tu_check(0, "context: %s", ap_errmsg());
    int rc = ap_vit_plan_measure(&ctx, v, B, &plan);
    if (tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok") &&
        open_ws(name, &plan, &ctx, &tape, &tmp)) {
        int64_t S = v->image_size;
        ap_tensor px = ap_t4(NULL, B, v->channels, S, S), dpx = px;
        ap_tensor out = ap_t2(NULL, B, v->proj_dim), dout = out;
        fill(&px, 1, -1, 1), fill(&dpx, 2, 0, 0), fill(&out, 3, 0, 0), fill(&dout, 4, -1, 1);
        ap_vit_saved *sv = calloc(1, sizeof *sv);
        ctx.tmp = &tmp;
        ap_tape tp = ap_tape_on(&tape);
        rc = ap_vit_forward(&ctx, NULL, v, NULL, &out, &px);
        tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_vit_forward(&ctx, &tp, v, sv, &out, &px);
        tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_vit_backward(&ctx, &tp, v, sv, &dpx, &dout);
        tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        check_ws(name, &plan, &ctx, &tape, &tmp);
        free(px.data), free(dpx.data), free(out.data), free(dout.data), free(sv);
        ap_arena_free(&tape), ap_arena_free(&tmp);
    }
    ap_ctx_free(&ctx);
}

/* The aesthetic reward on images (B, 3, H, W). */
static void aesthetic_case(const char *name, const ap_aesthetic *m, int64_t B, int64_t H,
                           int64_t W) {
    ap_ctx ctx;
    ap_arena tape, tmp;
    ap_plan plan;
    if (ap_ctx_init(&ctx, 2)) return (void)tu_check(0, "context: %s", ap_errmsg());
    int rc = ap_aesthetic_plan_measure(&ctx, m, B, H, W, &plan);
    if (tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok") &&
        open_ws(name, &plan, &ctx, &tape, &tmp)) {
        ap_tensor img = ap_t4(NULL, B, 3, H, W), dimg = img, r = ap_t1(NULL, B), l = r, dl = r;
        fill(&img, 1, -1, 1), fill(&dimg, 2, 0, 0), fill(&r, 3, 0, 0), fill(&l, 4, 0, 0);
        fill(&dl, 5, -1, 1);
        ap_aesthetic_saved *sv = calloc(1, sizeof *sv);
        ctx.tmp = &tmp;
        ap_tape tp = ap_tape_on(&tape);
        rc = ap_aesthetic_forward(&ctx, NULL, m, NULL, &r, &l, &img);
        tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_aesthetic_forward(&ctx, &tp, m, sv, &r, &l, &img);
        tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_aesthetic_backward(&ctx, &tp, m, sv, &dimg, &dl);
        tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        check_ws(name, &plan, &ctx, &tape, &tmp);
        free(img.data), free(dimg.data), free(r.data), free(l.data), free(dl.data), free(sv);
        ap_arena_free(&tape), ap_arena_free(&tmp);
    }
    ap_ctx_free(&ctx);
}

/* The HPS reward: text features of N-token prompts, then as the aesthetic. */
static void hps_case(const char *name, const ap_hps *m, int64_t B, int64_t H, int64_t W,
                     int64_t N) {
    ap_ctx ctx;
    ap_arena tape, tmp;
    ap_plan plan;
    if (ap_ctx_init(&ctx, 2)) return (void)tu_check(0, "context: %s", ap_errmsg());
    int rc = ap_hps_plan_measure(&ctx, m, B, H, W, N, &plan);
    if (tu_check(rc == 0, "%s: measure (%s)", name, rc ? ap_errmsg() : "ok") &&
        open_ws(name, &plan, &ctx, &tape, &tmp)) {
        int32_t *ids = token_ids(B, N, m->text.vocab);
        ap_tensor img = ap_t4(NULL, B, 3, H, W), dimg = img, s = ap_t1(NULL, B), l = s, dl = s;
        ap_tensor txt = ap_t2(NULL, B, m->embed_dim);
        fill(&img, 1, -1, 1), fill(&dimg, 2, 0, 0), fill(&s, 3, 0, 0), fill(&l, 4, 0, 0);
        fill(&dl, 5, -1, 1), fill(&txt, 6, 0, 0);
        ap_hps_saved *sv = calloc(1, sizeof *sv);
        ctx.tmp = &tmp;
        ap_tape tp = ap_tape_on(&tape);
        rc = ap_hps_encode_text(&ctx, m, &txt, ids, B, N);
        tu_check(rc == 0, "%s: text features in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_hps_forward(&ctx, NULL, m, NULL, &s, &l, &img, &txt);
        tu_check(rc == 0, "%s: inference forward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_hps_forward(&ctx, &tp, m, sv, &s, &l, &img, &txt);
        tu_check(rc == 0, "%s: forward with tape in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        rc = ap_hps_backward(&ctx, &tp, m, sv, &dimg, &dl);
        tu_check(rc == 0, "%s: backward in the plan (%s)", name, rc ? ap_errmsg() : "ok");
        check_ws(name, &plan, &ctx, &tape, &tmp);
        free(ids), free(img.data), free(dimg.data), free(s.data), free(l.data), free(dl.data);
        free(txt.data), free(sv);
        ap_arena_free(&tape), ap_arena_free(&tmp);
    }
    ap_ctx_free(&ctx);
}

static int parse(ap_json **j, const char *text) {
    return ap_json_parse(j, text, strlen(text), "test config");
}

/* Mid sizes: ViT width 256, 3 layers, 112 x 112 images in 14 x 14 patches
 * (65 tokens), images 128 x 128 (Resize down); open_clip text width 256,
 * 3 layers, 77 tokens. Random weights. */
static const char *const HPS_MID =
    "{\"embed_dim\": 128, \"vision_cfg\": {\"image_size\": 112, \"layers\": 3, \"width\": 256, "
    "\"head_width\": 64, \"patch_size\": 14, \"mlp_ratio\": 4}, \"text_cfg\": {\"context_length\": "
    "77, \"vocab_size\": 1000, \"width\": 256, \"heads\": 4, \"layers\": 3}}";
static const char *const CLIP_MID =
    "{\"projection_dim\": 16, \"vision_config\": {\"hidden_size\": 256, \"intermediate_size\": "
    "1024, \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"image_size\": 112, "
    "\"patch_size\": 14}}";

static void reward_cases(const char *fx) {
    char dir[4096], mlp[4096], ckpt[4096];
    snprintf(dir, sizeof dir, "%s/clip/text_encoder", fx);
    ap_clip_text ct;
    if (tu_check(ap_clip_text_load(&ct, dir) == 0, "open the tiny text encoder (%s)", ap_errmsg())) {
        text_case("text tower tiny B2 N77", &ct.t, 2, ct.t.max_pos);
        ap_clip_text_free(&ct);
    }
    snprintf(dir, sizeof dir, "%s/clip/clip_model", fx);
    snprintf(mlp, sizeof mlp, "%s/clip/aesthetic_mlp.pth", fx);
    ap_aesthetic aes;
    if (tu_check(ap_aesthetic_load(&aes, dir, mlp) == 0, "open the tiny aesthetic scorer (%s)",
                 ap_errmsg())) {
        vit_case("ViT tiny B2", &aes.clip.v, 2);
        aesthetic_case("aesthetic tiny B2 32x32", &aes, 2, 32, 32);
        ap_aesthetic_free(&aes);
    }
    /* mid: the CLIP_MID tower with the tiny MLP (16 inputs) */
    ap_json *j = NULL;
    memset(&aes, 0, sizeof aes);
    aes.target = AP_AESTHETIC_TARGET;
    if (tu_check(parse(&j, CLIP_MID) == 0 && ap_clip_vision_config(&aes.clip, j, "mid") == 0 &&
                     ap_clip_vision_declare(&aes.clip) == 0 &&
                     ap_params_alloc(&aes.clip.params, "mid CLIP") == 0 &&
                     ap_aesthetic_mlp_load(&aes, mlp) == 0,
                 "build the mid aesthetic scorer (%s)", ap_errmsg())) {
        tu_fill_uniform(aes.clip.params.flat, (int64_t)aes.clip.params.total, 9, -0.05f, 0.05f);
        vit_case("ViT mid (256, 3 layers, 65 tokens) B2", &aes.clip.v, 2);
        aesthetic_case("aesthetic mid B2 128x128", &aes, 2, 128, 128);
    }
    ap_aesthetic_free(&aes);
    ap_json_free(j);
    snprintf(dir, sizeof dir, "%s/hps/open_clip_tiny.json", fx);
    snprintf(ckpt, sizeof ckpt, "%s/hps/hps_tiny.pt", fx);
    ap_hps hps;
    if (tu_check(ap_hps_load(&hps, dir, ckpt) == 0, "open the tiny HPS model (%s)", ap_errmsg())) {
        hps_case("HPS tiny B2 32x32 N77", &hps, 2, 32, 32, hps.text.max_pos);
        ap_hps_free(&hps);
    }
    j = NULL;
    memset(&hps, 0, sizeof hps);
    if (tu_check(parse(&j, HPS_MID) == 0 && ap_hps_config(&hps, j, "mid") == 0 &&
                     ap_hps_declare(&hps) == 0 && ap_params_alloc(&hps.params, "mid HPS") == 0,
                 "build the mid HPS model (%s)", ap_errmsg())) {
        tu_fill_uniform(hps.params.flat, (int64_t)hps.params.total, 10, -0.05f, 0.05f);
        text_case("text tower mid (256, 3 layers) B2 N77", &hps.text, 2, hps.text.max_pos);
        hps_case("HPS mid B2 128x128 N77", &hps, 2, 128, 128, hps.text.max_pos);
    }
    ap_hps_free(&hps);
    ap_json_free(j);
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
    reward_cases(fx);
    return tu_exit();
}
