/* ctx.h: execution context and workspaces.
 *
 * Every op takes an ap_ctx: which backend runs it (its op table, ops/backend.h:
 * CPU threads now, a CUDA stream later), how many threads, the CPU kernel
 * variant and conv2d path (set once, when the context is made), and a
 * scratch workspace for temporaries
 * (im2col columns, attention tiles). Scratch is planned by the caller with
 * ap_ctx_reserve() from a dry run's measurement (below); an op then
 * takes it with ap_scratch() at entry, never in an inner loop. A context
 * created with ap_ctx_init() grows scratch on demand (convenient for tools
 * and tests); ap_ctx_fix_scratch() forbids growth so a training loop fails
 * loudly instead of allocating mid-step.
 *
 * ap_arena is a bump allocator for longer-lived buffers (activations saved
 * for backward, parameter and gradient blocks): one allocation, carved.
 */
#ifndef AP_CTX_H
#define AP_CTX_H

#include <stddef.h>

#include "isa.h"
#include "tensor.h"

struct ap_backend; /* the op table, ops/backend.h */

/* CPU conv2d paths (cpu/conv2d.c): the default, packed GEMM with Winograd
 * where it pays; packed GEMM only (exact im2col sums); Winograd for every
 * eligible 3x3; im2col + BLAS everywhere. */
typedef enum {
    AP_CONV_AUTO = 0,
    AP_CONV_DIRECT = 1,
    AP_CONV_WINOGRAD = 2,
    AP_CONV_BLAS = 3
} ap_conv_path;

typedef struct ap_arena {
    char *base;
    size_t cap;
    size_t used;
    size_t peak;
    const char *what; /* what the arena holds, for error messages */
    void *map;        /* the mapping (base..cap, then the guard page) */
    size_t map_bytes;
    void *dev;        /* the block of an arena from a non-CPU backend's alloc */
} ap_arena;

typedef struct ap_ctx {
    const struct ap_backend *be; /* op table of the backend that runs the ops */
    ap_device device;            /* where the ops' tensors must live */
    int n_threads;               /* CPU threads used by ops */
    ap_isa isa;                  /* CPU kernel variant (ap_cpu_isa() at init) */
    ap_conv_path conv_path;      /* CPU conv2d path ($AP_CONV2D_* at init) */
    void *stream;                /* cudaStream_t on the CUDA backend; NULL on CPU */
    char *scratch;      /* 64-byte aligned */
    size_t scratch_cap; /* bytes */
    size_t scratch_peak;
    int scratch_fixed; /* 1: ap_scratch never grows */
    int dry_run;       /* 1: ops do no arithmetic, only record their scratch (below) */
    ap_arena *tmp;     /* temporaries of layer and model calls (core/tape.h): set by
                          the caller, every call leaves it as it found it */
} ap_ctx;

/* A CPU context. n_threads <= 0 picks $AP_NUM_THREADS, else
 * $OMP_NUM_THREADS, else all cores. The kernel variant is the process's
 * (AP_CPU_ISA or the best supported), the conv2d path AP_CONV2D_BLAS |
 * AP_CONV2D_DIRECT | AP_CONV2D_WINOGRAD=1 or the default. */
int ap_ctx_init(ap_ctx *ctx, int n_threads);
/* Runs this context's ops on kernel variant isa; AP_ERR naming the CPU's
 * features when it lacks it. Not while ops run. */
int ap_ctx_set_isa(ap_ctx *ctx, ap_isa isa);
void ap_ctx_free(ap_ctx *ctx);
/* Pins the context's OpenMP threads one per CPU when the process may run on
 * exactly n_threads CPUs and neither OMP_PROC_BIND nor GOMP_CPU_AFFINITY is
 * set (AP_PIN_THREADS=0 turns it off); returns 1 when it pinned. Measured on
 * a 2-vCPU VM: unpinned, the kernel at times kept both spinning threads on
 * one CPU, which then took turns in 4 ms ticks (group_norm 8.0 ms instead of
 * 0.33). For whole programs (the job, sample, benchmarks), not for tests
 * that create contexts of several sizes: threads created later inherit the
 * first thread's CPU. */
int ap_ctx_pin_threads(const ap_ctx *ctx);
/* Make sure scratch holds at least bytes. */
int ap_ctx_reserve(ap_ctx *ctx, size_t bytes);
/* Forbid further growth of scratch (after planning). */
void ap_ctx_fix_scratch(ap_ctx *ctx);
/* Scratch of at least bytes, valid until the next ap_scratch call; NULL and
 * an error naming bytes and what when it cannot be had. */
void *ap_scratch(ap_ctx *ctx, size_t bytes, const char *what);

/* Dry runs (measured workspaces). A dry-run context (ap_ctx_dry, a copy of a
 * real one with dry_run set) runs the real forward and backward code of a
 * model, but every public op only records the scratch it would take
 * (ctx->scratch_peak) and touches no tensor; arenas made by
 * ap_arena_init_measure hand out addresses that are never backed (any access
 * faults) and record their peak. One dry run of a step measures every
 * workspace exactly: the plan is the measured peaks, nothing hand-written. */
ap_ctx ap_ctx_dry(const ap_ctx *real);

/* A step's workspaces in bytes, as a dry run measured them. */
typedef struct ap_plan {
    size_t tape_bytes;    /* saved activations of a forward for backward */
    size_t tmp_bytes;     /* temporaries of forward (inference included) and backward */
    size_t scratch_bytes; /* ctx scratch the ops take */
} ap_plan;

/* Runs fn once on a dry-run copy of ctx with n measuring arenas (what[i]
 * names arena i); peaks[i] receives arena i's peak and *scratch the scratch
 * the ops asked for. fn may use further measuring arenas of its own for
 * inputs that are not part of the plan. */
typedef int (*ap_measure_fn)(ap_ctx *dry, ap_arena *arenas, void *user);
int ap_measure(const ap_ctx *ctx, int n, const char *const *what, ap_measure_fn fn, void *user,
               size_t *peaks, size_t *scratch);
/* A tensor of that shape whose data is carved from the measuring arena in:
 * an input of a dry run (never touched, so never backed); data NULL with
 * an error when in refuses. */
ap_tensor ap_dry_input(ap_arena *in, int ndim, const int64_t *shape);
/* bytes of address space that is never backed (touching it faults): the
 * data of tensors whose shapes a dry run needs but whose values it never
 * reads (weights not loaded, inputs). Freed with ap_unbacked_free. */
void *ap_unbacked_alloc(size_t bytes, const char *what);
void ap_unbacked_free(void *p, size_t bytes);

/* An arena of bytes (64-byte aligned blocks) whose end is followed by an
 * inaccessible guard page: a write past the plan faults instead of
 * corrupting memory. */
int ap_arena_init(ap_arena *a, size_t bytes, const char *what);
/* An arena whose block lives where ctx's ops run: on the CPU backend
 * ap_arena_init's guarded mapping, elsewhere one allocation of the
 * backend's alloc (device memory on CUDA, no guard page); on a dry-run
 * context a measuring arena (never backed, not counted). Free with
 * ap_arena_free_on and the same context. Every block made here is counted
 * (ap_arena_on_stats), so tests can check that a step's planned memory all
 * comes from here and that a step allocates nothing (docs/backend.md §4). */
int ap_arena_init_on(ap_ctx *ctx, ap_arena *a, size_t bytes, const char *what);
void ap_arena_free_on(ap_ctx *ctx, ap_arena *a);
/* blocks made by ap_arena_init_on in this process and their bytes (64-byte
 * aligned), either pointer may be NULL */
void ap_arena_on_stats(long *blocks, size_t *bytes);
/* An arena over bytes of a's block at offset off (both 64-byte multiples
 * within a's capacity), owning nothing: workspaces of phases that never
 * live at the same time share one block. NULL base when it does not fit. */
ap_arena ap_arena_view(const ap_arena *a, size_t off, size_t bytes, const char *what);
/* A measuring arena: any number of bytes, never backed (addresses fault when
 * touched); a->peak is what a real arena needs. */
int ap_arena_init_measure(ap_arena *a, const char *what);
void ap_arena_free(ap_arena *a);
/* 64-byte aligned block; NULL with an error naming bytes, what and the arena. */
void *ap_arena_alloc(ap_arena *a, size_t bytes, const char *what);
float *ap_arena_floats(ap_arena *a, size_t n, const char *what);
void ap_arena_reset(ap_arena *a);

/* Round bytes up to the 64-byte alignment every workspace block uses. */
static inline size_t ap_align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

#endif
