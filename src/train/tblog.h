/* tblog.h: the run's TensorBoard log (RUN/tb/, written live by rank 0 when
 * log_tensorboard is true) and the training-sample images of
 * visualize_train, hooked into the training loop and the evaluation
 * (docs/logging.md §3, §4).
 *
 * Tags follow what AlignProp's main.py logs to wandb where it logs the same
 * thing (loss, rewards, rewards_std, eval_rewards, eval_rewards_std,
 * eval_images, images), plus this port's statistics (rewards_min,
 * rewards_max, rewards_std_global, grad_norm, lr, samples_per_s, step_time,
 * attached_steps, epoch, skipped). The step is the optimizer step of
 * log.h5's /train/step (evaluations: /eval/step).
 *
 * Resume from step S: every older event file is cut to the events a run
 * stopped at S keeps (step < S; at S the training step's own scalars and
 * images, not the evaluation at S, which the resumed run repeats, nor the
 * texts), then a new file starts at S. Read in name order, the files hold
 * each (tag, step) once, as an uninterrupted run's would.
 */
#ifndef AP_TRAIN_TBLOG_H
#define AP_TRAIN_TBLOG_H

#include <stdint.h>

#include "train/h5log.h"

struct ap_job;

/* Rank 0, after log.h5 is open: resume_step >= 0 cuts the older event files
 * to it (-1: a fresh run, older event files removed), opens a new file and
 * writes the texts "config" (the resolved YAML), "prompts" and
 * "eval_prompts". Also sets up the visualize_train buffer. With
 * log_tensorboard off only the cut happens. */
int ap_tblog_open(struct ap_job *j, int64_t resume_step);
/* Where micro-batch [lo, lo + b) of the step's samples puts its decoded
 * images (ap_chain_io.images) so that ap_tblog_train can show them; NULL
 * when they are not wanted (not rank 0, visualize_train off, past the
 * first per_gpu_capacity * max_vis_images samples). */
float *ap_tblog_train_images(struct ap_job *j, int lo, int b);
/* After the step's log.h5 row: its scalars; with visualize_train, at steps
 * vis_freq divides, the images ap_tblog_train_images collected
 * (train_vis/step_<step:06>/ PNGs + grid, TensorBoard "images/..."). */
int ap_tblog_train(struct ap_job *j, const ap_train_row *row);
/* After an evaluation's log.h5 row (rank 0): eval_rewards, eval_rewards_std,
 * the images (E, 3, H, W) as "eval_images/<k:03>" and "eval_images/grid". */
int ap_tblog_eval(struct ap_job *j, const ap_eval_row *row, const float *images, int H, int W);
/* Close the event file, free the buffers (any rank; idempotent). */
void ap_tblog_close(struct ap_job *j);

#endif
