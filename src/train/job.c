/* job.c: setting up the training job on one rank (job.h): run directory,
 * models, reward, chain, optimizer, prompts; and what a sample is. */
#include "train/job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/path.h"
#include "core/rng.h"
#include "ops/rows.h"
#include "ops/select.h"
#include "io/weights.h"
#include "pipeline/tiny.h"
#include "text/prompts.h"
#include "train/checkpoint.h"
#include "train/rundir.h"
#include "train/tblog.h"

static int open_models(ap_job *j) {
    const ap_train_config *c = j->cfg;
    if (!strncmp(c->model, "tiny:", 5)) {
        uint64_t seed = strtoull(c->model + 5, NULL, 10);
        if (strlen(j->run_dir) + 12 > sizeof j->model_dir) return ap_fail("run directory path too long");
        memcpy(j->model_dir, j->run_dir, strlen(j->run_dir));
        memcpy(j->model_dir + strlen(j->run_dir), "/tiny-model", 12);
        int rc = AP_OK;
        if (j->dist->rank == 0) rc = ap_tiny_write(j->model_dir, seed);
        int any = 0;
        AP_TRY(ap_dist_any(j->dist, rc != 0, &any));
        if (any) return rc ? AP_ERR : ap_fail("rank 0 could not write the tiny model");
    } else {
        memcpy(j->model_dir, c->model, sizeof j->model_dir);
        if (!ap_is_dir(c->model))
            return ap_fail("pretrained.model: %s: expected a diffusers model directory "
                           "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) "
                           "or tiny:SEED", c->model);
    }
    /* mixed_precision bf16: the frozen UNet, VAE and (ap_job_open, next) reward
     * weights load in bf16; set after the tiny model is written (its writer
     * fills f32 slots). fp16 stays fp32 on the CPU (train_cmd.c says so). */
    ap_weights_set_frozen_dtype(!strcmp(c->mixed_precision, "bf16") ? AP_BF16 : AP_F32);
    AP_TRY(ap_sd_open_rank(&j->sd, j->model_dir, NULL, c->lora_rank));
    AP_TRY(ap_unet_init_lora(&j->sd.unet, ap_key(c->seed, AP_KEY_LORA, 0, 0)));
    uint64_t h = 0;
    ap_hash_floats(j->sd.unet.params.flat, j->sd.unet.params.total, &h);
    ap_hash_floats(j->sd.vae.params.flat, j->sd.vae.params.total, &h);
    ap_hash_floats(j->sd.text.params.flat, j->sd.text.params.total, &h);
    snprintf(j->base_hash, sizeof j->base_hash, "%016llx", (unsigned long long)h);
    return AP_OK;
}

int ap_job_open(ap_job *j, const ap_train_config *cfg, ap_dist *dist, int cap, int threads) {
    memset(j, 0, sizeof *j);
    j->cfg = cfg, j->dist = dist, j->cap = cap;
    /* the config's backend, checked at start (train_cmd.c); on CUDA the
     * device of this rank's node-local rank (docs/cuda.md §2) */
    AP_TRY(ap_backend_ctx_init(&j->ctx, cfg->backend, threads, cfg->allow_tf32));
    if (j->ctx.device == AP_CPU) ap_ctx_pin_threads(&j->ctx);
    AP_TRY(ap_run_dir_path(cfg, j->run_dir, sizeof j->run_dir));
    if (dist->rank == 0) AP_TRY(ap_mkdirs(j->run_dir));
    ap_dist_barrier(dist);
    int *caps = ap_malloc(sizeof(int) * (size_t)dist->world, "capacities");
    if (!caps) return AP_ERR;
    int rc = ap_dist_allgather_int(dist, cap, caps);
    if (!rc) rc = ap_batch_plan_make(&j->plan, cfg, dist->world, caps);
    free(caps);
    AP_TRY(rc);
    /* blank lines are empty prompts, as the original reads prompt files */
    AP_TRY(ap_prompts_read_lines(cfg->prompt_file, &j->prompts, &j->n_prompts));
    AP_TRY(ap_prompts_read_lines(cfg->eval_prompt_file[0] ? cfg->eval_prompt_file : cfg->prompt_file,
                                 &j->eval_prompts, &j->n_eval_prompts));
    AP_TRY(open_models(j));
    /* every weight where the ops run (a no-op on the CPU; docs/cuda.md §6) */
    AP_TRY(ap_sd_place(&j->ctx, &j->sd));
    AP_TRY(ap_reward_open(&j->reward, cfg));
    AP_TRY(ap_reward_place(&j->ctx, j->reward));
    const ap_text_tower *t = &j->sd.text.t;
    int res = cfg->resolution;
    AP_TRY(ap_chain_init(&j->chain, &j->ctx, &j->sd.unet, &j->sd.vae, j->reward, &j->sd.sched,
                         cfg->steps, (float)cfg->guidance_scale, cap, res, res, t->max_pos, t->C));
    j->chain.sched.eta = (float)cfg->eta;
    if (cfg->kl_coeff > 0) AP_TRY(ap_chain_set_base(&j->chain, &j->ctx)); /* docs/draft.md §2 */
    if (cfg->draft_lv_n > 0) AP_TRY(ap_chain_set_lv(&j->chain, &j->ctx)); /* docs/draft.md §1 */
    AP_TRY(ap_adamw_init(&j->opt, (int64_t)j->sd.unet.lora.total));
    j->gacc = ap_malloc(j->sd.unet.lora.total * sizeof(float), "step gradient");
    j->gstage = ap_malloc(j->sd.unet.lora.total * sizeof(float), "micro-batch gradient (host staging)");
    if (!j->gacc || !j->gstage) return AP_ERR;
    j->uncond = ap_malloc((size_t)(t->max_pos * t->C) * sizeof(float), "empty-prompt embedding");
    j->cond = ap_malloc((size_t)cap * (size_t)(t->max_pos * t->C) * sizeof(float), "prompt embeddings");
    if (!j->uncond || !j->cond) return AP_ERR;
    ap_plan tp;
    AP_TRY(ap_text_tower_plan_measure(&j->ctx, t, cap, t->max_pos, &tp));
    /* the encoder's output (device) first, then its temporaries */
    const size_t out_bytes = ap_align64((size_t)cap * (size_t)(t->max_pos * t->C) * sizeof(float));
    AP_TRY(ap_arena_init_on(&j->ctx, &j->text_tmp, out_bytes + tp.tmp_bytes,
                            "text encoder output and temporaries"));
    AP_TRY(ap_ctx_reserve(&j->ctx, tp.scratch_bytes));
    const char *empty[1] = {""};
    AP_TRY(ap_job_encode(j, empty, 1, j->uncond));
    return AP_OK;
}

void ap_job_close(ap_job *j) {
    if (j->log) ap_h5log_close(j->log);
    ap_tblog_close(j);
    ap_chain_free(&j->chain);
    ap_reward_unplace(&j->ctx, j->reward);
    ap_reward_free(j->reward);
    ap_sd_unplace(&j->ctx, &j->sd);
    ap_sd_close(&j->sd);
    ap_adamw_free(&j->opt);
    ap_batch_plan_free(&j->plan);
    ap_prompts_free(j->prompts, j->n_prompts);
    ap_prompts_free(j->eval_prompts, j->n_eval_prompts);
    free(j->uncond), free(j->cond), free(j->gacc), free(j->gstage);
    ap_arena_free_on(&j->ctx, &j->text_tmp);
    ap_backend_ctx_free(&j->ctx); /* a zeroed context (open failed early) frees nothing */
    memset(j, 0, sizeof *j);
}

int ap_job_encode(ap_job *j, const char *const *prompts, int n, float *out) {
    const ap_text_tower *t = &j->sd.text.t;
    int L = t->max_pos;
    if (n > j->cap && n > 1) return ap_fail("encode: %d prompts above the capacity %d", n, j->cap);
    int32_t ids[64 * 77], *idp = ids;
    if ((size_t)n * (size_t)L > sizeof ids / sizeof ids[0]) {
        idp = ap_malloc((size_t)n * (size_t)L * sizeof(int32_t), "token ids");
        if (!idp) return AP_ERR;
    }
    int rc = AP_OK;
    for (int i = 0; i < n && !rc; i++) {
        rc = ap_tokenize(j->sd.tok, prompts[i], idp + (size_t)i * L, L);
        if (rc) ap_err_prefix("prompt \"%s\": ", prompts[i]);
    }
    /* encoded on the context's device, read back to the host array out
     * (the chain writes it into its own tensors) */
    ap_arena_reset(&j->text_tmp);
    ap_tensor o = ap_t3(NULL, n, L, t->C);
    o.device = j->ctx.device;
    if (!rc && !(o.data = ap_arena_floats(&j->text_tmp, (size_t)ap_numel(&o), "text encoder output")))
        rc = AP_ERR;
    ap_arena *prev = j->ctx.tmp;
    j->ctx.tmp = &j->text_tmp;
    if (!rc) rc = ap_text_tower_forward(&j->ctx, t, &o, idp, n, L);
    j->ctx.tmp = prev;
    if (!rc) rc = ap_tensor_read(&j->ctx, out, &o);
    if (idp != ids) free(idp);
    return rc;
}

int ap_job_prompt_index(const ap_job *j, int64_t epoch, int64_t k) {
    uint64_t s = ap_key(j->cfg->seed, AP_KEY_PROMPT, (uint64_t)epoch, (uint64_t)k);
    return ap_rand_int(&s, 0, j->n_prompts - 1);
}

void ap_job_noise(const ap_job *j, uint64_t stream, int64_t a, int64_t k, float *out) {
    ap_gaussian_fill(out, j->chain.C * j->chain.h * j->chain.w,
                     ap_key(j->cfg->seed, stream, (uint64_t)a, (uint64_t)k));
}

static int draw(void *rng, int lo, int hi) { return ap_rand_int((uint64_t *)rng, lo, hi); }

int ap_job_trunc(const ap_job *j, int64_t epoch, int64_t k, unsigned char *attached) {
    const ap_train_config *c = j->cfg;
    ap_trunc_config tc = {
        .truncated_backprop = c->truncated_backprop,
        .truncated_backprop_rand = c->truncated_backprop_rand,
        .minmax = {c->truncated_backprop_minmax[0], c->truncated_backprop_minmax[1]},
        .trunc_backprop_timestep = c->trunc_backprop_timestep,
        .per_trajectory = c->trunc_mode == AP_TRUNC_PER_TRAJECTORY,
    };
    uint64_t s = ap_key(c->seed, AP_KEY_TRUNC, (uint64_t)epoch, (uint64_t)k);
    int S = j->chain.sched.steps;
    if (ap_trunc_plan(&tc, S, draw, &s, attached) < 0) return AP_ERR;
    int n = 0;
    for (int i = 0; i < S; i++) n += attached[i] != 0;
    return n;
}
