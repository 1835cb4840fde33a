/* h5log.h: the run's HDF5 log (RUN/log.h5), appended by rank 0 every
 * optimizer step and every evaluation, readable while the run goes on by
 * SWMR readers (h5py.File(path, "r", swmr=True); HDF5 1.10's h5dump does not
 * open for SWMR reading and reads the log once it is closed).
 *
 *   /train/<column>   one row per optimizer step (chunked, unlimited):
 *       step, epoch (int64), loss, reward_mean, reward_std, grad_norm, lr,
 *       step_time, samples_per_s (float64), attached_mean (float64: mean
 *       attached DDIM steps per sample), reward_std (float64: the mean of
 *       the micro-batches' unbiased stds, as AlignProp logs rewards_std; NaN
 *       when every micro-batch holds one sample), reward_std_global
 *       (float64: over the step's whole batch), skipped (int64: 1 when the
 *       loss or gradient was not finite and no update was made)
 *   /train/rewards    (rows, N) float32 per-sample rewards of the step
 *   /train/prompts    (rows, N) fixed-length strings (255 bytes, truncated)
 *   /train/attached   (rows, N) int32 attached steps per sample
 *   /eval/step, /eval/epoch, /eval/reward_mean, /eval/reward_std  one row per evaluation
 *   /eval/rewards     (rows, E) float32, /eval/prompts (rows, E) strings
 *   /train/complete_rows, /eval/complete_rows   (1) int64: whole rows written
 *   with a reward mixture (ap_h5log_open_parts), per part <name> in both groups:
 *   reward_<name> (rows, N or E) float32 the part's own reward per sample,
 *   reward_<name>_mean float64 its mean (reward_mean is the weighted sum's)
 * N = the global batch, E = the evaluation's image count (fixed per run).
 * A row is written column by column with step last and complete_rows after
 * it, each flushed: a SWMR reader that takes the row count from step (or
 * complete_rows) never sees half a row. Every write error names the file,
 * the dataset and the operating system's errno where a system call failed.
 * A log held open by a reader (HDF5 file locking) is opened without the
 * lock, with a note saying so.
 * Every dataset has `description` and `units` attributes; ap_h5log_open_meta
 * also writes the run's description as root attributes (docs/logging.md §5).
 */
#ifndef AP_TRAIN_H5LOG_H
#define AP_TRAIN_H5LOG_H

#include <stdint.h>

#define AP_H5LOG_MAX_PARTS 4 /* = AP_REWARD_MAX_PARTS (train/config.h) */

typedef struct ap_h5log ap_h5log;

typedef struct ap_train_row {
    int64_t step, epoch;
    double loss, reward_mean, reward_std, grad_norm, lr, step_time, samples_per_s;
    double attached_mean;
    double reward_std_global;     /* std over the step's whole batch (reward_std: the mean of
                                   * the micro-batches' stds, as the original logs it) */
    int64_t skipped;              /* 1: non-finite loss or gradient, no optimizer update */
    const float *rewards;         /* (N) */
    const char *const *prompts;   /* (N) */
    const int32_t *attached;      /* (N) */
    const float *part_rewards;    /* (n_parts, N) a mixture's parts (NULL without parts) */
} ap_train_row;

typedef struct ap_eval_row {
    int64_t step, epoch;
    double reward_mean, reward_std;
    const float *rewards;         /* (E) */
    const char *const *prompts;   /* (E) */
    const float *part_rewards;    /* (n_parts, E) a mixture's parts (NULL without parts) */
} ap_eval_row;

/* Create path (N, E as above), or, when resume_step >= 0 and the file exists,
 * open it and drop every train row with step > resume_step and every eval
 * row with step >= resume_step (the resumed run evaluates at resume_step
 * again), so a resumed run's log equals an
 * uninterrupted one's). Then start SWMR writing. */
int ap_h5log_open(ap_h5log **out, const char *path, int N, int E, int64_t resume_step);
/* Same, with the columns of a reward mixture's parts named parts[0..n_parts)
 * ("aesthetic", "hps", "demo"; at most AP_H5LOG_MAX_PARTS). A resumed log
 * that lacks them gets them with zeros for the earlier rows. */
int ap_h5log_open_parts(ap_h5log **out, const char *path, int N, int E, int64_t resume_step,
                        int n_parts, const char *const *parts);
/* What a log says about the run that wrote it (attributes of the root
 * group, docs/logging.md §5): strings (NULL: not written) and the ranks'
 * capacities. */
typedef struct ap_h5log_meta {
    const char *program_version;  /* alignprop-mpi version */
    const char *git_commit;       /* `git describe --always --dirty` at build time */
    const char *config;           /* the resolved config (YAML) */
    const char *reward;           /* reward_fn's name */
    const char *reward_meaning;   /* what a larger reward means */
    const char *hostname, *cpu, *gpu, *backend;
    int ranks;
    const int *capacities;        /* (ranks) per_gpu_capacity of each rank */
    int global_batch;             /* N */
} ap_h5log_meta;
/* ap_h5log_open_parts, then the root attributes of meta (meta NULL: none; a
 * resumed log's are replaced: they describe the latest run). Every dataset
 * carries `description` and `units` attributes either way. */
int ap_h5log_open_meta(ap_h5log **out, const char *path, int N, int E, int64_t resume_step,
                       int n_parts, const char *const *parts, const ap_h5log_meta *meta);
int ap_h5log_train(ap_h5log *l, const ap_train_row *row); /* append + flush */
int ap_h5log_eval(ap_h5log *l, const ap_eval_row *row);   /* append + flush */
void ap_h5log_close(ap_h5log *l);
/* Why the last HDF5 call failed: "errno N: message" when a system call
 * failed (a full disk: "errno 28: No space left on device"), else HDF5's
 * innermost description. HDF5 clears its error stack at the next call: call
 * this right after the failure (it keeps what it found for a later call
 * that finds the stack empty). */
const char *ap_h5_why(void);

#endif
