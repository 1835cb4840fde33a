/* evaluate.c: evaluation images and rewards (job.h), and the evaluate-only
 * and LoRA-soup modes (AlignProp's only_eval / soup_inference). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "ops/memory.h"
#include "core/path.h"
#include "core/rng.h"
#include "train/checkpoint.h"
#include "train/job.h"
#include "train/runinfo.h"
#include "train/tblog.h"
#include "train/vis.h"

int ap_job_evaluate(ap_job *j, int64_t step, int64_t epoch, const char *dir, double *mean_out) {
    const ap_train_config *c = j->cfg;
    ap_dist *d = j->dist;
    int E = c->per_gpu_capacity * c->max_vis_images;
    if (E < 1) E = 1;
    const int H = (int)j->chain.H, W = (int)j->chain.W;
    const int64_t n = j->chain.C * j->chain.h * j->chain.w, img = 3 * (int64_t)H * W;
    float *images = ap_calloc((size_t)E * (size_t)img, sizeof(float), "evaluation images");
    float *rewards = ap_calloc((size_t)E, sizeof(float), "evaluation rewards");
    float *noise = ap_malloc((size_t)(j->cap * n) * sizeof(float), "evaluation latents");
    /* (cap, 3, H, W) host copy of a micro-batch's images (ap_chain_io.images) */
    float *out = ap_malloc((size_t)j->cap * (size_t)img * sizeof(float), "evaluation micro-batch images");
    float loss[256], rew[256], part[AP_REWARD_MAX_PARTS * 256];
    const char *pr[256];
    int idx[256];
    /* a reward mixture: each part's reward of each image, (np, E) */
    const int np = ap_reward_parts(j->reward);
    float *parts = np ? ap_calloc((size_t)(np * E), sizeof(float), "evaluation reward parts") : NULL;
    int rc = (!images || !rewards || !noise || !out || (np && !parts)) ? AP_ERR : AP_OK;
    const int64_t key_a = c->same_evaluation ? 0 : step + 1;
    /* image k on rank k mod world, in micro-batches of this rank's capacity */
    for (int k0 = d->rank; k0 < E && !rc;) {
        int b = 0;
        for (int k = k0; k < E && b < j->cap && b < 256; k += d->world) idx[b++] = k;
        for (int i = 0; i < b; i++) {
            uint64_t s = ap_key(c->seed, AP_KEY_EVAL_PROMPT, 0, (uint64_t)idx[i]);
            pr[i] = j->eval_prompts[ap_rand_int(&s, 0, j->n_eval_prompts - 1)];
            ap_job_noise(j, AP_KEY_EVAL_NOISE, key_a, idx[i], noise + i * n);
        }
        rc = ap_job_encode(j, pr, b, j->cond);
        ap_chain_io io = {.b = b, .noise = noise, .cond = j->cond, .uncond = j->uncond,
                          .prompts = pr, .loss = loss, .reward = rew, .images = out,
                          .parts = np ? part : NULL};
        if (!rc) rc = ap_chain_run(&j->chain, &j->ctx, &io);
        for (int i = 0; i < b && !rc; i++) {
            memcpy(images + (size_t)idx[i] * img, out + (size_t)i * img, (size_t)img * sizeof(float));
            rewards[idx[i]] = rew[i];
            for (int q = 0; q < np; q++) parts[(size_t)q * E + idx[i]] = part[q * b + i];
        }
        k0 = idx[b - 1] + d->world;
    }
    if (rc) fprintf(stderr, "\nalignprop-mpi: rank %d: evaluation: %s\n", d->rank, ap_errmsg());
    int any = 0;
    if (ap_dist_any(d, rc != 0, &any) || any) goto out;
    rc = ap_dist_allreduce_sum(d, images, (int64_t)E * img);
    if (!rc) rc = ap_dist_allreduce_sum(d, rewards, E);
    if (!rc && np) rc = ap_dist_allreduce_sum(d, parts, (int64_t)np * E);
    if (rc) goto out;
    double mean = 0, var = 0;
    for (int k = 0; k < E; k++) mean += rewards[k];
    mean /= E;
    for (int k = 0; k < E; k++) var += (rewards[k] - mean) * (rewards[k] - mean);
    double sd = E > 1 ? sqrt(var / (E - 1)) : 0.0;
    if (mean_out) *mean_out = mean;
    if (d->rank == 0) {
        const char **names = malloc(sizeof *names * (size_t)E);
        if (!names) rc = ap_fail("out of memory");
        for (int k = 0; k < E && !rc; k++) {
            uint64_t s = ap_key(c->seed, AP_KEY_EVAL_PROMPT, 0, (uint64_t)k);
            names[k] = j->eval_prompts[ap_rand_int(&s, 0, j->n_eval_prompts - 1)];
        }
        if (!rc) rc = ap_vis_write(dir, images, E, H, W, names);
        ap_eval_row row = {.step = step, .epoch = epoch, .reward_mean = mean,
                           .reward_std = sd, .rewards = rewards, .prompts = names,
                           .part_rewards = parts};
        if (!rc && j->log) rc = ap_h5log_eval(j->log, &row);
        if (!rc) rc = ap_tblog_eval(j, &row, images, H, W); /* tblog.h */
        free(names);
        if (!rc) {
            char pm[256] = "";
            for (int q = 0, o = 0; q < np && o < (int)sizeof pm; q++) { /* each part's mean */
                double m = 0;
                for (int k = 0; k < E; k++) m += parts[(size_t)q * E + k];
                o += snprintf(pm + o, sizeof pm - (size_t)o, "%s%s %.4f%s", q ? ", " : " (",
                              ap_reward_part_name(j->reward, q), m / E, q == np - 1 ? ")" : "");
            }
            fprintf(stderr, "%seval at step %lld: %s reward %.4f +- %.4f%s over %d images -> %s\n",
                    isatty(2) ? "\n" : "", (long long)step, ap_reward_name(j->reward), mean, sd,
                    pm, E, dir);
        }
        else
            fprintf(stderr, "\nalignprop-mpi: evaluation: %s\n", ap_errmsg());
    }
    int bad = 0;
    if (ap_dist_any(d, rc != 0, &bad) || bad) rc = rc ? rc : ap_fail("evaluation failed on rank 0");
out:
    free(images), free(rewards), free(noise), free(out), free(parts);
    return rc ? AP_ERR : AP_OK;
}

/* LoRA weights of a checkpoint directory (state.h5) or a LoRA file /
 * directory (pytorch_lora_weights.*) into the UNet. */
static int load_lora(ap_job *j, const char *path) {
    char st[4200];
    snprintf(st, sizeof st, "%s/state.h5", path);
    if (ap_is_file(st) || (strlen(path) > 3 && !strcmp(path + strlen(path) - 3, ".h5"))) {
        ap_ckpt_meta meta;
        memset(&meta, 0, sizeof meta);
        int rc = ap_ckpt_read(path, &j->sd.unet.lora, NULL, NULL, &meta);
        ap_ckpt_meta_free(&meta);
        return rc;
    }
    return ap_unet_load_lora(&j->sd.unet, path);
}

int ap_job_evaluate_only(ap_job *j) {
    const ap_train_config *c = j->cfg;
    ap_params *lora = &j->sd.unet.lora;
    int rc = AP_OK;
    if (c->mode == AP_RUN_EVALUATE_SOUP) {
        /* main.py's load_model_hook: lora = c1 * lora_1 + (1 - c1) * lora_2;
         * resume_from_2 "same"/"stablediffusion": lora = c1 * lora_1 */
        float *l2 = NULL;
        int base = !strcmp(c->resume_from_2, "same") || !strcmp(c->resume_from_2, "stablediffusion");
        if (!base) {
            rc = load_lora(j, c->resume_from_2);
            l2 = rc ? NULL : ap_malloc(lora->total * sizeof(float), "second LoRA");
            if (!rc && !l2) rc = AP_ERR;
            if (!rc) memcpy(l2, lora->flat, lora->total * sizeof(float));
        }
        if (!rc) rc = load_lora(j, c->resume_from);
        const float c1 = (float)c->mixing_coef_1;
        for (size_t i = 0; i < lora->total && !rc; i++)
            lora->flat[i] = lora->flat[i] * c1 + (l2 ? l2[i] * (1.0f - c1) : 0.0f);
        free(l2);
        if (!rc) ap_dist_print0(j->dist, "LoRA soup: %g x %s + %g x %s\n", c->mixing_coef_1,
                                c->resume_from, 1.0 - c->mixing_coef_1,
                                base ? "the base model" : c->resume_from_2);
    } else if (c->resume_from[0]) {
        rc = load_lora(j, c->resume_from);
        if (!rc) ap_dist_print0(j->dist, "evaluating LoRA %s\n", c->resume_from);
    } else {
        memset(lora->flat, 0, lora->total * sizeof(float));
        ap_dist_print0(j->dist, "evaluating the base model (no LoRA: resume_from is empty)\n");
    }
    if (!rc) rc = ap_params_upload(&j->ctx, lora); /* where the ops read it (docs/cuda.md §6) */
    if (rc) {
        fprintf(stderr, "alignprop-mpi: rank %d: %s\n", j->dist->rank, ap_errmsg());
        return AP_EXIT_FAIL;
    }
    int E = c->per_gpu_capacity * c->max_vis_images;
    if (j->dist->rank == 0) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s/eval.h5", j->run_dir);
        const char *pn[AP_REWARD_MAX_PARTS];
        for (int q = 0; q < ap_reward_parts(j->reward); q++) pn[q] = ap_reward_part_name(j->reward, q);
        ap_runinfo ri; /* the log's self-description */
        ap_runinfo_fill(&ri, j);
        rc = ap_h5log_open_meta(&j->log, lp, 1, E < 1 ? 1 : E, -1, ap_reward_parts(j->reward), pn,
                                &ri.meta);
        if (rc) fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
    }
    int any = 0;
    if (ap_dist_any(j->dist, rc != 0, &any) || any) return AP_EXIT_FAIL;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/eval_vis", j->run_dir);
    double mean = 0;
    if (ap_job_evaluate(j, 0, 0, dir, &mean)) return AP_EXIT_FAIL;
    ap_dist_print0(j->dist, "evaluation: mean %s reward %.7g; images in %s, rewards in %s/eval.h5\n",
                   ap_reward_name(j->reward), mean, dir, j->run_dir);
    return AP_EXIT_OK;
}
