/* resume.h: where a training run starts (train_loop.c): from scratch, from
 * a checkpoint of its own run directory (--resume auto: the newest that
 * verifies), from a given checkpoint (--resume PATH), or from resume_from (a
 * checkpoint directory or a LoRA file). A checkpoint must carry this run's
 * identity (rundir.h: base weights, seed, the identity keys of the config);
 * a damaged one (content hash, unreadable) is set aside for the one before
 * it, and when checkpoints exist but none verifies the run is refused unless
 * restart. Rank 0 reads and decides; every rank receives the LoRA, the AdamW
 * moments and the step (no shared file system needed).
 */
#ifndef AP_TRAIN_RESUME_H
#define AP_TRAIN_RESUME_H

#include <stdint.h>

#include "train/job.h"

enum { AP_FROM_SCRATCH = 0, AP_FROM_CHECKPOINT = 1, AP_FROM_LORA = 2 };

typedef struct ap_start {
    int64_t from;      /* AP_FROM_* */
    int64_t step, adam_step;
    int64_t own;       /* the checkpoint is this run directory's own */
    int64_t finished;  /* the run already finished (RUN/done): nothing to do */
    int64_t code;      /* AP_EXIT_OK, or the exit code of a refusal (printed on rank 0) */
} ap_start;

/* resume: NULL (fresh: resume_from when set), "auto" or a checkpoint path;
 * total: the run's optimizer steps. Sets j->step, j->opt.step, the LoRA and
 * the moments on every rank; s->code says whether to go on. Returns AP_ERR
 * only when the ranks could not agree (MPI). */
int ap_job_start(ap_job *j, const char *resume, int restart, int64_t total, ap_start *s);

#endif
