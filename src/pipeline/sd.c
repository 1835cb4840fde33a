/* sd.c: loading an SD directory and sampling text-to-image with CFG + DDIM. */
#include "sd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/path.h"
#include "core/rng.h"
#include "io/lora_file.h"
#include "io/weights.h"
#include "ops/memory.h"
#include "ops/rows.h"
#include "pipeline/sampler.h"
#include "sd_internal.h"

/* Rank of a LoRA file of any layout (io/lora_file.h). */
int ap_sd_lora_rank(const char *path, int *rank) { return ap_lora_rank(path, rank); }

int ap_sd_open(ap_sd *sd, const char *dir, const char *lora) {
    return ap_sd_open_rank(sd, dir, lora, 0);
}

int ap_sd_open_rank(ap_sd *sd, const char *dir, const char *lora, int lora_rank) {
    memset(sd, 0, sizeof *sd);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/model_index.json", dir);
    if (!ap_path_exists(a))
        return ap_fail("%s: not a diffusers model directory (expected model_index.json)", dir);
    int rank = lora_rank, rc;
    if (lora) AP_TRY(ap_sd_lora_rank(lora, &rank));
    snprintf(a, sizeof a, "%s/tokenizer/vocab.json", dir);
    snprintf(b, sizeof b, "%s/tokenizer/merges.txt", dir);
    rc = ap_tokenizer_load_hf(&sd->tok, a, b);
    snprintf(a, sizeof a, "%s/tokenizer", dir);
    if (!rc) rc = ap_tokenizer_hf_pad_from_dir(sd->tok, a); /* SD 2.x pads with "!" */
    snprintf(a, sizeof a, "%s/text_encoder", dir);
    if (!rc) rc = ap_clip_text_load(&sd->text, a);
    snprintf(a, sizeof a, "%s/unet", dir);
    if (!rc) rc = ap_unet_open(&sd->unet, a, rank);
    if (!rc && lora) rc = ap_unet_load_lora(&sd->unet, lora);
    snprintf(a, sizeof a, "%s/vae", dir);
    if (!rc) rc = ap_vae_load(&sd->vae, a);
    if (!rc) rc = ap_sd_finish(sd, dir, dir);
    if (rc) ap_sd_close(sd);
    return rc;
}

int ap_sd_finish(ap_sd *sd, const char *config_dir, const char *what) {
    char a[4096] = "";
    if (config_dir) snprintf(a, sizeof a, "%s/scheduler/scheduler_config.json", config_dir);
    if (config_dir && ap_path_exists(a)) AP_TRY(ap_ddim_config_from_json(&sd->sched, a));
    else ap_ddim_config_sd15(&sd->sched);
    if (sd->text.t.C != sd->unet.cfg.cross_dim)
        return ap_fail("%s: text_encoder hidden_size %d does not match unet cross_attention_dim %d",
                       what, sd->text.t.C, sd->unet.cfg.cross_dim);
    return AP_OK;
}

void ap_sd_close(ap_sd *sd) {
    ap_tokenizer_free(sd->tok);
    ap_clip_text_free(&sd->text);
    ap_unet_free(&sd->unet);
    ap_vae_free(&sd->vae);
    memset(sd, 0, sizeof *sd);
}

int ap_sd_default_size(const ap_sd *sd) {
    return sd->unet.cfg.sample_size * (1 << (sd->vae.cfg.n_blocks - 1));
}

int ap_sd_place(ap_ctx *ctx, ap_sd *sd) {
    AP_TRY(ap_params_place(ctx, &sd->text.params));
    AP_TRY(ap_unet_place(ctx, &sd->unet));
    return ap_params_place(ctx, &sd->vae.params);
}

void ap_sd_unplace(ap_ctx *ctx, ap_sd *sd) {
    ap_params_unplace(ctx, &sd->text.params);
    ap_unet_unplace(ctx, &sd->unet);
    ap_params_unplace(ctx, &sd->vae.params);
}

int ap_sd_latent_size(const ap_sd *sd, int height, int width, int *h, int *w) {
    int f = 1 << (sd->vae.cfg.n_blocks - 1);
    int u = 1 << (sd->unet.cfg.levels - 1);
    if (height <= 0 || width <= 0 || height % (f * u) || width % (f * u))
        return ap_fail("image size %dx%d: expected positive multiples of %d (VAE factor %d x "
                       "UNet factor %d)", height, width, f * u, f, u);
    *h = height / f;
    *w = width / f;
    return AP_OK;
}

/* a tensor of the pipeline on ctx's device */
static ap_tensor on(const ap_ctx *ctx, ap_tensor t) {
    t.device = ctx->device;
    return t;
}

/* out (n, L, C) on ctx's device: prompts encoded. */
static int encode(ap_ctx *ctx, ap_sd *sd, const char *const *prompts, int n, float *out) {
    const ap_text_tower *t = &sd->text.t;
    int L = t->max_pos;
    int32_t *ids = ap_malloc((size_t)n * (size_t)L * sizeof *ids, "token ids");
    if (!ids) return AP_ERR;
    int rc = AP_OK;
    for (int i = 0; i < n && !rc; i++) {
        rc = ap_tokenize(sd->tok, prompts[i], ids + (size_t)i * L, L);
        if (rc) ap_err_prefix("prompt %d: ", i + 1);
    }
    ap_arena tmp = {0};
    ap_plan p;
    if (!rc) rc = ap_text_tower_plan_measure(ctx, t, n, L, &p);
    if (!rc) rc = ap_arena_init_on(ctx, &tmp, p.tmp_bytes, "text encoder temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, p.scratch_bytes);
    ap_tensor o = on(ctx, ap_t3(out, n, L, t->C));
    ap_arena *prev = ctx->tmp;
    ctx->tmp = &tmp;
    if (!rc) rc = ap_text_tower_forward(ctx, t, &o, ids, n, L);
    ctx->tmp = prev;
    ap_arena_free_on(ctx, &tmp);
    free(ids);
    return rc;
}

/* The sampler's per-step callback: the caller's progress report. */
typedef struct progress_cb {
    ap_progress_fn fn;
    void *user;
} progress_cb;

static int on_step(void *p, int done, int total) {
    const progress_cb *q = p;
    if (q->fn) q->fn(q->user, done, total);
    return AP_OK;
}

int ap_sd_sample(ap_ctx *ctx, ap_sd *sd, const char *const *prompts, int n,
                 const ap_sample_opts *o, float *images, ap_progress_fn progress, void *user) {
    int h, w;
    AP_TRY(ap_sd_latent_size(sd, o->height, o->width, &h, &w));
    if (n < 1) return ap_fail("sample: expected at least one prompt");
    if (!isfinite(o->guidance) || fabsf(o->guidance) > 1e6f)
        return ap_fail("sample: guidance: expected a finite number of magnitude <= 1e6 (7.5 "
                       "typical), found %g",
                       (double)o->guidance);
    ap_ddim sched;
    AP_TRY(ap_ddim_init(&sched, &sd->sched, o->steps));
    const int L = sd->text.t.max_pos, C = sd->text.t.C;
    const int Cl = sd->unet.cfg.in_channels;
    const int64_t lat = (int64_t)Cl * h * w, B2 = 2 * (int64_t)n;
    /* one UNet call per step for all n prompts: rows [uncond x n; cond], as
     * StableDiffusionPipeline concatenates them (pipeline/sampler.h) */
    const int64_t img = (int64_t)sd->vae.cfg.out_channels * o->height * o->width;
    /* the tensors on ctx's device, one block (no host malloc for tensor
     * data: the same code runs on CUDA, docs/cuda.md §6); the initial noise
     * is drawn on the host and written once */
    ap_arena bufs = {0};
    float *uncond = NULL, *cond = NULL, *ctxt = NULL, *x = NULL, *x2 = NULL, *eps = NULL,
          *ts = NULL, *dimg = NULL;
    const struct { float **slot; int64_t n; const char *what; } b[] = {
        {&uncond, L * C, "empty-prompt embedding"}, {&cond, n * L * C, "text embeddings"},
        {&ctxt, B2 * L * C, "UNet context"}, {&x, n * lat, "latents"},
        {&x2, B2 * lat, "UNet input"}, {&eps, B2 * lat, "noise predictions"},
        {&ts, B2, "timesteps"}, {&dimg, n * img, "images"}};
    size_t bytes = 0;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) bytes += ap_align64((size_t)b[i].n * sizeof(float));
    float *noise = o->init_noise ? NULL : ap_malloc((size_t)(n * lat) * sizeof(float), "initial noise");
    ap_arena tmp = {0};
    ap_unet_saved usv = {0};
    ap_vae_saved vsv;
    int rc = (!o->init_noise && !noise) ? AP_ERR : AP_OK;
    if (!rc) rc = ap_arena_init_on(ctx, &bufs, bytes, "sample buffers");
    for (size_t i = 0; i < sizeof b / sizeof b[0] && !rc; i++)
        if (!(*b[i].slot = ap_arena_floats(&bufs, (size_t)b[i].n, b[i].what))) rc = AP_ERR;
    const char *empty[1] = {""};
    if (!rc) rc = encode(ctx, sd, empty, 1, uncond);
    if (!rc) rc = encode(ctx, sd, prompts, n, cond);
    ap_unet_plan plan;
    if (!rc) rc = ap_unet_plan_measure(ctx, &sd->unet, B2, h, w, L, &plan);
    if (!rc) rc = ap_arena_init_on(ctx, &tmp, plan.tmp_bytes, "UNet temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, plan.scratch_bytes);
    if (!rc) rc = ap_unet_saved_init(&usv, &sd->unet);
    ap_tensor tl = on(ctx, ap_t4(x, n, Cl, h, w));
    ap_tensor tlat = on(ctx, ap_tn(x, 5, (int64_t[]){1, n, Cl, h, w}));
    if (!rc && !o->init_noise) /* image k: its own stream, whatever the batch, rank or thread count */
        for (int k = 0; k < n; k++) ap_gaussian_fill(noise + k * lat, lat, o->seeds ? o->seeds[k] : o->seed + (uint64_t)k);
    if (!rc) rc = ap_tensor_write(ctx, &tl, o->init_noise ? o->init_noise : noise);
    ap_sampler sm = {.unet = &sd->unet, .sv = &usv, .tmp = &tmp, .sched = &sched, .guidance = o->guidance,
                     .group = n, .x2 = on(ctx, ap_t4(x2, B2, Cl, h, w)),
                     .eps2 = on(ctx, ap_t4(eps, B2, Cl, h, w)),
                     .ctx2 = on(ctx, ap_t3(ctxt, B2, L, C)), .t2 = on(ctx, ap_t1(ts, B2))};
    ap_tensor tu = on(ctx, ap_t3(uncond, 1, L, C)), tc = on(ctx, ap_t3(cond, n, L, C));
    progress_cb cb = {progress, user};
    if (!rc) rc = ap_sampler_run(ctx, &sm, &tlat, NULL, &tu, &tc, "sample", on_step, &cb);
    ap_arena_free_on(ctx, &tmp);
    ap_unet_saved_free(&usv);
    if (!rc && o->final_latents) rc = ap_tensor_read(ctx, o->final_latents, &tl);
    ap_plan vp;
    if (!rc) rc = ap_vae_plan_measure(ctx, &sd->vae, n, h, w, &vp);
    if (!rc) rc = ap_arena_init_on(ctx, &tmp, vp.tmp_bytes, "VAE decoder temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, vp.scratch_bytes);
    ap_tensor ti = on(ctx, ap_t4(dimg, n, sd->vae.cfg.out_channels, o->height, o->width));
    ap_arena *prev = ctx->tmp;
    ctx->tmp = &tmp;
    if (!rc) rc = ap_vae_forward(ctx, NULL, &sd->vae, &vsv, &ti, &tl);
    ctx->tmp = prev;
    ap_arena_free_on(ctx, &tmp);
    if (!rc) rc = ap_check_finite_tensor(ctx, &ti, "sample: VAE decode: images");
    if (!rc) rc = ap_tensor_read(ctx, images, &ti);
    ap_arena_free_on(ctx, &bufs);
    free(noise);
    return rc;
}
