/* dist.h: the distributed state (one MPI rank per GPU / CPU process) and
 * the few collective operations the training job needs.
 *
 * Gradients are combined with one MPI_Allreduce (sum) of the flat LoRA
 * gradient buffer per optimizer step; each rank has already scaled its
 * per-sample losses by loss_coeff / N (N = the exact global batch), so the
 * sum is the global mean whatever the ranks' shares. Rank 0 prints and
 * writes; ap_dist_print0 prints on rank 0 only.
 */
#ifndef AP_TRAIN_DIST_H
#define AP_TRAIN_DIST_H

#include <stdint.h>

#include "core/err.h"

typedef struct ap_dist {
    int rank, world;             /* MPI_COMM_WORLD */
    int local_rank, local_world; /* ranks on this node (shared-memory communicator) */
    char host[256];
    void *comm;                  /* MPI_Comm (opaque here) */
    void *local_comm;
    int initialized;             /* 1: this module called MPI_Init */
} ap_dist;

int ap_dist_init(ap_dist *d, int *argc, char ***argv);
void ap_dist_finalize(ap_dist *d);
/* Every rank's value of x, into all (world). */
int ap_dist_allgather_int(ap_dist *d, int x, int *all);
/* Sum buf (n floats) over ranks, in place. */
int ap_dist_allreduce_sum(ap_dist *d, float *buf, int64_t n);
/* Sum of doubles (n) over ranks, in place. */
int ap_dist_allreduce_sum_d(ap_dist *d, double *buf, int n);
/* Logical OR of flag over ranks (a stop request, a failure). */
int ap_dist_any(ap_dist *d, int flag, int *any);
/* Fails on every rank, naming the ranks and values, unless every rank has
 * the same x (what names it: "LoRA weights checksum"). */
int ap_dist_check_same(ap_dist *d, uint64_t x, const char *what);
/* Broadcast n bytes from rank 0. */
int ap_dist_bcast(ap_dist *d, void *buf, int64_t n);
void ap_dist_barrier(ap_dist *d);
/* Abort every rank with a message (after a failure on one rank). */
void ap_dist_abort(ap_dist *d, int code);
void ap_dist_print0(const ap_dist *d, const char *fmt, ...) AP_PRINTF(2, 3);

#endif
