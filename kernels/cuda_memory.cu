/* cuda_memory.cu: the CUDA backend's memory entries (alloc, free, copy with
 * cast between host and device and on the device, fill, sync, tensor
 * read/write), device arenas, and the contexts: device choice from the
 * node-local rank, the per-process stream and library handles.
 *
 * Allocation policy (docs/cuda.md): cudaMalloc only at setup: contexts
 * (the cuBLASLt workspace), arenas (one per measured plan: tape, tmp),
 * parameters, and scratch grown by ap_ctx_reserve before a loop. Casting
 * copies between host and device convert on the host through a temporary
 * host buffer: they move weights at load time, never inside a step.
 */
#include <cublasLt.h>
#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_common.h"
#include "cuda_ops.h"

static ap_cuda_state g_state;
static int g_state_ready;
static long g_mallocs;

extern "C" ap_cuda_state *ap_cuda_state_get(void) { return g_state_ready ? &g_state : NULL; }
extern "C" long ap_cuda_malloc_count(void) { return g_mallocs; }

/* ---- alloc / free ------------------------------------------------------ */

extern "C" void *ap_cu_alloc(ap_ctx *ctx, size_t bytes, const char *what) {
    (void)ctx;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        ap_fail("cudaMalloc(%zu bytes) for %s: %s (%.1f of %.1f GiB free)", bytes, what,
                cudaGetErrorString(e), (double)free_b / (1 << 30), (double)total_b / (1 << 30));
        return NULL;
    }
    g_mallocs++;
    return p;
}

extern "C" void ap_cu_free(ap_ctx *ctx, void *p) {
    (void)ctx;
    if (p) cudaFree(p);
}

extern "C" int ap_cu_sync(ap_ctx *ctx) {
    CUDA_CHECK(cudaStreamSynchronize(AP_STREAM(ctx)));
    return AP_OK;
}

/* ---- copy with cast ---------------------------------------------------- */

static AP_HD float load_dt(const void *p, ap_dtype dt, int64_t i) {
    switch (dt) {
    case AP_BF16: return ap_cu_bf16_to_f32(((const uint16_t *)p)[i]);
    case AP_F16: return ap_cu_f16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static AP_HD void store_dt(void *p, ap_dtype dt, int64_t i, float v) {
    switch (dt) {
    case AP_BF16: ((uint16_t *)p)[i] = ap_cu_f32_to_bf16(v); break;
    case AP_F16: ((uint16_t *)p)[i] = ap_cu_f32_to_f16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

__global__ void cast_kernel(void *dst, ap_dtype dt, const void *src, ap_dtype st, int64_t n) {
    AP_GRID_LOOP(i, n) store_dt(dst, dt, i, load_dt(src, st, i));
}

__global__ void fill_kernel(void *dst, ap_dtype dt, float v, int64_t n) {
    AP_GRID_LOOP(i, n) store_dt(dst, dt, i, v);
}

extern "C" int ap_cu_cast(ap_ctx *ctx, void *dst, ap_dtype dt, const void *src, ap_dtype st,
                          int64_t n) {
    AP_LAUNCH(ctx, cast_kernel, n, dst, dt, src, st, n);
    return AP_OK;
}

static int copy_fail(const ap_tensor *dst, const ap_tensor *src) {
    char a[200], b[200];
    return ap_err_prefix("copy %s <- %s: ", ap_tensor_str(dst, a, sizeof a),
                         ap_tensor_str(src, b, sizeof b));
}

static int cu_copy_body(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src) {
    const int64_t n = ap_numel(src);
    cudaStream_t s = AP_STREAM(ctx);
    const int dhost = dst->device == AP_CPU, shost = src->device == AP_CPU;
    if (dst->dtype == src->dtype) {
        if (dst->data == src->data) return AP_OK;
        CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, ap_nbytes(src), cudaMemcpyDefault, s));
        if (dhost || shost) CUDA_CHECK(cudaStreamSynchronize(s));
        return AP_OK;
    }
    if (!dhost && !shost) return ap_cu_cast(ctx, dst->data, dst->dtype, src->data, src->dtype, n);
    if (dhost && shost) { /* both on the host: convert in place of a copy */
        for (int64_t i = 0; i < n; i++)
            store_dt(dst->data, dst->dtype, i, load_dt(src->data, src->dtype, i));
        return AP_OK;
    }
    /* across host and device with a cast: convert on the host (load time) */
    const size_t tmp_bytes = (size_t)n * (dhost ? ap_dtype_size(src->dtype) : ap_dtype_size(dst->dtype));
    void *tmp = malloc(tmp_bytes ? tmp_bytes : 1);
    if (!tmp) return ap_fail("out of host memory: %zu bytes to cast", tmp_bytes);
    int rc = AP_OK;
    if (dhost) { /* device src -> host tmp (src dtype) -> dst */
        cudaError_t e = cudaMemcpyAsync(tmp, src->data, ap_nbytes(src), cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e != cudaSuccess) rc = ap_cuda_fail(e, "cudaMemcpyAsync(device -> host)", __FILE__, __LINE__);
        else
            for (int64_t i = 0; i < n; i++) store_dt(dst->data, dst->dtype, i, load_dt(tmp, src->dtype, i));
    } else { /* host src -> host tmp (dst dtype) -> device dst */
        for (int64_t i = 0; i < n; i++) store_dt(tmp, dst->dtype, i, load_dt(src->data, src->dtype, i));
        cudaError_t e = cudaMemcpyAsync(dst->data, tmp, ap_nbytes(dst), cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e != cudaSuccess) rc = ap_cuda_fail(e, "cudaMemcpyAsync(host -> device)", __FILE__, __LINE__);
    }
    free(tmp);
    return rc;
}

extern "C" int ap_cu_copy(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src) {
    if (cu_copy_body(ctx, dst, src) != AP_OK) return copy_fail(dst, src);
    return AP_OK;
}

extern "C" int ap_cu_fill(ap_ctx *ctx, const ap_tensor *dst, float value) {
    const int64_t n = ap_numel(dst);
    AP_LAUNCH(ctx, fill_kernel, n, dst->data, dst->dtype, value, n);
    return AP_OK;
}

extern "C" int ap_cu_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t) {
    ap_tensor h = ap_tensor_of(host, AP_F32, AP_CPU, t->ndim, t->shape);
    return ap_cu_copy(ctx, &h, t);
}

extern "C" int ap_cu_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host) {
    ap_tensor h = ap_tensor_of((void *)host, AP_F32, AP_CPU, t->ndim, t->shape);
    return ap_cu_copy(ctx, t, &h);
}

/* ---- contexts ---------------------------------------------------------- */

extern "C" int ap_cuda_device_count(char *why, int len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) snprintf(why, (size_t)len, "%s", cudaGetErrorString(e));
        cudaGetLastError(); /* clear the (non-sticky) error it recorded */
        return 0;
    }
    if (n == 0 && why) snprintf(why, (size_t)len, "0 devices");
    return n;
}

static int state_create(int device, int allow_tf32) {
    memset(&g_state, 0, sizeof g_state);
    g_state.device = device;
    g_state.allow_tf32 = allow_tf32;
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_state.stream, cudaStreamNonBlocking));
    cublasLtHandle_t lt;
    CUBLAS_CHECK(cublasLtCreate(&lt));
    g_state.lt = lt;
    cudnnHandle_t dnn;
    CUDNN_CHECK(cudnnCreate(&dnn));
    g_state.dnn = dnn;
    CUDNN_CHECK(cudnnSetStream(dnn, g_state.stream));
    CUDA_CHECK(cudaMalloc(&g_state.lt_ws, AP_CU_LT_WS_BYTES));
    g_mallocs++;
    g_state_ready = 1;
    char desc[256];
    size_t free_b = 0, total_b = 0;
    AP_TRY(ap_cuda_describe(desc, sizeof desc));
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    printf("cuda: device %d: %s, %.1f GiB free of %.1f GiB; cuDNN %zu, TF32 %s\n", device,
           desc, (double)free_b / (1 << 30), (double)total_b / (1 << 30), cudnnGetVersion(),
           allow_tf32 ? "on" : "off");
    fflush(stdout);
    return AP_OK;
}

/* Releases what the state holds (also a state_create that failed midway). */
static void state_release(void) {
    if (g_state.stream) cudaStreamSynchronize(g_state.stream);
    if (g_state.lt_ws) cudaFree(g_state.lt_ws);
    if (g_state.dnn) cudnnDestroy((cudnnHandle_t)g_state.dnn);
    if (g_state.lt) cublasLtDestroy((cublasLtHandle_t)g_state.lt);
    if (g_state.stream) cudaStreamDestroy(g_state.stream);
    memset(&g_state, 0, sizeof g_state);
    g_state_ready = 0;
}

extern "C" int ap_cuda_ctx_init(ap_ctx *ctx, int device, int allow_tf32) {
    memset(ctx, 0, sizeof *ctx);
    char why[256] = "";
    const int n = ap_cuda_device_count(why, sizeof why);
    const int local = ap_cu_local_rank(getenv("OMPI_COMM_WORLD_LOCAL_RANK"), getenv("SLURM_LOCALID"),
                                       getenv("MPI_LOCALRANKID"));
    if (n == 0) return ap_fail("backend cuda: no CUDA device (%s)", why);
    if (device < 0) {
        device = ap_cu_pick_device(local, n);
        if (device < 0)
            return ap_fail("backend cuda: node-local rank %d but this node has %d CUDA device%s: "
                           "run at most %d rank%s per node (one GPU per rank)",
                           local, n, n == 1 ? "" : "s", n, n == 1 ? "" : "s");
    } else if (device >= n) {
        return ap_fail("backend cuda: device %d requested, this node has %d", device, n);
    }
    if (g_state_ready && g_state.device != device)
        return ap_fail("backend cuda: this process already runs on device %d; %d requested "
                       "(one GPU per process)", g_state.device, device);
    if (!g_state_ready && state_create(device, allow_tf32) != AP_OK) {
        state_release();
        return ap_err_prefix("backend cuda: device %d: ", device);
    }
    g_state.users++;
    ctx->be = &ap_cuda_backend;
    ctx->device = AP_CUDA;
    ctx->n_threads = 1;
    ctx->stream = (void *)g_state.stream;
    return AP_OK;
}

extern "C" void ap_cuda_ctx_free(ap_ctx *ctx) {
    if (!ctx->be) return;
    if (ctx->stream) cudaStreamSynchronize(AP_STREAM(ctx));
    ap_ctx_free(ctx); /* device scratch through cu_free (core/ctx.c) */
    if (g_state_ready && --g_state.users <= 0) state_release();
}

extern "C" int ap_cuda_arena_init(ap_ctx *ctx, ap_arena *a, size_t bytes, const char *what) {
    memset(a, 0, sizeof *a);
    a->what = what;
    bytes = ap_align64(bytes);
    if (!bytes) return AP_OK;
    a->base = (char *)ap_cu_alloc(ctx, bytes, what);
    if (!a->base) return AP_ERR;
    a->cap = bytes;
    return AP_OK;
}

extern "C" void ap_cuda_arena_free(ap_ctx *ctx, ap_arena *a) {
    if (a->base) ap_cu_free(ctx, a->base);
    memset(a, 0, sizeof *a);
}
