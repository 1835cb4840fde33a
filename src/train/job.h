/* job.h: the training job's state on one rank (models, chain, optimizer,
 * prompts, run directory) and the three things it does: train, evaluate,
 * evaluate a LoRA soup.
 *
 * Randomness is counter-based (core/rng.h ap_key): sample k of epoch e (k
 * counts the epoch's samples globally, 0 <= k < total_samples_per_epoch)
 * takes its prompt, initial latents and truncation draws from keys of
 * (seed, stream, e, k), so it is the same sample on any number of ranks and
 * any per_gpu_capacity. Evaluation image k takes its prompt and latents from
 * (seed, eval stream, 0 or the step, k).
 */
#ifndef AP_TRAIN_JOB_H
#define AP_TRAIN_JOB_H

#include <stdint.h>

#include "core/ctx.h"
#include "pipeline/sd.h"
#include "train/adamw.h"
#include "train/chain.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/h5log.h"
#include "train/reward.h"

/* Exit codes of the training command. */
enum { AP_EXIT_OK = 0, AP_EXIT_FAIL = 1, AP_EXIT_USAGE = 2, AP_EXIT_REQUEUE = 75 };

typedef struct ap_job {
    const ap_train_config *cfg;
    ap_dist *dist;
    ap_ctx ctx;
    int cap;                      /* this rank's micro-batch */
    ap_batch_plan plan;
    char run_dir[4096];
    char model_dir[4096];         /* the diffusers directory loaded */
    ap_sd sd;
    ap_reward *reward;
    ap_chain chain;
    ap_adamw opt;
    float *gacc;                  /* (lora) the step's gradient: micro-batches summed */
    float *gstage;                /* (lora) one micro-batch's gradient, read to the host */
    char **prompts;               /* training prompts */
    int n_prompts;
    char **eval_prompts;          /* the evaluation prompt file's lines */
    int n_eval_prompts;
    float *uncond;                /* (L, D) empty-prompt embedding */
    float *cond;                  /* (cap, L, D) prompt embeddings of a micro-batch */
    ap_arena text_tmp;
    char base_hash[32];           /* content hash of the frozen weights (hex) */
    ap_h5log *log;                /* rank 0 */
    struct ap_tfevents *tb;       /* rank 0: the TensorBoard event file (tblog.h); NULL when off */
    float *train_vis;             /* (V, 3, H, W) rank 0, visualize_train: the step's first samples */
    int n_train_vis;              /* V */
    int64_t step;                 /* optimizer steps done */
} ap_job;

/* Set up everything (models loaded, LoRA initialised from the seed). */
int ap_job_open(ap_job *j, const ap_train_config *cfg, ap_dist *dist, int cap, int threads);
void ap_job_close(ap_job *j);

/* The training loop; resume: NULL (a fresh run: from resume_from when set),
 * "auto" (the newest checkpoint of the run directory that verifies, else
 * resume_from, else step 0; restart: start over when checkpoints exist but
 * none verifies, instead of refusing) or a checkpoint path. Returns an
 * AP_EXIT_* code (after printing any error on this rank). */
int ap_job_train(ap_job *j, const char *resume, int restart);
/* only_eval / soup_inference: load the LoRA(s) the config names, evaluate
 * once, write images and rewards. Returns an AP_EXIT_* code. */
int ap_job_evaluate_only(ap_job *j);

/* Sample description (job.c). */
int ap_job_prompt_index(const ap_job *j, int64_t epoch, int64_t k);
void ap_job_noise(const ap_job *j, uint64_t stream, int64_t a, int64_t k, float *out);
/* attached (steps) for training sample k of epoch; returns attached count. */
int ap_job_trunc(const ap_job *j, int64_t epoch, int64_t k, unsigned char *attached);
/* cond rows of the micro-batch: text encoder on prompts (n <= cap). */
int ap_job_encode(ap_job *j, const char *const *prompts, int n, float *out);

/* Evaluation at a step (evaluate.c): every rank samples its share of the
 * E = per_gpu_capacity * max_vis_images evaluation images; rank 0 writes
 * PNGs (max_vis_images of them, named like the original:
 * "<index:03d>_<prompt>.png") and a grid under dir, and logs the rewards.
 * mean_out (may be NULL) receives the mean reward. */
int ap_job_evaluate(ap_job *j, int64_t step, int64_t epoch, const char *dir, double *mean_out);


#endif
