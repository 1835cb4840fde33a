/* runinfo.h: what log.h5 and eval.h5 record about the run that wrote them:
 * program version and git commit, resolved config, the reward and what a
 * larger value means, ranks and capacities, the machine (docs/logging.md §5).
 */
#ifndef AP_TRAIN_RUNINFO_H
#define AP_TRAIN_RUNINFO_H

#include "train/h5log.h"

struct ap_job;

typedef struct ap_runinfo {
    char host[256];
    char cpu[320];
    char gpu[1024];
    char reward[1536];  /* what a larger reward means */
    ap_h5log_meta meta; /* points into this struct and the job */
} ap_runinfo;

/* Fill ri from the job (rank 0; reads /proc/cpuinfo and, with the cuda
 * backend, /proc/driver/nvidia/gpus/ * /information). Never fails: what
 * cannot be read is "unknown". */
void ap_runinfo_fill(ap_runinfo *ri, const struct ap_job *j);

#endif
