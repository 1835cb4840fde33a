/* train_loop.c: the AlignProp training loop (job.h): sample, reward
 * backprop, one all-reduce, clip, AdamW; checkpoints, log, evaluation,
 * progress, resume, and a graceful stop on SIGUSR1/SIGTERM. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "ops/backend.h"
#include "ops/memory.h"
#include "core/killpoint.h"
#include "core/rng.h"
#include "train/checkpoint.h"
#include "train/job.h"
#include "train/resume.h"
#include "train/rundir.h"
#include "train/runinfo.h"
#include "train/tblog.h"

static volatile sig_atomic_t stop_signal = 0;
int64_t ap_killpoint_step = 0;

/* SIGUSR1, SIGTERM: finish the step, checkpoint, exit 75. A repeated
 * SIGUSR1/SIGTERM changes nothing (under SLURM the same stop may arrive
 * several times: from the batch script, from the launcher, from SLURM
 * itself); a second SIGINT (Ctrl-C twice) stops at once. */
static void on_stop(int sig) {
    if (stop_signal && sig == SIGINT) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    if (!stop_signal) stop_signal = sig;
}

void ap_train_install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Tests: AP_DEBUG_NONFINITE_AT=STEP[,STEP...] makes the gradient of those
 * optimizer steps NaN (the step that a non-finite loss would spoil). */
static int debug_nonfinite(int64_t step) {
    const char *e = getenv("AP_DEBUG_NONFINITE_AT");
    for (const char *p = e; p && *p;) {
        char *end;
        long long s = strtoll(p, &end, 10);
        if (end == p) return 0;
        if (s == step) return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void hms(char *buf, size_t cap, double s) {
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* Rank 0 writes; every rank learns whether it worked. */
static int save(ap_job *j, int64_t epoch_done) {
    int rc = AP_OK;
    char path[4096] = "";
    if (j->dist->rank == 0) {
        ap_ckpt_meta meta = {.step = j->step, .epoch = epoch_done, .adam_step = j->opt.step,
                             .seed = j->cfg->seed, .next_sample = j->step * j->plan.global_batch,
                             .config = j->cfg->text ? j->cfg->text : "", .model = j->cfg->model,
                             .base_hash = j->base_hash};
        rc = ap_ckpt_write(j->run_dir, &j->sd.unet.lora, j->opt.m, j->opt.v, &meta,
                           j->cfg->num_checkpoint_limit, path, sizeof path);
        if (rc) fprintf(stderr, "\nalignprop-mpi: checkpoint: %s\n", ap_errmsg());
        else fprintf(stderr, "%scheckpoint %s\n", isatty(2) ? "\n" : "", path);
    }
    int any = 0;
    AP_TRY(ap_dist_any(j->dist, rc != 0, &any));
    return any ? ap_fail("writing the checkpoint failed on rank 0") : AP_OK;
}

typedef struct step_stats {
    float *rewards;    /* (N) */
    float *attached;   /* (N) */
    float *parts;      /* (n_parts, N) a reward mixture's part rewards, or NULL */
    double sums[5];    /* loss sum, samples, sum of micro-batch reward stds, micro-batches
                        * of >= 2 samples, KL sum (kl_coeff > 0) */
} step_stats;

/* The micro-batches of this rank for optimizer step `step`. Each
 * micro-batch's LoRA gradient starts from zero and is then added to the
 * step's sum (j->gacc), so a micro-batch contributes the same bits whether
 * it runs first, later, or on another rank; the sum over micro-batches (and
 * then over ranks) is the only place the decomposition shows. */
static int run_step(ap_job *j, int64_t step, step_stats *st) {
    const ap_batch_plan *p = &j->plan;
    const int r = j->dist->rank, N = p->global_batch, S = j->chain.sched.steps;
    const int64_t spe = p->steps_per_epoch, epoch = step / spe, base = (step % spe) * N;
    const int64_t n = j->chain.C * j->chain.h * j->chain.w;
    float *noise = ap_malloc((size_t)(j->cap * n) * sizeof(float), "initial latents");
    unsigned char *att = ap_malloc((size_t)j->cap * (size_t)S, "attached steps");
    float dloss[256], loss[256], rew[256], part[AP_REWARD_MAX_PARTS * 256];
    float dkl[256], kl[256]; /* the regulariser toward the base model (docs/draft.md §2) */
    const int reg = j->cfg->kl_coeff > 0, nlv = j->cfg->draft_lv_n;
    /* DRaFT-LV's draws (nlv, b, C, h, w), keyed by (epoch, sample, draw) */
    float *lvn = nlv ? ap_malloc((size_t)nlv * (size_t)(j->cap * n) * sizeof(float),
                                 "DRaFT-LV noise draws") : NULL;
    const char *pr[256];
    const int np = ap_reward_parts(j->reward);
    int rc = (!noise || !att || (nlv && !lvn)) ? AP_ERR : AP_OK;
    if (j->cap > 256) rc = ap_fail("per_gpu_capacity %d: at most 256 supported", j->cap);
    for (int g = 0; g < p->micro_batches && !rc; g++) {
        int lo = p->first[r] + g * j->cap, hi = p->first[r] + p->share[r];
        if (hi > lo + j->cap) hi = lo + j->cap;
        int b = hi - lo;
        if (b <= 0) break;
        for (int i = 0; i < b && !rc; i++) {
            int64_t k = base + lo + i;
            pr[i] = j->prompts[ap_job_prompt_index(j, epoch, k)];
            ap_job_noise(j, AP_KEY_NOISE, epoch, k, noise + i * n);
            int na = ap_job_trunc(j, epoch, k, att + (size_t)i * S);
            if (na < 0) rc = AP_ERR;
            st->attached[lo + i] = (float)na;
            dloss[i] = (float)(j->cfg->loss_coeff / N);
            dkl[i] = (float)(j->cfg->kl_coeff / N);
            for (int q = 0; q < nlv; q++)
                ap_job_noise(j, AP_KEY_LV_NOISE, epoch, k * 64 + q, lvn + ((size_t)q * b + i) * n);
        }
        if (!rc) rc = ap_job_encode(j, pr, b, j->cond);
        ap_chain_io io = {.b = b, .noise = noise, .cond = j->cond, .uncond = j->uncond,
                          .prompts = pr, .attached = att, .dloss = dloss, .loss = loss,
                          .reward = rew, .parts = np ? part : NULL,
                          .images = ap_tblog_train_images(j, lo, b),
                          .dkl = reg ? dkl : NULL, .kl = reg ? kl : NULL,
                          .lv_n = nlv, .lv_noise = lvn};
        if (!rc) rc = ap_unet_zero_lora_grads_on(&j->ctx, &j->sd.unet);
        if (!rc) rc = ap_chain_run(&j->chain, &j->ctx, &io);
        /* host staging (docs/cuda.md §6): the micro-batch's LoRA gradients,
         * wherever the backward left them, into the host sum */
        if (!rc) rc = ap_unet_lora_grads_read(&j->ctx, &j->sd.unet, j->gstage);
        const size_t nl = j->sd.unet.lora.total;
        for (size_t e = 0; e < nl && !rc; e++) j->gacc[e] += j->gstage[e];
        double mb = 0, mv = 0;
        for (int i = 0; i < b && !rc; i++) {
            st->rewards[lo + i] = rew[i];
            for (int q = 0; q < np; q++) st->parts[(size_t)q * N + lo + i] = part[q * b + i];
            st->sums[0] += loss[i];
            if (reg) st->sums[4] += kl[i];
            st->sums[1] += 1;
            mb += rew[i];
        }
        /* the original logs rewards_std as the mean over micro-batches of
         * torch's unbiased std (NaN for one sample: such micro-batches are
         * left out here) */
        for (int i = 0; i < b && !rc; i++) mv += (rew[i] - mb / b) * (rew[i] - mb / b);
        if (!rc && b > 1) st->sums[2] += sqrt(mv / (b - 1)), st->sums[3] += 1;
    }
    free(noise), free(att), free(lvn);
    return rc;
}

static uint64_t lora_checksum(const ap_job *j) {
    uint64_t h = 0;
    ap_hash_floats(j->sd.unet.lora.flat, j->sd.unet.lora.total, &h);
    return h;
}

int ap_job_train(ap_job *j, const char *resume, int restart) {
    const ap_train_config *c = j->cfg;
    ap_dist *d = j->dist;
    const int N = j->plan.global_batch;
    const int64_t spe = j->plan.steps_per_epoch, total = (int64_t)c->num_epochs * spe;
    const int64_t nl = (int64_t)j->sd.unet.lora.total;
    ap_start from;
    if (ap_job_start(j, resume, restart, total, &from)) {
        fprintf(stderr, "alignprop-mpi: rank %d: %s\n", d->rank, ap_errmsg());
        return AP_EXIT_FAIL;
    }
    if (from.code) return (int)from.code;
    if (from.finished) {
        ap_dist_print0(d, "run %s already finished at step %lld (%s/done): nothing to do, nothing "
                       "rewritten; raise num_epochs to train it further\n", j->run_dir,
                       (long long)j->step, j->run_dir);
        return AP_EXIT_OK;
    }
    const int found = from.from == AP_FROM_CHECKPOINT;
    int E = c->per_gpu_capacity * c->max_vis_images;
    if (E < 1) E = 1;
    int rc = AP_OK;
    if (d->rank == 0) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s/log.h5", j->run_dir);
        const char *pn[AP_REWARD_MAX_PARTS];
        for (int q = 0; q < ap_reward_parts(j->reward); q++) pn[q] = ap_reward_part_name(j->reward, q);
        ap_runinfo ri; /* the log's self-description */
        ap_runinfo_fill(&ri, j);
        rc = ap_h5log_open_meta(&j->log, lp, N, E, found ? j->step : -1, ap_reward_parts(j->reward),
                                pn, &ri.meta);
        if (!rc) rc = ap_tblog_open(j, found ? j->step : -1); /* TensorBoard, visualize_train */
        if (rc) fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
    }
    int any = 0;
    if (ap_dist_any(d, rc != 0, &any) || any) return AP_EXIT_FAIL;
    ap_dist_print0(d, "run %s: %d ranks, global batch %d (%d micro-batches of up to %d per rank), "
                   "%lld steps per epoch, %d epochs; planned %.1f MB per rank\n", j->run_dir,
                   d->world, N, j->plan.micro_batches, j->cap, (long long)spe, c->num_epochs,
                   j->chain.planned_bytes / 1e6);

    /* the LoRA the loop starts from (fresh, resumed or loaded) where the
     * ops read it; the gradients take the host staging path */
    if (ap_params_upload(&j->ctx, &j->sd.unet.lora)) {
        fprintf(stderr, "alignprop-mpi: rank %d: uploading the LoRA: %s\n", d->rank, ap_errmsg());
        return AP_EXIT_FAIL;
    }
    ap_dist_print0(d, "gradients: %s backend; LoRA gradients summed on the host, MPI allreduce of "
                   "host buffers, norm and AdamW on the host%s\n", j->ctx.be->name,
                   j->ctx.device == AP_CPU ? "" : " (host staging: device -> host copy per "
                   "micro-batch, LoRA uploaded after each update)");

    step_stats st;
    st.rewards = ap_malloc((size_t)N * sizeof(float), "rewards");
    st.attached = ap_malloc((size_t)N * sizeof(float), "attached counts");
    const int np = ap_reward_parts(j->reward);
    st.parts = np ? ap_malloc((size_t)(np * N) * sizeof(float), "reward parts") : NULL;
    if (!st.rewards || !st.attached || (np && !st.parts)) return AP_EXIT_FAIL;
    const int tty = isatty(2);
    const double t_start = now_s();
    const int64_t first_step = j->step;
    /* this run's own checkpoint of this step exists: never republished */
    int saved_at = from.own ? (int)j->step : -1, code = AP_EXIT_OK, nonfinite_run = 0;
    ap_adamw_hp hp = {c->learning_rate, c->adam_beta1, c->adam_beta2, c->adam_epsilon,
                      c->adam_weight_decay};
    while (j->step < total) {
        if (c->visualize_eval && j->step % c->vis_freq == 0) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/eval_vis/step_%06lld", j->run_dir, (long long)j->step);
            if (ap_job_evaluate(j, j->step, j->step / spe, dir, NULL)) goto fail;
        }
        const double t0 = now_s();
        ap_killpoint_step = j->step + 1;
        memset(j->gacc, 0, (size_t)nl * sizeof(float));
        memset(st.rewards, 0, (size_t)N * sizeof(float));
        memset(st.attached, 0, (size_t)N * sizeof(float));
        if (np) memset(st.parts, 0, (size_t)(np * N) * sizeof(float));
        memset(st.sums, 0, sizeof st.sums);
        if (run_step(j, j->step, &st)) goto fail;
        /* one all-reduce of the gradients; the statistics ride along */
        if (ap_dist_allreduce_sum(d, j->gacc, nl)) goto fail;
        if (ap_dist_allreduce_sum(d, st.rewards, N)) goto fail;
        if (ap_dist_allreduce_sum(d, st.attached, N)) goto fail;
        if (np && ap_dist_allreduce_sum(d, st.parts, (int64_t)np * N)) goto fail;
        if (ap_dist_allreduce_sum_d(d, st.sums, 5)) goto fail;
        /* the minimised objective (docs/draft.md §2 for the KL term) */
        const double loss = c->loss_coeff * st.sums[0] / N + c->kl_coeff * st.sums[4] / N;
        if (debug_nonfinite(j->step + 1)) j->gacc[0] = NAN;
        double gnorm = ap_clip_grad_norm(j->gacc, nl, c->max_grad_norm);
        /* a non-finite loss or gradient: no update (as fp16's GradScaler
         * skips the optimizer step), the samples are used up; every rank
         * sees the same reduced values, so all skip together */
        const int skipped = !isfinite(gnorm) || !isfinite(loss);
        if (skipped) {
            nonfinite_run++;
            ap_dist_print0(d, "%swarning: step %lld: %s is not finite (loss %g, |grad| %g): step "
                           "skipped, no update (%d in a row; max_nonfinite_steps %d)\n",
                           tty ? "\n" : "", (long long)j->step + 1,
                           isfinite(loss) ? "the LoRA gradient" : "the loss",
                           loss, gnorm, nonfinite_run,
                           c->max_nonfinite_steps);
        } else {
            nonfinite_run = 0;
            ap_adamw_step(&j->opt, &hp, j->sd.unet.lora.flat, j->gacc);
            if (ap_params_upload(&j->ctx, &j->sd.unet.lora)) goto fail;
        }
        j->step++;
        if (j->step % c->checksum_every == 0 &&
            ap_dist_check_same(d, lora_checksum(j), "the LoRA weights checksum"))
            goto fail;
        const double dt = now_s() - t0;
        /* statistics, log, progress (rank 0) */
        double mean = 0, var = 0, att = 0;
        for (int k = 0; k < N; k++) mean += st.rewards[k], att += st.attached[k];
        mean /= N, att /= N;
        for (int k = 0; k < N; k++) var += (st.rewards[k] - mean) * (st.rewards[k] - mean);
        double sd = N > 1 ? sqrt(var / (N - 1)) : 0.0; /* torch .std(): unbiased */
        double sd_mb = st.sums[3] > 0 ? st.sums[2] / st.sums[3] : NAN;
        if (d->rank == 0) {
            const int64_t epoch = (j->step - 1) / spe, base = ((j->step - 1) % spe) * N;
            const char **pr = malloc(sizeof *pr * (size_t)N);
            int32_t *ai = malloc(sizeof *ai * (size_t)N);
            if (!pr || !ai) {
                free(pr), free(ai);
                ap_fail("out of memory: log row");
                goto fail;
            }
            for (int k = 0; k < N; k++) {
                pr[k] = j->prompts[ap_job_prompt_index(j, epoch, base + k)];
                ai[k] = (int32_t)st.attached[k];
            }
            ap_train_row row = {.step = j->step, .epoch = epoch, .loss = loss,
                                .reward_mean = mean, .reward_std = sd_mb,
                                .reward_std_global = sd, .skipped = skipped, .grad_norm = gnorm,
                                .lr = c->learning_rate, .step_time = dt,
                                .samples_per_s = N / dt, .attached_mean = att,
                                .rewards = st.rewards, .prompts = pr, .attached = ai,
                                .part_rewards = st.parts};
            int lrc = ap_h5log_train(j->log, &row);
            if (!lrc) lrc = ap_tblog_train(j, &row); /* TensorBoard, visualize_train */
            free(pr), free(ai);
            if (lrc) goto fail;
            double el = now_s() - t_start, eta = el / (double)(j->step - first_step) * (double)(total - j->step);
            char e1[32], e2[32];
            hms(e1, sizeof e1, el), hms(e2, sizeof e2, eta);
            char klm[48] = ""; /* the mean KL term with kl_coeff (docs/draft.md §2) */
            if (c->kl_coeff > 0) snprintf(klm, sizeof klm, "  kl %.4g", st.sums[4] / N);
            fprintf(stderr, "%sepoch %lld/%d step %lld/%lld  loss %.5g%s  reward %.4f +- %.4f  "
                    "|grad| %.3g  attached %.1f  %.2f samples/s  elapsed %s  ETA %s%s",
                    tty ? "\r" : "", (long long)epoch + 1, c->num_epochs, (long long)j->step,
                    (long long)total, loss, klm, mean, sd, gnorm, att, N / dt, e1, e2,
                    tty ? "   " : "\n");
        }
        if (nonfinite_run >= c->max_nonfinite_steps) {
            ap_fail("steps %lld..%lld: the loss or LoRA gradient was not finite %d steps in a row "
                    "(max_nonfinite_steps %d): stopping; lower train.learning_rate, check the "
                    "reward, or resume from the last checkpoint", (long long)j->step - nonfinite_run + 1,
                    (long long)j->step, nonfinite_run, c->max_nonfinite_steps);
            goto fail;
        }
        const int epoch_end = j->step % spe == 0;
        const int64_t epoch_done = j->step / spe;
        if (epoch_end && (epoch_done - 1) % c->save_freq == 0) {
            if (save(j, epoch_done)) goto fail;
            saved_at = (int)j->step;
        }
        int stop = 0;
        if (ap_dist_any(d, stop_signal != 0, &stop)) goto fail;
        if (stop) {
            ap_dist_print0(d, "\nstop requested (signal): checkpointing at step %lld\n",
                           (long long)j->step);
            if (saved_at != j->step && save(j, epoch_done)) goto fail;
            code = AP_EXIT_REQUEUE;
            break;
        }
    }
    if (code == AP_EXIT_OK) {
        if (tty && d->rank == 0) fputc('\n', stderr);
        if (c->visualize_eval) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/eval_vis/step_%06lld", j->run_dir, (long long)j->step);
            if (ap_job_evaluate(j, j->step, j->step / spe, dir, NULL)) goto fail;
        }
        if (saved_at != j->step && save(j, j->step / spe)) goto fail;
        if (d->rank == 0 && ap_run_dir_mark_done(j->run_dir, j->step))
            fprintf(stderr, "warning: %s\n", ap_errmsg());
        ap_dist_print0(d, "done: %lld steps in %.1fs; checkpoints in %s/checkpoints, log %s/log.h5\n",
                       (long long)(j->step - first_step), now_s() - t_start, j->run_dir, j->run_dir);
    }
    free(st.rewards), free(st.attached), free(st.parts);
    return code;
fail:
    fprintf(stderr, "\nalignprop-mpi: rank %d: %s\n", d->rank, ap_errmsg());
    free(st.rewards), free(st.attached), free(st.parts);
    return AP_EXIT_FAIL;
}
