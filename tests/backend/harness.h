/* harness.h: the backend conformance harness (after ggml's test-backend-ops).
 *
 * A case is one op on one set of shapes: a setup function that declares the
 * case's tensors (inputs filled from a fixed seeded generator, outputs
 * poisoned with NaN so an element an op fails to write shows up), a forward
 * and optionally a backward that call the op on a given context. The harness
 * runs a case on a reference backend and on a test backend, compares every
 * output and gradient with the case's stated tolerance, and checks every
 * backward against central finite differences of
 *     loss = sum over the forward's outputs of (out * w),  w random in [-1, 1),
 * whose gradient the backward gets as dout = w.
 *
 * Tensor kinds:
 *   HX_IN        input, uniform in [lo, hi)
 *   HX_OUT       forward output in the loss; NaN, or (hx_out_init) a seeded
 *                value restored before every forward (in-place ops: axpy)
 *   HX_AUX       forward output saved for backward (mean, rstd, lse): compared
 *                with the forward tolerance, not in the loss
 *   HX_GRAD      gradient written with "=": NaN before the backward
 *   HX_GRAD_ACC  gradient accumulated with "+=": a seeded value before the
 *                backward, subtracted again for the finite-difference check
 *
 * Backends: the CPU backend in its kernel variants (core/isa.h): "generic",
 * "avx2", "avx512", and "cuda" (the CUDA backend, kernels/) in the harness
 * built with AP_HARNESS_CUDA (test_backend_ops_cuda). harness_ctx_open() is
 * the one place that knows how a backend is chosen. On CUDA the state's
 * tensors are copied to the device before each forward / backward and back
 * after; comparisons, loss and finite differences stay on the host. Case
 * functions touch data only through hx_copy / hx_set; gemm's raw-pointer
 * cases are host_only.
 */
#ifndef AP_HARNESS_H
#define AP_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"

#define HX_MAX_TENSORS 16

typedef enum { HX_IN, HX_OUT, HX_AUX, HX_GRAD, HX_GRAD_ACC } hx_kind;

typedef struct hx_tensor {
    const char *name;
    hx_kind kind;
    ap_tensor t;
    float *w;    /* HX_OUT: loss weights, the dout of the backward; same shape */
    float *init; /* HX_OUT (in-place) and HX_GRAD_ACC: value before the op */
    int of;      /* HX_GRAD*: index of the input this is the gradient of */
    float lo, hi; /* HX_IN: range of its values */
} hx_tensor;

/* One run of one case on one backend: its tensors, in declaration order.
 * On a device backend (CUDA) the harness mirrors every tensor and loss
 * weight to the device around each forward / backward call (harness.c,
 * to_device / from_device): while the case function runs, t[i].t and
 * hx_dout describe the device copies; comparisons, the loss and finite
 * differences always see the host values. */
typedef struct hx_state {
    hx_tensor t[HX_MAX_TENSORS];
    int n;
    uint64_t seed;
    ap_ctx *ctx;                  /* the backend running the case now (hx_copy) */
    int on_device;                /* 1 while t[i].t are the device copies */
    ap_tensor host[HX_MAX_TENSORS]; /* the host descriptors while on_device */
    void *dev[HX_MAX_TENSORS];    /* device copies of the tensors */
    float *dev_w[HX_MAX_TENSORS]; /* device copies of the loss weights (hx_dout) */
    ap_ctx *dev_ctx;              /* the context that allocated them */
} hx_state;

typedef struct hx_case hx_case;

struct hx_case {
    const char *op;    /* public op family, --op selects by it: "conv2d" */
    const char *label; /* model and shapes: "SD res 3x3 (1,320,8,8)->320" */
    int p[10];         /* op-specific integers (dims, flags), see the op's setup */
    float f;           /* op-specific float (scale, eps) */
    void (*setup)(hx_state *s, const hx_case *c);
    int (*forward)(hx_state *s, ap_ctx *ctx, const hx_case *c);
    int (*backward)(hx_state *s, ap_ctx *ctx, const hx_case *c); /* NULL: none */
    /* Test vs reference: |test - ref| <= atol * S + rtol * |ref|, S the
     * tensor's scale max(1, max |ref|) (harness.c, compare). */
    double atol, rtol;   /* forward outputs */
    double gatol, grtol; /* gradients, test vs reference */
    double fd_eps, fd_tol;
    int inplace;               /* op-specific: run with the aliasing the op allows
                                  (out = in forward, din = dout backward) */
    int full;                  /* only with --full (full-size shapes) */
    ap_conv_path conv_path;    /* conv2d path of the case (AP_CONV_AUTO: the default) */
    const char *known_failure; /* non-NULL: expected to fail, and why */
    const char *host_only;     /* non-NULL: skipped on device backends, and why */
    /* On a device backend: |test - ref| <= dev_atol * S + dev_rtol * |ref|
     * for forward outputs and gradients when set (> 0), else the case's
     * tolerances times the backend's tol_scale. */
    double dev_atol, dev_rtol;
};

/* Declaring tensors (in setup). Each returns the tensor's index. Shapes are
 * given as HX_DIMS(d0, d1, ...). Data come from splitmix64 keyed by the
 * state's seed and the index, so both backends see the same numbers. */
#define HX_DIMS(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
int hx_in(hx_state *s, const char *name, float lo, float hi, int ndim, const int64_t *shape);
int hx_out(hx_state *s, const char *name, int ndim, const int64_t *shape);
int hx_out_init(hx_state *s, const char *name, int ndim, const int64_t *shape);
int hx_aux(hx_state *s, const char *name, int ndim, const int64_t *shape);
/* Gradient of input `of` (its shape), "=" or "+=". */
int hx_grad(hx_state *s, const char *name, int of);
int hx_grad_acc(hx_state *s, const char *name, int of);

/* Tensor i (NULL for i < 0: an optional argument left out). */
static inline const ap_tensor *hx_t(hx_state *s, int i) { return i < 0 ? NULL : &s->t[i].t; }
/* The dout of forward output i: its loss weights (their device copy while
 * the case runs on a device backend). */
ap_tensor hx_dout(hx_state *s, int i);
/* dst = src (same shape, f32) on whichever memory the case runs: the
 * in-place cases' aliasing copy. Returns dst. */
const ap_tensor *hx_copy(hx_state *s, const ap_tensor *dst, const ap_tensor *src);
/* t[i] = v for a tensor of the state, on host or device memory. */
void hx_set(hx_state *s, const ap_tensor *t, int64_t i, float v);
/* Index of the tensor called name; aborts when there is none (a table bug). */
int hx_find(const hx_state *s, const char *name);
/* Index of the tensor called name, or -1 (an optional argument not declared). */
int hx_index(const hx_state *s, const char *name);
#define HX(s, name) hx_t((s), hx_find((s), (name)))
#define HX_OPT(s, name) hx_t((s), hx_index((s), (name)))

/* A backend: a context and the variant it runs. */
typedef struct hx_backend {
    char name[32];
    int available; /* 0: this machine cannot run it; why says why */
    char why[512];
    ap_ctx ctx;
    int isa; /* CPU kernel variant (core/isa.h) */
    double tol_scale; /* the cases' tolerances are multiplied by this (1 on the CPU) */
} hx_backend;

/* Opens backend `variant` ("generic", "avx2", "avx512", and "cuda" in a
 * harness built with AP_HARNESS_CUDA). Returns 0 (then
 * b->available says whether it runs here, b->why why not), AP_ERR on an
 * unknown name or a context that cannot be made. */
int harness_ctx_open(hx_backend *b, const char *variant);
void harness_ctx_close(hx_backend *b);

/* Result of one case on one (reference, test) pair. */
typedef enum { HX_PASS, HX_FAIL, HX_SKIP, HX_XFAIL, HX_XPASS } hx_verdict;

typedef struct hx_options {
    int fd_points;      /* finite-difference coordinates per gradient tensor */
    int fd_points_full; /* the same for full-size cases (a forward is seconds) */
    int verbose;   /* per-tensor errors even when passing */
} hx_options;

/* Runs case c on ref and on each of the n_tests test backends (an
 * unavailable one gives a SKIP line), prints one line per pair and the
 * details of failures; adds to counts[HX_PASS..HX_XPASS]. */
void harness_run_case(const hx_case *c, int case_index, hx_backend *ref,
                      hx_backend *const *tests, int n_tests, const hx_options *opt,
                      int *counts);

#endif
