/* ctx.c: execution context, scratch workspace and arena allocator. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, pthread_setaffinity_np */
#endif
#include "ctx.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "err.h"
#include "isa.h"
#include "ops/backend.h" /* the backend's alloc / free for device scratch */

/* The CPU op table (cpu/backend.c); its init hook sets up BLAS. */
extern const struct ap_backend ap_cpu_backend;
int ap_cpu_backend_init(ap_ctx *ctx);

#ifdef _OPENMP
#include <omp.h>
#endif

static int env_int(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == '\0' && v > 0 && v < 4096) ? (int)v : 0;
}

static int env_on(const char *name) {
    const char *e = getenv(name);
    return e && *e && *e != '0';
}

int ap_ctx_init(ap_ctx *ctx, int n_threads) {
    memset(ctx, 0, sizeof *ctx);
    ctx->be = &ap_cpu_backend;
    ctx->device = AP_CPU;
    AP_TRY(ap_cpu_isa_init());
    ctx->isa = ap_cpu_isa();
    ctx->conv_path = env_on("AP_CONV2D_BLAS")       ? AP_CONV_BLAS
                     : env_on("AP_CONV2D_DIRECT")   ? AP_CONV_DIRECT
                     : env_on("AP_CONV2D_WINOGRAD") ? AP_CONV_WINOGRAD
                                                    : AP_CONV_AUTO;
    if (n_threads <= 0) n_threads = env_int("AP_NUM_THREADS");
    if (n_threads <= 0) n_threads = env_int("OMP_NUM_THREADS");
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_num_procs();
#endif
    if (n_threads <= 0) n_threads = 1;
    ctx->n_threads = n_threads;
    return ap_cpu_backend_init(ctx);
}

int ap_ctx_set_isa(ap_ctx *ctx, ap_isa isa) {
    if (!ap_cpu_isa_supported(isa)) {
        char d[512];
        return ap_fail("kernel variant %s: this CPU lacks it (%s)", ap_isa_name(isa),
                       ap_cpu_describe(d, sizeof d));
    }
    ctx->isa = isa;
    return AP_OK;
}

int ap_ctx_pin_threads(const ap_ctx *ctx) {
#if defined(__linux__) && defined(_OPENMP)
    const char *e = getenv("AP_PIN_THREADS");
    if ((e && !strcmp(e, "0")) || getenv("OMP_PROC_BIND") || getenv("GOMP_CPU_AFFINITY"))
        return 0;
    cpu_set_t set;
    if (ctx->n_threads < 2 || sched_getaffinity(0, sizeof set, &set) != 0 ||
        CPU_COUNT(&set) != ctx->n_threads)
        return 0;
    int cpus[CPU_SETSIZE], n = 0;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) cpus[n++] = i;
    int pinned = 0;
#pragma omp parallel num_threads(ctx->n_threads) reduction(+ : pinned)
    {
        const int t = omp_get_thread_num();
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[t % n], &one);
        pinned += pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
    }
    return pinned == ctx->n_threads;
#else
    (void)ctx;
    return 0;
#endif
}

/* Scratch lives where the context's ops run: host memory on the CPU, the
 * backend's alloc / free elsewhere (device memory on CUDA, docs/cuda.md). */
static void scratch_release(ap_ctx *ctx) {
    if (ctx->device != AP_CPU && ctx->be && ctx->be->free) {
        if (ctx->scratch) ctx->be->free(ctx, ctx->scratch);
    } else free(ctx->scratch);
}

void ap_ctx_free(ap_ctx *ctx) {
    scratch_release(ctx);
    memset(ctx, 0, sizeof *ctx);
}

int ap_ctx_reserve(ap_ctx *ctx, size_t bytes) {
    bytes = ap_align64(bytes);
    if (bytes <= ctx->scratch_cap) return AP_OK;
    if (ctx->scratch_fixed)
        return ap_fail("scratch workspace is fixed at %zu bytes; %zu requested",
                       ctx->scratch_cap, bytes);
    void *p = NULL;
    if (ctx->device != AP_CPU && ctx->be && ctx->be->alloc) {
        if (!(p = ctx->be->alloc(ctx, bytes, "the scratch workspace"))) return AP_ERR;
    } else if (posix_memalign(&p, 64, bytes) != 0)
        return ap_fail("out of memory: %zu bytes for the scratch workspace", bytes);
    scratch_release(ctx);
    ctx->scratch = p;
    ctx->scratch_cap = bytes;
    return AP_OK;
}

void ap_ctx_fix_scratch(ap_ctx *ctx) { ctx->scratch_fixed = 1; }

/* Address space that is never backed: dry runs hand it out (64 GiB). */
#define AP_UNBACKED_BYTES ((size_t)64 << 30)

static void *unbacked(size_t *bytes) {
    *bytes = AP_UNBACKED_BYTES;
    void *p = mmap(NULL, AP_UNBACKED_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

ap_ctx ap_ctx_dry(const ap_ctx *real) {
    ap_ctx d = *real;
    d.scratch = NULL;
    d.scratch_cap = 0;
    d.scratch_peak = 0;
    d.scratch_fixed = 0;
    d.dry_run = 1;
    d.tmp = NULL; /* the measuring function sets its own */
    return d;
}

void *ap_scratch(ap_ctx *ctx, size_t bytes, const char *what) {
    if (bytes > ctx->scratch_peak) ctx->scratch_peak = bytes;
    if (ctx->dry_run) { /* one unbacked range for every dry run of the process */
        static void *range;
        static size_t range_bytes;
#pragma omp critical(ap_unbacked)
        if (!range) range = unbacked(&range_bytes);
        if (!range || bytes > range_bytes) {
            ap_fail("dry run: %s: %zu bytes of scratch exceed the measurable range", what, bytes);
            return NULL;
        }
        return range;
    }
    if (bytes > ctx->scratch_cap) {
        if (ctx->scratch_fixed) {
            ap_fail("scratch workspace too small: %s needs %zu bytes, %zu planned",
                    what, bytes, ctx->scratch_cap);
            return NULL;
        }
        if (ap_ctx_reserve(ctx, bytes) != 0) {
            ap_err_prefix("%s: ", what);
            return NULL;
        }
    }
    return ctx->scratch;
}

int ap_arena_init(ap_arena *a, size_t bytes, const char *what) {
    memset(a, 0, sizeof *a);
    a->what = what;
    bytes = ap_align64(bytes);
    if (!bytes) return AP_OK;
    /* pages for bytes, then one guard page; the block ends where the guard
     * begins, so any write past the plan faults */
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t data = (bytes + page - 1) / page * page;
    void *p = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return ap_fail("out of memory: %zu bytes for %s", bytes, what);
    if (mprotect((char *)p + data, page, PROT_NONE) != 0) {
        munmap(p, data + page);
        return ap_fail("%s: cannot protect the guard page after %zu bytes", what, bytes);
    }
    a->map = p;
    a->map_bytes = data + page;
    a->base = (char *)p + (data - bytes);
    a->cap = bytes;
    return AP_OK;
}

static long g_on_blocks;
static size_t g_on_bytes;

void ap_arena_on_stats(long *blocks, size_t *bytes) {
    long n;
    size_t b;
#pragma omp critical(ap_arena_on)
    {
        n = g_on_blocks;
        b = g_on_bytes;
    }
    if (blocks) *blocks = n;
    if (bytes) *bytes = b;
}

int ap_arena_init_on(ap_ctx *ctx, ap_arena *a, size_t bytes, const char *what) {
    bytes = ap_align64(bytes);
    /* a dry run touches no tensor: an unbacked measuring arena, not counted */
    if (ctx->dry_run) return ap_arena_init_measure(a, what);
    if (ctx->device == AP_CPU || !ctx->be || !ctx->be->alloc) {
        AP_TRY(ap_arena_init(a, bytes, what));
    } else {
        memset(a, 0, sizeof *a);
        a->what = what;
        if (bytes) {
            if (!(a->dev = ctx->be->alloc(ctx, bytes, what))) return AP_ERR;
            a->base = a->dev;
            a->cap = bytes;
        }
    }
#pragma omp critical(ap_arena_on)
    {
        g_on_blocks++;
        g_on_bytes += bytes;
    }
    return AP_OK;
}

void ap_arena_free_on(ap_ctx *ctx, ap_arena *a) {
    if (a->dev && ctx->be && ctx->be->free) ctx->be->free(ctx, a->dev);
    a->dev = NULL;
    ap_arena_free(a);
}

ap_arena ap_arena_view(const ap_arena *a, size_t off, size_t bytes, const char *what) {
    ap_arena v;
    memset(&v, 0, sizeof v);
    v.what = what;
    if (off % 64 || bytes % 64 || off > a->cap || bytes > a->cap - off) return v;
    v.base = a->base + off;
    v.cap = bytes;
    return v;
}

int ap_arena_init_measure(ap_arena *a, const char *what) {
    memset(a, 0, sizeof *a);
    a->what = what;
    size_t bytes;
    void *p = unbacked(&bytes);
    if (!p) return ap_fail("%s: cannot reserve address space to measure", what);
    a->map = p;
    a->map_bytes = bytes;
    a->base = p;
    a->cap = bytes;
    return AP_OK;
}

void ap_arena_free(ap_arena *a) {
    if (a->map) munmap(a->map, a->map_bytes);
    memset(a, 0, sizeof *a);
}

void *ap_arena_alloc(ap_arena *a, size_t bytes, const char *what) {
    size_t need = ap_align64(bytes);
    if (need > a->cap - a->used) {
        ap_fail("%s: out of planned space: %s needs %zu bytes, %zu of %zu left",
                a->what ? a->what : "arena", what, need, a->cap - a->used, a->cap);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

float *ap_arena_floats(ap_arena *a, size_t n, const char *what) {
    return ap_arena_alloc(a, n * sizeof(float), what);
}

void ap_arena_reset(ap_arena *a) { a->used = 0; }

int ap_measure(const ap_ctx *ctx, int n, const char *const *what, ap_measure_fn fn, void *user,
               size_t *peaks, size_t *scratch) {
    ap_arena a[8];
    if (n < 0 || n > 8) return ap_fail("measure: %d arenas (at most 8)", n);
    ap_ctx dry = ap_ctx_dry(ctx);
    int rc = AP_OK, made = 0;
    for (; made < n && !rc; made++) rc = ap_arena_init_measure(&a[made], what[made]);
    if (!rc) rc = fn(&dry, a, user);
    for (int i = 0; i < made; i++) {
        if (!rc) peaks[i] = a[i].peak;
        ap_arena_free(&a[i]);
    }
    if (!rc) *scratch = dry.scratch_peak;
    ap_ctx_free(&dry);
    return rc;
}

void *ap_unbacked_alloc(size_t bytes, const char *what) {
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        ap_fail("%s: cannot reserve %zu bytes of address space", what, bytes);
        return NULL;
    }
    return p;
}

void ap_unbacked_free(void *p, size_t bytes) {
    if (p) munmap(p, bytes ? bytes : 1);
}

ap_tensor ap_dry_input(ap_arena *in, int ndim, const int64_t *shape) {
    ap_tensor t = ap_tn(NULL, ndim, shape);
    t.data = ap_arena_floats(in, (size_t)ap_numel(&t), "dry-run input");
    return t;
}
