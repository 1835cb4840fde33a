/* harness.c: the case machinery of the backend conformance harness: seeded
 * tensors, poisoned outputs, running a case on two backends, comparing with
 * the case's tolerances, the finite-difference check of every backward, and
 * the one function that knows how a backend variant is chosen. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/isa.h"
#include "core/rng.h"
#include "ops/memory.h"
#include "ops/rows.h"
#ifdef AP_HARNESS_CUDA
#include "cuda_backend.h"
#endif

/* ---- backends ---------------------------------------------------------- */

/* Today a backend is the CPU backend with one kernel variant, a field of its
 * context (ap_ctx.isa); a CUDA backend is one more name here. */
int harness_ctx_open(hx_backend *b, const char *variant) {
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", variant);
    b->tol_scale = 1.0;
    if (!strcmp(variant, "cuda")) {
#ifdef AP_HARNESS_CUDA
        char why[256] = "";
        if (ap_cuda_device_count(why, sizeof why) == 0) {
            snprintf(b->why, sizeof b->why, "no CUDA device (%s)", why);
            return AP_OK;
        }
        /* exact f32 (TF32 off): the cases' fp32 tolerances, times 10 for
         * summation order (tree reductions, cuDNN / cuBLASLt algorithms)
         * and CUDA's expf / erff / tanhf (within 2 ulp of glibc's) */
        if (ap_cuda_ctx_init(&b->ctx, -1, 0) != AP_OK) return AP_ERR;
        b->tol_scale = 10.0;
        b->available = 1;
        return AP_OK;
#else
        snprintf(b->why, sizeof b->why, "this harness was built without the CUDA backend");
        return AP_OK;
#endif
    }
    int isa = -1;
    for (int i = 0; i < AP_ISA_COUNT; i++)
        if (!strcmp(variant, ap_isa_name((ap_isa)i))) isa = i;
    if (isa < 0) return ap_fail("backend %s: unknown (generic, avx2, avx512)", variant);
    if (!ap_cpu_isa_supported((ap_isa)isa)) {
        snprintf(b->why, sizeof b->why, "this CPU lacks %s", variant);
        return AP_OK;
    }
    b->isa = isa;
    if (ap_ctx_init(&b->ctx, 0) != AP_OK) return AP_ERR;
    if (ap_ctx_set_isa(&b->ctx, (ap_isa)isa) != AP_OK) return AP_ERR;
    b->available = 1;
    return AP_OK;
}

void harness_ctx_close(hx_backend *b) {
#ifdef AP_HARNESS_CUDA
    if (b->available && b->ctx.device == AP_CUDA) {
        ap_cuda_ctx_free(&b->ctx);
        b->available = 0;
        return;
    }
#endif
    if (b->available) ap_ctx_free(&b->ctx);
    b->available = 0;
}

/* The case's conv2d path on this backend's context. */
static void backend_use(hx_backend *b, const hx_case *c) { b->ctx.conv_path = c->conv_path; }

/* ---- tensors ----------------------------------------------------------- */

static float *alloc_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "harness: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    return p;
}

/* Uniform [lo, hi) from the stream (seed, index, which). */
static void fill(float *x, int64_t n, uint64_t seed, int index, int which, float lo,
                 float hi) {
    uint64_t st = ap_key(seed, 77, (uint64_t)index, (uint64_t)which);
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)ap_unit53(ap_splitmix64(&st));
}

static void poison(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
}

static hx_tensor *add(hx_state *s, const char *name, hx_kind kind, int ndim,
                      const int64_t *shape) {
    if (s->n >= HX_MAX_TENSORS) {
        fprintf(stderr, "harness: more than %d tensors in a case\n", HX_MAX_TENSORS);
        exit(1);
    }
    hx_tensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->kind = kind;
    t->of = -1;
    t->t = ap_tn(NULL, ndim, shape);
    t->t.data = alloc_floats(ap_numel(&t->t));
    s->n++;
    return t;
}

int hx_in(hx_state *s, const char *name, float lo, float hi, int ndim, const int64_t *shape) {
    hx_tensor *t = add(s, name, HX_IN, ndim, shape);
    t->lo = lo;
    t->hi = hi;
    fill(t->t.data, ap_numel(&t->t), s->seed, s->n - 1, 0, lo, hi);
    return s->n - 1;
}

static hx_tensor *add_out(hx_state *s, const char *name, int ndim, const int64_t *shape) {
    hx_tensor *t = add(s, name, HX_OUT, ndim, shape);
    int64_t n = ap_numel(&t->t);
    poison(t->t.data, n);
    t->w = alloc_floats(n);
    fill(t->w, n, s->seed, s->n - 1, 1, -1.0f, 1.0f);
    return t;
}

int hx_out(hx_state *s, const char *name, int ndim, const int64_t *shape) {
    add_out(s, name, ndim, shape);
    return s->n - 1;
}

int hx_out_init(hx_state *s, const char *name, int ndim, const int64_t *shape) {
    hx_tensor *t = add_out(s, name, ndim, shape);
    int64_t n = ap_numel(&t->t);
    t->init = alloc_floats(n);
    fill(t->init, n, s->seed, s->n - 1, 2, -1.0f, 1.0f);
    return s->n - 1;
}

int hx_aux(hx_state *s, const char *name, int ndim, const int64_t *shape) {
    hx_tensor *t = add(s, name, HX_AUX, ndim, shape);
    poison(t->t.data, ap_numel(&t->t));
    return s->n - 1;
}

int hx_grad(hx_state *s, const char *name, int of) {
    hx_tensor *t = add(s, name, HX_GRAD, s->t[of].t.ndim, s->t[of].t.shape);
    t->of = of;
    poison(t->t.data, ap_numel(&t->t));
    return s->n - 1;
}

int hx_grad_acc(hx_state *s, const char *name, int of) {
    hx_tensor *t = add(s, name, HX_GRAD_ACC, s->t[of].t.ndim, s->t[of].t.shape);
    int64_t n = ap_numel(&t->t);
    t->of = of;
    t->init = alloc_floats(n);
    fill(t->init, n, s->seed, s->n - 1, 2, -1.0f, 1.0f);
    memcpy(t->t.data, t->init, (size_t)n * sizeof(float));
    return s->n - 1;
}

ap_tensor hx_dout(hx_state *s, int i) {
    ap_tensor d = s->t[i].t;
    d.data = s->on_device ? s->dev_w[i] : s->t[i].w;
    return d;
}

const ap_tensor *hx_copy(hx_state *s, const ap_tensor *dst, const ap_tensor *src) {
    if (!s->on_device) {
        memcpy(dst->data, src->data, (size_t)ap_numel(dst) * sizeof(float));
        return dst;
    }
    if (ap_copy(s->ctx, dst, src) != AP_OK) {
        fprintf(stderr, "harness: device copy failed: %s\n", ap_errmsg());
        exit(1);
    }
    return dst;
}

void hx_set(hx_state *s, const ap_tensor *t, int64_t i, float v) {
    if (!s->on_device) {
        t->data[i] = v;
        return;
    }
    ap_tensor one = ap_tensor_of(t->data + i, AP_F32, t->device, 1, (int64_t[]){1});
    if (ap_tensor_write(s->ctx, &one, &v) != AP_OK) {
        fprintf(stderr, "harness: device write failed: %s\n", ap_errmsg());
        exit(1);
    }
}

int hx_index(const hx_state *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return i;
    return -1;
}

int hx_find(const hx_state *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return i;
    fprintf(stderr, "harness: case has no tensor '%s'\n", name);
    exit(1);
}

static void state_free(hx_state *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->dev_ctx) {
            ap_dev_free(s->dev_ctx, s->dev[i]);
            ap_dev_free(s->dev_ctx, s->dev_w[i]);
        }
        free(s->t[i].t.data);
        free(s->t[i].w);
        free(s->t[i].init);
    }
    s->n = 0;
}

/* ---- running ----------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* On a device backend: every tensor and loss weight of the state to its
 * device copy (allocated once per state), and the descriptors swapped. */
static int to_device(hx_state *s, hx_backend *b) {
    s->ctx = &b->ctx;
    if (b->ctx.device == AP_CPU) return AP_OK;
    s->dev_ctx = &b->ctx;
    for (int i = 0; i < s->n; i++) {
        hx_tensor *t = &s->t[i];
        const size_t bytes = ap_nbytes(&t->t);
        if (!s->dev[i] && !(s->dev[i] = ap_dev_alloc(&b->ctx, bytes, t->name))) return AP_ERR;
        if (t->w && !s->dev_w[i] && !(s->dev_w[i] = ap_dev_alloc(&b->ctx, bytes, "loss weights")))
            return AP_ERR;
        s->host[i] = t->t;
        ap_tensor d = t->t;
        d.data = s->dev[i];
        d.device = b->ctx.device;
        AP_TRY(ap_copy(&b->ctx, &d, &t->t));
        if (t->w) {
            ap_tensor hw = t->t, dw = d;
            hw.data = t->w;
            dw.data = s->dev_w[i];
            AP_TRY(ap_copy(&b->ctx, &dw, &hw));
        }
        t->t = d;
    }
    s->on_device = 1;
    return AP_OK;
}

/* Back from the device: every tensor's values into its host buffer. */
static int from_device(hx_state *s, hx_backend *b) {
    if (!s->on_device) return AP_OK;
    int rc = ap_ctx_sync(&b->ctx);
    for (int i = 0; i < s->n; i++) {
        if (rc == AP_OK) rc = ap_copy(&b->ctx, &s->host[i], &s->t[i].t);
        s->t[i].t = s->host[i];
    }
    s->on_device = 0;
    return rc;
}

/* Runs fn on the backend, on device copies where the backend needs them. */
static int run_on(hx_state *s, hx_backend *b, const hx_case *c,
                  int (*fn)(hx_state *, ap_ctx *, const hx_case *)) {
    int rc = to_device(s, b);
    if (rc == AP_OK) rc = fn(s, &b->ctx, c);
    char keep[512] = "";
    if (rc != AP_OK) snprintf(keep, sizeof keep, "%s", ap_errmsg());
    int back = from_device(s, b);
    if (rc != AP_OK) ap_fail("%s", keep);
    return rc != AP_OK ? rc : back;
}

static int run_forward(hx_state *s, hx_backend *b, const hx_case *c) {
    for (int i = 0; i < s->n; i++)
        if (s->t[i].kind == HX_OUT && s->t[i].init)
            memcpy(s->t[i].t.data, s->t[i].init,
                   (size_t)ap_numel(&s->t[i].t) * sizeof(float));
    backend_use(b, c);
    return run_on(s, b, c, c->forward);
}

/* Sets up the case's tensors and runs forward and backward; on an op error
 * writes its message into err. */
static int run_case_on(const hx_case *c, int case_index, hx_backend *b, hx_state *s,
                       char *err, size_t err_len) {
    memset(s, 0, sizeof *s);
    s->seed = 0x5eedull * 1000003u + (uint64_t)case_index;
    c->setup(s, c);
    ap_err_clear();
    int rc = run_forward(s, b, c);
    if (rc == AP_OK && c->backward) rc = run_on(s, b, c, c->backward);
    if (rc != AP_OK) snprintf(err, err_len, "%s", ap_errmsg());
    return rc;
}

/* Inputs and loss weights must come back from an op as they went in
 * (regenerated from their seeds and compared bit for bit). */
static int inputs_intact(hx_state *s, char *msg, size_t len) {
    for (int i = 0; i < s->n; i++) {
        hx_tensor *t = &s->t[i];
        if (t->kind != HX_IN && t->kind != HX_OUT) continue;
        int64_t n = ap_numel(&t->t);
        float *want = alloc_floats(n);
        if (t->kind == HX_IN) fill(want, n, s->seed, i, 0, t->lo, t->hi);
        else fill(want, n, s->seed, i, 1, -1.0f, 1.0f);
        int same = !memcmp(want, t->kind == HX_IN ? t->t.data : t->w, (size_t)n * sizeof(float));
        free(want);
        if (!same) {
            snprintf(msg, len, "the op changed its input %s%s", t->kind == HX_OUT ? "dout of " : "",
                     t->name);
            return 0;
        }
    }
    return 1;
}

/* ---- comparing --------------------------------------------------------- */

typedef struct {
    double max_abs, max_ref; /* max |test - ref|, max |ref| */
    int64_t bad;
} cmp_stats;

/* Pass when |got - want| <= atol * S + rtol * |want| everywhere, with the
 * tensor's scale S = max(1, max |want|), and got is finite wherever want is;
 * a NaN left in got is an element the op did not write. The rounding error
 * of a float sum is proportional to the size of its terms, not of its
 * (possibly cancelled) result: a weight gradient summed over 16384 pixels
 * has entries ~100 and entries ~0.02 with the same absolute error. Prints
 * the first mismatches when print is set. */
static void compare(const char *pair, const char *name, const float *got, const float *want,
                    int64_t n, double atol, double rtol, cmp_stats *st, int print) {
    double scale = 1;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
    atol *= scale;
    int shown = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int bad;
        double d = 0;
        if (!isfinite(w) || !isfinite(g)) {
            bad = isnan(w) || isnan(g) || g != w; /* equal infinities pass */
        } else {
            d = fabs(g - w);
            if (d > st->max_abs) st->max_abs = d;
            if (fabs(w) > st->max_ref) st->max_ref = fabs(w);
            bad = d > atol + rtol * fabs(w);
        }
        if (bad) {
            st->bad++;
            if (print && shown++ < 3)
                printf("      %s %s[%lld]: test %.9g ref %.9g (abs err %.3g)%s\n", pair, name,
                       (long long)i, g, w, d,
                       isnan(g)   ? " <- not written (poison)"
                       : isnan(w) ? " <- ref not written"
                                  : "");
        }
    }
}

static double rel_of(const cmp_stats *st) {
    return st->max_ref > 0 ? st->max_abs / st->max_ref : st->max_abs;
}

/* sum over forward outputs of out * w, in double. */
static double loss_of(const hx_state *s) {
    double l = 0;
    for (int i = 0; i < s->n; i++) {
        const hx_tensor *t = &s->t[i];
        if (t->kind != HX_OUT) continue;
        int64_t n = ap_numel(&t->t);
        for (int64_t k = 0; k < n; k++) l += (double)t->t.data[k] * t->w[k];
    }
    return l;
}

/* Central differences of the loss at a few coordinates of every input that
 * has a gradient: err = |numeric - analytic| / max(1, max |analytic|) over
 * the gradient tensor. The denominator uses the stored perturbed values
 * (x + eps rounded to float), not 2 eps. Returns the worst error. */
static double fd_check(const hx_case *c, hx_state *s, hx_backend *b, int points,
                       const char *pair, int print, int *op_failed) {
    double worst = 0;
    for (int gi = 0; gi < s->n; gi++) {
        hx_tensor *g = &s->t[gi];
        if (g->kind != HX_GRAD && g->kind != HX_GRAD_ACC) continue;
        hx_tensor *x = &s->t[g->of];
        int64_t n = ap_numel(&x->t);
        double scale = 1;
        for (int64_t k = 0; k < n; k++) {
            double a = g->t.data[k] - (g->init ? g->init[k] : 0);
            if (fabs(a) > scale) scale = fabs(a);
        }
        uint64_t st = ap_key(s->seed, 91, (uint64_t)gi, 0);
        int np = points < n ? points : (int)n;
        for (int p = 0; p < np; p++) {
            int64_t k = p == 0 ? 0 : p == 1 ? n - 1
                                           : (int64_t)(ap_unit53(ap_splitmix64(&st)) * (double)n);
            float keep = x->t.data[k];
            float xp = keep + (float)c->fd_eps, xm = keep - (float)c->fd_eps;
            x->t.data[k] = xp;
            int rc = run_forward(s, b, c);
            double lp = loss_of(s);
            x->t.data[k] = xm;
            rc |= run_forward(s, b, c);
            double lm = loss_of(s);
            x->t.data[k] = keep;
            if (rc != AP_OK) {
                *op_failed = 1;
                return INFINITY;
            }
            double num = (lp - lm) / ((double)xp - (double)xm);
            double ana = g->t.data[k] - (g->init ? g->init[k] : 0);
            double err = fabs(num - ana) / scale;
            if (!(err <= c->fd_tol) && print)
                printf("      %s fd %s[%lld]: numeric %.7g analytic %.7g (err %.3g of max|grad| "
                       "%.3g)\n", pair, g->name, (long long)k, num, ana, err, scale);
            if (!(err <= worst)) worst = err;
        }
    }
    return worst;
}

static double tol_of(const hx_case *c, const hx_backend *b, hx_kind k, int rel) {
    int grad = k == HX_GRAD || k == HX_GRAD_ACC;
    if (b->ctx.device != AP_CPU && (rel ? c->dev_rtol : c->dev_atol) > 0)
        return rel ? c->dev_rtol : c->dev_atol;
    return b->tol_scale * (rel ? (grad ? c->grtol : c->rtol) : (grad ? c->gatol : c->atol));
}

/* Appends a reason to why ("; " between reasons). */
static void add_why(char *why, size_t len, const char *reason) {
    size_t n = strlen(why);
    snprintf(why + n, len - n, "%s%s", n ? "; " : "", reason);
}

/* Compares every output and gradient of ts with rs into fwd / bwd. */
static void compare_states(const hx_case *c, const hx_backend *b, hx_state *ts, hx_state *rs,
                           const char *pair,
                           int print, int verbose, cmp_stats *fwd, cmp_stats *bwd) {
    for (int i = 0; i < ts->n; i++) {
        hx_tensor *t = &ts->t[i];
        if (t->kind == HX_IN) continue;
        cmp_stats one = {0};
        compare(pair, t->name, t->t.data, rs->t[i].t.data, ap_numel(&t->t),
                tol_of(c, b, t->kind, 0), tol_of(c, b, t->kind, 1), &one, print);
        cmp_stats *agg = (t->kind == HX_GRAD || t->kind == HX_GRAD_ACC) ? bwd : fwd;
        if (one.max_abs > agg->max_abs) agg->max_abs = one.max_abs;
        if (one.max_ref > agg->max_ref) agg->max_ref = one.max_ref;
        agg->bad += one.bad;
        if (verbose)
            printf("      %s %-8s max abs err %.3g, max |ref| %.3g, %lld out of tolerance\n",
                   pair, t->name, one.max_abs, one.max_ref, (long long)one.bad);
    }
}

void harness_run_case(const hx_case *c, int case_index, hx_backend *ref,
                      hx_backend *const *tests, int n_tests, const hx_options *opt,
                      int *counts) {
    static const char *vname[] = {"PASS", "FAIL", "SKIP", "FAIL (known)",
                                  "PASS (known failure passed: unmark it)"};
    char head[160], err[512], ref_why[768] = "";
    snprintf(head, sizeof head, "%-18s %-46s", c->op, c->label);
    hx_state rs;
    int ref_ran = 0, ref_ok = 0;
    int expect_fail = c->known_failure != NULL;
    int print = !expect_fail || opt->verbose;
    for (int ti = 0; ti < n_tests; ti++) {
        char pair[80], why[1600] = "";
        snprintf(pair, sizeof pair, "%s/%s", ref->name, tests[ti]->name);
        if (!tests[ti]->available) {
            printf("%s %-15s SKIP (%s)\n", head, pair, tests[ti]->why);
            counts[HX_SKIP]++;
            continue;
        }
        if (c->host_only && tests[ti]->ctx.device != AP_CPU) {
            printf("%s %-15s SKIP (%s)\n", head, pair, c->host_only);
            counts[HX_SKIP]++;
            continue;
        }
        double t0 = now();
        if (!ref_ran) { /* the reference runs once for all pairs */
            ref_ran = 1;
            if (run_case_on(c, case_index, ref, &rs, err, sizeof err) != AP_OK)
                snprintf(ref_why, sizeof ref_why, "reference %s failed: %s", ref->name, err);
            else if (!inputs_intact(&rs, err, sizeof err))
                snprintf(ref_why, sizeof ref_why, "reference %s: %s", ref->name, err);
            else ref_ok = 1;
        }
        hx_state ts;
        int ok = ref_ok;
        if (!ref_ok) add_why(why, sizeof why, ref_why);
        if (run_case_on(c, case_index, tests[ti], &ts, err, sizeof err) != AP_OK) {
            char r[640];
            snprintf(r, sizeof r, "%s failed: %s", tests[ti]->name, err);
            add_why(why, sizeof why, r);
            ok = 0;
        }
        cmp_stats fwd = {0}, bwd = {0};
        double fd = 0;
        if (ok) {
            if (!inputs_intact(&ts, err, sizeof err)) {
                add_why(why, sizeof why, err);
                ok = 0;
            }
            compare_states(c, tests[ti], &ts, &rs, pair, print, opt->verbose, &fwd, &bwd);
            if (fwd.bad || bwd.bad) {
                char r[128];
                snprintf(r, sizeof r, "%lld forward, %lld gradient values out of tolerance",
                         (long long)fwd.bad, (long long)bwd.bad);
                add_why(why, sizeof why, r);
                ok = 0;
            }
            if (c->backward) {
                int op_failed = 0;
                fd = fd_check(c, &ts, tests[ti], c->full ? opt->fd_points_full : opt->fd_points,
                              pair, print, &op_failed);
                if (op_failed) {
                    add_why(why, sizeof why, "the forward failed during finite differences");
                    ok = 0;
                } else if (!(fd <= c->fd_tol)) {
                    add_why(why, sizeof why, "finite differences disagree with the backward");
                    ok = 0;
                }
            }
        }
        /* abs: max |test - ref|; rel: that over max |ref| (normwise). */
        char line[256];
        const hx_backend *tb = tests[ti];
        int o = snprintf(line, sizeof line, "fwd %.1e rel %.1e (tol %.0e*S+%.0e|ref|)",
                         fwd.max_abs, rel_of(&fwd), tol_of(c, tb, HX_OUT, 0),
                         tol_of(c, tb, HX_OUT, 1));
        if (c->backward)
            snprintf(line + o, sizeof line - (size_t)o,
                     "  bwd %.1e rel %.1e (tol %.0e*S+%.0e|ref|)  fd %.1e (tol %.0e)", bwd.max_abs,
                     rel_of(&bwd), tol_of(c, tb, HX_GRAD, 0), tol_of(c, tb, HX_GRAD, 1), fd,
                     c->fd_tol);
        hx_verdict v = !ok ? (expect_fail ? HX_XFAIL : HX_FAIL)
                           : (expect_fail ? HX_XPASS : HX_PASS);
        printf("%s %-15s %s  %s [%.2f s]\n", head, pair, line, vname[v], now() - t0);
        if (!ok) printf("      %s: %s\n", pair, why);
        if (expect_fail) printf("      known failure: %s\n", c->known_failure);
        counts[v]++;
        state_free(&ts);
        fflush(stdout);
    }
    if (ref_ran) state_free(&rs);
}
