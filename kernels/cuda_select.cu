/* cuda_select.cu: the CUDA backend as a selectable backend (src/ops/select.h):
 * the start-up check a run and its --dry-run share (a device for this
 * process's node-local rank, else the driver's reason or the rank count),
 * context creation on that device, and the --version line (docs/cuda.md §2, §6).
 * A program linked with the backend calls ap_cuda_provide() once at start. */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_common.h"

extern "C" {
#include "cuda_backend.h"
#include "ops/select.h"
}

static int local_rank(void) {
    return ap_cu_local_rank(getenv("OMPI_COMM_WORLD_LOCAL_RANK"), getenv("SLURM_LOCALID"),
                            getenv("MPI_LOCALRANKID"));
}

/* the same refusals as ap_cuda_ctx_init, without creating any state */
static int cuda_check(void) {
    char why[256] = "";
    const int n = ap_cuda_device_count(why, sizeof why);
    if (n == 0) return ap_fail("no CUDA device (%s)", why);
    const int local = local_rank();
    if (ap_cu_pick_device(local, n) < 0)
        return ap_fail("node-local rank %d but this node has %d CUDA device%s: run at most %d "
                       "rank%s per node (one GPU per rank)", local, n, n == 1 ? "" : "s", n,
                       n == 1 ? "" : "s");
    return AP_OK;
}

static int cuda_ctx_init(ap_ctx *ctx, int allow_tf32) { return ap_cuda_ctx_init(ctx, -1, allow_tf32); }

static void cuda_describe(char *buf, int len) {
    char why[256] = "";
    const int n = ap_cuda_device_count(why, sizeof why);
    if (n == 0) snprintf(buf, (size_t)len, "built, no device here (%s)", why);
    else snprintf(buf, (size_t)len, "built, %d device%s", n, n == 1 ? "" : "s");
}

static const ap_backend_provider cuda_provider = {
    "cuda", cuda_check, cuda_ctx_init, ap_cuda_ctx_free, cuda_describe,
};

extern "C" void ap_cuda_provide(void) { ap_backend_provide(&cuda_provider); }
