/* tblog.c: TensorBoard scalars, images and texts of a training run, and
 * visualize_train's sample images (tblog.h; docs/logging.md §3, §4). */
#include "tblog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/png.h"
#include "io/tfevents.h"
#include "train/job.h"
#include "train/vis.h"

/* ---- resume ------------------------------------------------------------------ */

static int is_text_tag(const char *tag) {
    return !strcmp(tag, "config") || !strcmp(tag, "prompts") || !strcmp(tag, "eval_prompts");
}

/* What a run stopped at step S keeps: everything before S; at S the
 * training step's scalars and images (the evaluation at S is repeated by
 * the resumed run, the texts and session events are written again). */
static int keep_before_resume(int64_t step, const char *tag, void *user) {
    const int64_t s = *(const int64_t *)user;
    if (step < s) return 1;
    if (step > s || !tag[0] || is_text_tag(tag)) return 0;
    return strncmp(tag, "eval_", 5) != 0;
}

/* ---- texts ------------------------------------------------------------------- */

/* text as a fenced Markdown code block (TensorBoard renders texts as
 * Markdown; the fence keeps line breaks and YAML indentation) */
static int text_block(ap_tfevents *w, const char *tag, int64_t step, const char *lang,
                      const char *const *lines, int n, const char *whole) {
    size_t len = strlen(lang) + 16 + (whole ? strlen(whole) : 0);
    for (int i = 0; i < n; i++) len += strlen(lines[i]) + 1;
    char *t = ap_malloc(len, "TensorBoard text");
    if (!t) return AP_ERR;
    size_t k = (size_t)sprintf(t, "```%s\n", lang);
    if (whole) k += (size_t)sprintf(t + k, "%s%s", whole,
                                    whole[0] && whole[strlen(whole) - 1] != '\n' ? "\n" : "");
    for (int i = 0; i < n; i++) k += (size_t)sprintf(t + k, "%s\n", lines[i]);
    sprintf(t + k, "```");
    int rc = ap_tfevents_text(w, tag, step, t);
    free(t);
    return rc;
}

int ap_tblog_open(ap_job *j, int64_t resume_step) {
    const ap_train_config *c = j->cfg;
    if (c->visualize_train) {
        int V = c->per_gpu_capacity * c->max_vis_images;
        if (V > j->plan.share[0]) V = j->plan.share[0];
        const size_t img = (size_t)3 * (size_t)j->chain.H * (size_t)j->chain.W;
        /* whole micro-batches: the last one may reach past V */
        size_t cap = (size_t)(V + j->cap) * img;
        j->train_vis = V > 0 ? ap_calloc(cap, sizeof(float), "visualize_train images") : NULL;
        if (V > 0 && !j->train_vis) return AP_ERR;
        j->n_train_vis = V;
    }
    /* cut even when switched off now: no event past the resume point stays */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tb", j->run_dir);
    int64_t at = resume_step;
    AP_TRY(ap_tfevents_cut(dir, keep_before_resume, &at));
    if (!c->log_tensorboard) return AP_OK;
    ap_tfevents *w = NULL;
    const int64_t first = resume_step >= 0 ? resume_step : 0;
    AP_TRY(ap_tfevents_open(&w, dir, first, resume_step >= 0));
    j->tb = w;
    int rc = text_block(w, "config", first, "yaml", NULL, 0, c->text ? c->text : "");
    if (!rc) rc = text_block(w, "prompts", first, "", (const char *const *)j->prompts, j->n_prompts, NULL);
    if (!rc) rc = text_block(w, "eval_prompts", first, "", (const char *const *)j->eval_prompts,
                             j->n_eval_prompts, NULL);
    return rc;
}

void ap_tblog_close(ap_job *j) {
    ap_tfevents_close(j->tb);
    j->tb = NULL;
    free(j->train_vis);
    j->train_vis = NULL;
    j->n_train_vis = 0;
}

float *ap_tblog_train_images(ap_job *j, int lo, int b) {
    (void)b;
    if (!j->train_vis || lo >= j->n_train_vis) return NULL;
    return j->train_vis + (size_t)lo * 3 * (size_t)j->chain.H * (size_t)j->chain.W;
}

/* ---- scalars and images ------------------------------------------------------ */

/* A reward mixture's parts: "<prefix>_<name>" = the part's mean over the n
 * values of each (summed in double, as log.h5's reward_<name>_mean). */
static int part_scalars(ap_job *j, const char *prefix, int64_t step, const float *parts, int n) {
    int rc = AP_OK;
    for (int q = 0; parts && q < ap_reward_parts(j->reward) && !rc; q++) {
        double m = 0;
        for (int k = 0; k < n; k++) m += parts[(size_t)q * (size_t)n + (size_t)k];
        char tag[64];
        snprintf(tag, sizeof tag, "%s_%s", prefix, ap_reward_part_name(j->reward, q));
        rc = ap_tfevents_scalar(j->tb, tag, step, (float)(n ? m / n : 0));
    }
    return rc;
}

/* n images (n, 3, H, W) as "<prefix>/<k:03>" (captioned "<prompt:.25> |
 * <reward:.2f>" as main.py captions its wandb images) and "<prefix>/grid". */
static int tb_images(ap_tfevents *w, const char *prefix, int64_t step, const float *images, int n,
                     int H, int W, const char *const *prompts, const float *rewards) {
    const size_t img = (size_t)3 * H * W;
    uint8_t *hwc = ap_malloc(img, "image bytes");
    int rc = hwc ? AP_OK : AP_ERR;
    for (int k = 0; k < n && !rc; k++) {
        uint8_t *png = NULL;
        size_t len = 0;
        char tag[64], cap[64];
        ap_png_to_rgb8(hwc, images + (size_t)k * img, H, W, AP_PNG_TRUNC);
        rc = ap_png_encode_rgb8(hwc, H, W, &png, &len);
        snprintf(tag, sizeof tag, "%s/%03d", prefix, k);
        snprintf(cap, sizeof cap, "%.25s | %.2f", prompts[k], (double)rewards[k]);
        if (!rc) rc = ap_tfevents_image(w, tag, step, png, len, H, W, cap);
        free(png);
    }
    free(hwc);
    int gh = 0, gw = 0;
    uint8_t *grid = rc ? NULL : ap_vis_grid(images, n, H, W, &gh, &gw), *png = NULL;
    size_t len = 0;
    if (!rc && !grid) rc = AP_ERR;
    if (!rc) rc = ap_png_encode_rgb8(grid, gh, gw, &png, &len);
    char tag[64];
    snprintf(tag, sizeof tag, "%s/grid", prefix);
    if (!rc) rc = ap_tfevents_image(w, tag, step, png, len, gh, gw, NULL);
    free(grid), free(png);
    return rc;
}

int ap_tblog_train(ap_job *j, const ap_train_row *r) {
    const int N = j->plan.global_batch;
    int rc = AP_OK;
    if (j->tb) {
        float lo = r->rewards[0], hi = r->rewards[0];
        for (int k = 1; k < N; k++) {
            if (r->rewards[k] < lo) lo = r->rewards[k];
            if (r->rewards[k] > hi) hi = r->rewards[k];
        }
        const struct { const char *tag; double v; } s[] = {
            {"loss", r->loss}, {"rewards", r->reward_mean}, {"rewards_std", r->reward_std},
            {"rewards_std_global", r->reward_std_global}, {"rewards_min", lo},
            {"rewards_max", hi}, {"grad_norm", r->grad_norm}, {"lr", r->lr},
            {"samples_per_s", r->samples_per_s}, {"step_time", r->step_time},
            {"attached_steps", r->attached_mean}, {"epoch", (double)r->epoch},
            {"skipped", (double)r->skipped}};
        for (size_t i = 0; i < sizeof s / sizeof s[0] && !rc; i++)
            rc = ap_tfevents_scalar(j->tb, s[i].tag, r->step, (float)s[i].v);
        if (!rc) rc = part_scalars(j, "rewards", r->step, r->part_rewards, N);
    }
    const int V = j->n_train_vis;
    if (!rc && j->train_vis && r->step % j->cfg->vis_freq == 0) {
        const int H = (int)j->chain.H, W = (int)j->chain.W;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/train_vis/step_%06lld", j->run_dir, (long long)r->step);
        rc = ap_vis_write(dir, j->train_vis, V, H, W, r->prompts);
        if (!rc && j->tb)
            rc = tb_images(j->tb, "images", r->step, j->train_vis, V, H, W, r->prompts, r->rewards);
    }
    if (rc) ap_err_prefix("TensorBoard / visualize_train log: ");
    return rc;
}

int ap_tblog_eval(ap_job *j, const ap_eval_row *r, const float *images, int H, int W) {
    if (!j->tb) return AP_OK;
    int E = j->cfg->per_gpu_capacity * j->cfg->max_vis_images;
    if (E < 1) E = 1;
    int rc = ap_tfevents_scalar(j->tb, "eval_rewards", r->step, (float)r->reward_mean);
    if (!rc) rc = ap_tfevents_scalar(j->tb, "eval_rewards_std", r->step, (float)r->reward_std);
    if (!rc) rc = part_scalars(j, "eval_rewards", r->step, r->part_rewards, E);
    if (!rc) rc = tb_images(j->tb, "eval_images", r->step, images, E, H, W, r->prompts, r->rewards);
    if (rc) ap_err_prefix("TensorBoard log: ");
    return rc;
}
