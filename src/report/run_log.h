/* run_log.h: reading a run's HDF5 log (log.h5, eval.h5: the layout of
 * src/train/h5log.h) for the report, also while the run is writing it: the
 * file is opened for SWMR reading (falling back to a plain read-only open,
 * without HDF5's file lock where the writer holds it) and rows are counted
 * by /<group>/complete_rows, so a row still being written is never read.
 * docs/report.md. */
#ifndef AP_REPORT_RUN_LOG_H
#define AP_REPORT_RUN_LOG_H

#include <stdint.h>

typedef struct ap_log_train {
    int64_t n;                           /* whole rows */
    double *step, *loss, *reward_mean, *reward_std, *grad_norm, *lr, *step_time,
        *samples_per_s;                  /* (n) each; step as double for the charts */
    int width;                           /* per-sample columns (the global batch) */
} ap_log_train;

typedef struct ap_log_eval {
    int64_t n;                           /* whole rows (evaluations) */
    int width;                           /* E: images per evaluation */
    double *step, *reward_mean, *reward_std; /* (n) */
    float *rewards;                      /* (n, width) */
    char *prompts;                       /* (n, width, AP_LOG_STR) NUL-terminated */
} ap_log_eval;

#define AP_LOG_STR 256

/* Read /train (when present) and /eval of the log at path. A group that
 * does not exist yet reads as zero rows. Errors name the file and dataset. */
int ap_log_read(const char *path, ap_log_train *train, ap_log_eval *eval);
void ap_log_train_free(ap_log_train *t);
void ap_log_eval_free(ap_log_eval *e);

/* The text of the string attribute name of the file's root group (variable
 * or fixed length) in *out (malloc'ed), or *out = NULL when the file has no
 * such attribute. -1 only when the file cannot be opened or read. */
int ap_h5_text_attr(const char *path, const char *name, char **out);

#endif
