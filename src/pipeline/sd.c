/* sd.c: loading an SD directory and sampling text-to-image with CFG + DDIM. */
#include "sd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/finite.h"
#include "core/path.h"
#include "core/rng.h"
#include "io/weights.h"
#include "sd_internal.h"

/* Rank of a LoRA file: rows of any "...to_k_lora.down.weight" (AlignProp's
 * save_attn_procs names, optionally "unet."-prefixed). */
int ap_sd_lora_rank(const char *path, int *rank) {
    char file[4096];
    if (ap_is_dir(path)) {
        snprintf(file, sizeof file, "%s/pytorch_lora_weights.safetensors", path);
        if (!ap_path_exists(file)) snprintf(file, sizeof file, "%s/pytorch_lora_weights.bin", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    ap_wsrc *w = NULL;
    AP_TRY(ap_wsrc_open(&w, file));
    int rc = ap_fail("%s: no LoRA matrix (*.to_k_lora.down.weight) found", file);
    for (int i = 0; i < ap_wsrc_count(w); i++) {
        const char *name = ap_wsrc_name(w, i);
        size_t n = strlen(name), m = strlen("to_k_lora.down.weight");
        if (n < m || strcmp(name + n - m, "to_k_lora.down.weight") != 0) continue;
        ap_tensor t;
        rc = ap_wsrc_shape(w, name, &t);
        if (!rc && (t.ndim != 2 || t.shape[0] < 1))
            rc = ap_fail("%s: %s: expected shape (rank, in), found %d dims", file, name, t.ndim);
        if (!rc) *rank = (int)t.shape[0];
        break;
    }
    ap_wsrc_close(w);
    return rc;
}

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

/* out (n, L, C): prompts encoded; slot n.. (when uncond) the empty prompt. */
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
    if (!rc) rc = ap_arena_init(&tmp, ap_text_tower_tmp_bytes(t, n, L), "text encoder temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, ap_text_tower_scratch_bytes(t, n, L, ctx->n_threads));
    ap_tensor o = ap_t3(out, n, L, t->C);
    if (!rc) rc = ap_text_tower_forward(ctx, &tmp, t, &o, ids, n, L);
    ap_arena_free(&tmp);
    free(ids);
    return rc;
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
    /* context (2n, L, C): the empty prompt n times, then the prompts, as
     * StableDiffusionPipeline concatenates [uncond, cond]. */
    float *ctxt = ap_malloc((size_t)(B2 * L * C) * sizeof(float), "text embeddings");
    float *x = ap_malloc((size_t)(B2 * lat) * sizeof(float), "latents");
    float *eps = ap_malloc((size_t)(B2 * lat) * sizeof(float), "noise predictions");
    float *ts = ap_malloc((size_t)B2 * sizeof(float), "timesteps");
    ap_arena tmp = {0};
    int rc = (!ctxt || !x || !eps || !ts) ? AP_ERR : AP_OK;
    const char *empty[1] = {""};
    if (!rc) rc = encode(ctx, sd, empty, 1, ctxt);
    for (int i = 1; i < n && !rc; i++)
        memcpy(ctxt + (size_t)i * L * C, ctxt, (size_t)L * C * sizeof(float));
    if (!rc) rc = encode(ctx, sd, prompts, n, ctxt + (size_t)n * L * C);
    ap_unet_plan plan;
    if (!rc) rc = ap_unet_plan_sizes(&sd->unet, B2, h, w, L, ctx->n_threads, &plan);
    if (!rc) rc = ap_arena_init(&tmp, plan.tmp_bytes, "UNet temporaries");
    if (!rc) rc = ap_ctx_reserve(ctx, plan.scratch_bytes);
    if (!rc && o->init_noise) memcpy(x + n * lat, o->init_noise, (size_t)(n * lat) * sizeof(float));
    else if (!rc) /* image k: its own stream, whatever the batch, rank or thread count */
        for (int k = 0; k < n; k++) ap_gaussian_fill(x + (n + k) * lat, lat, o->seeds ? o->seeds[k] : o->seed + (uint64_t)k);
    ap_tensor tx = ap_t4(x, B2, Cl, h, w), te = ap_t4(eps, B2, Cl, h, w);
    ap_tensor tt = ap_t1(ts, B2), tc = ap_t3(ctxt, B2, L, C);
    for (int i = 0; i < sched.steps && !rc; i++) {
        memcpy(x, x + n * lat, (size_t)(n * lat) * sizeof(float)); /* same latent twice */
        for (int64_t b = 0; b < B2; b++) ts[b] = (float)sched.timesteps[i];
        rc = ap_unet_forward(ctx, &sd->unet, NULL, &tmp, &te, &tx, &tt, &tc);
        if (rc) break;
        /* eps_u = eps[0..n), eps_c = eps[n..2n): combined into eps[0..n) */
        ap_tensor teu = ap_t4(eps, n, Cl, h, w), tec = ap_t4(eps + n * lat, n, Cl, h, w);
        ap_tensor txc = ap_t4(x + n * lat, n, Cl, h, w);
        rc = ap_guidance_forward(ctx, &teu, &teu, &tec, o->guidance);
        if (!rc) rc = ap_ddim_step(ctx, &sched, i, &txc, &txc, &teu, NULL);
        char what[96];
        snprintf(what, sizeof what, "sample: DDIM step %d of %d (t = %d): latents", i + 1,
                 sched.steps, sched.timesteps[i]);
        if (!rc) rc = ap_check_finite(x + n * lat, n * lat, what);
        if (!rc && progress) progress(user, i + 1, sched.steps);
    }
    ap_arena_free(&tmp);
    if (!rc && o->final_latents)
        memcpy(o->final_latents, x + n * lat, (size_t)(n * lat) * sizeof(float));
    if (!rc) rc = ap_vae_plan(&sd->vae, ctx, n, h, w);
    ap_tensor tl = ap_t4(x + n * lat, n, Cl, h, w);
    ap_tensor ti = ap_t4(images, n, sd->vae.cfg.out_channels, o->height, o->width);
    if (!rc) rc = ap_vae_forward(ctx, &sd->vae, NULL, &ti, &tl);
    if (!rc) rc = ap_check_finite(images, ap_numel(&ti), "sample: VAE decode: images");
    free(ctxt), free(x), free(eps), free(ts);
    return rc;
}
