/* dist.c: MPI wrapper for the training job (dist.h). Works as a single rank
 * when the program was not started by mpirun (MPI_Init is still called:
 * Open MPI runs singletons). */
#include "train/dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

#define COMM(d) (*(MPI_Comm *)(d)->comm)

static int mpi_fail(int rc, const char *call) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ap_fail("%s failed: %s", call, msg);
}
#define MPI_TRY(call, name)                                                    \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, name);                    \
    } while (0)

int ap_dist_init(ap_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        MPI_TRY(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        d->initialized = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    d->comm = malloc(sizeof(MPI_Comm));
    d->local_comm = malloc(sizeof(MPI_Comm));
    if (!d->comm || !d->local_comm) return ap_fail("out of memory: MPI communicators");
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, (MPI_Comm *)d->comm), "MPI_Comm_dup");
    MPI_Comm_rank(COMM(d), &d->rank);
    MPI_Comm_size(COMM(d), &d->world);
    MPI_TRY(MPI_Comm_split_type(COMM(d), MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL,
                                (MPI_Comm *)d->local_comm), "MPI_Comm_split_type");
    MPI_Comm_rank(*(MPI_Comm *)d->local_comm, &d->local_rank);
    MPI_Comm_size(*(MPI_Comm *)d->local_comm, &d->local_world);
    if (gethostname(d->host, sizeof d->host - 1) != 0) snprintf(d->host, sizeof d->host, "unknown");
    return AP_OK;
}

void ap_dist_finalize(ap_dist *d) {
    if (d->local_comm) MPI_Comm_free((MPI_Comm *)d->local_comm);
    if (d->comm) MPI_Comm_free((MPI_Comm *)d->comm);
    free(d->local_comm), free(d->comm);
    d->comm = d->local_comm = NULL;
    int fin = 0;
    MPI_Finalized(&fin);
    if (d->initialized && !fin) MPI_Finalize();
    d->initialized = 0;
}

int ap_dist_allgather_int(ap_dist *d, int x, int *all) {
    MPI_TRY(MPI_Allgather(&x, 1, MPI_INT, all, 1, MPI_INT, COMM(d)), "MPI_Allgather");
    return AP_OK;
}

int ap_dist_allreduce_sum(ap_dist *d, float *buf, int64_t n) {
    if (d->world == 1) return AP_OK;
    for (int64_t off = 0; off < n; off += INT_MAX / 2) {
        int cnt = (int)(n - off < INT_MAX / 2 ? n - off : INT_MAX / 2);
        /* reduce to rank 0, then broadcast: every rank gets the same bits
         * whatever algorithm the library picks (an allreduce may sum in a
         * different order on different ranks) */
        int rc = d->rank == 0 ? MPI_Reduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, 0, COMM(d))
                              : MPI_Reduce(buf + off, NULL, cnt, MPI_FLOAT, MPI_SUM, 0, COMM(d));
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Reduce (sum over ranks)");
        MPI_TRY(MPI_Bcast(buf + off, cnt, MPI_FLOAT, 0, COMM(d)), "MPI_Bcast (sum over ranks)");
    }
    return AP_OK;
}

int ap_dist_allreduce_sum_d(ap_dist *d, double *buf, int n) {
    if (d->world == 1) return AP_OK;
    int rc = d->rank == 0 ? MPI_Reduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, 0, COMM(d))
                          : MPI_Reduce(buf, NULL, n, MPI_DOUBLE, MPI_SUM, 0, COMM(d));
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Reduce (sum over ranks)");
    MPI_TRY(MPI_Bcast(buf, n, MPI_DOUBLE, 0, COMM(d)), "MPI_Bcast (sum over ranks)");
    return AP_OK;
}

int ap_dist_any(ap_dist *d, int flag, int *any) {
    int v = flag != 0;
    MPI_TRY(MPI_Allreduce(&v, any, 1, MPI_INT, MPI_LOR, COMM(d)), "MPI_Allreduce (flag)");
    return AP_OK;
}

int ap_dist_check_same(ap_dist *d, uint64_t x, const char *what) {
    unsigned long long v = x, *all = malloc(sizeof *all * (size_t)d->world);
    if (!all) return ap_fail("out of memory: %d checksums", d->world);
    int rc = MPI_Allgather(&v, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, COMM(d));
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Allgather (checksum)");
    }
    for (int r = 1; r < d->world; r++) {
        if (all[r] != all[0]) {
            int r2 = r;
            unsigned long long a = all[0], b = all[r];
            free(all);
            return ap_fail("%s differs between ranks: rank 0 has %016llx, rank %d has %016llx "
                           "(the ranks' LoRA copies diverged; stopping)", what, a, r2, b);
        }
    }
    free(all);
    return AP_OK;
}

int ap_dist_bcast(ap_dist *d, void *buf, int64_t n) {
    if (d->world == 1) return AP_OK;
    char *p = buf;
    for (int64_t off = 0; off < n; off += INT_MAX / 2) {
        int cnt = (int)(n - off < INT_MAX / 2 ? n - off : INT_MAX / 2);
        MPI_TRY(MPI_Bcast(p + off, cnt, MPI_BYTE, 0, COMM(d)), "MPI_Bcast");
    }
    return AP_OK;
}

void ap_dist_barrier(ap_dist *d) { MPI_Barrier(COMM(d)); }

void ap_dist_abort(ap_dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(d->comm ? COMM(d) : MPI_COMM_WORLD, code);
    exit(code);
}

void ap_dist_print0(const ap_dist *d, const char *fmt, ...) {
    if (d->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
