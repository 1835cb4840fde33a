/* testutil.c: comparison, gradcheck and reporting helpers for tests. */
#include "testutil.h"

#include "core/isa.h"
#include "core/rng.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int g_pass, g_fail;


void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x632BE59BD9B4E019ull + 1;
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(ap_splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

void tu_fill_normal(float *x, int64_t n, uint64_t seed, float sd) {
    uint64_t s = seed * 0x632BE59BD9B4E019ull + 7;
    for (int64_t i = 0; i < n; i++) {
        double u1 = ((double)(ap_splitmix64(&s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(ap_splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

float *tu_alloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) {
        fprintf(stderr, "test: out of memory allocating %lld floats\n", (long long)n);
        exit(1);
    }
    return p;
}

int tu_compare(const char *what, const float *got, const float *want, int64_t n,
               double atol, double rtol) {
    double max_abs = 0, max_rel = 0;
    int64_t bad = 0, nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (!isfinite(g) || !isfinite(w)) {
            if (nonfinite++ < 3)
                printf("    %s[%lld]: non-finite: got %g want %g\n", what,
                       (long long)i, g, w);
            continue;
        }
        double d = fabs(g - w);
        double r = d / (fabs(w) > 1e-30 ? fabs(w) : 1e-30);
        if (d > max_abs) max_abs = d;
        if (r > max_rel && fabs(w) > atol) max_rel = r;
        if (d > atol + rtol * fabs(w)) {
            if (bad < 3)
                printf("    %s[%lld]: got %.8g want %.8g (abs err %.3g)\n", what,
                       (long long)i, g, w, d);
            bad++;
        }
    }
    int ok = bad == 0 && nonfinite == 0;
    printf("  %-4s %s: %lld values, max abs err %.3g, max rel err %.3g (atol %.1g, "
           "rtol %.1g)%s\n",
           ok ? "ok" : "FAIL", what, (long long)n, max_abs, max_rel, atol, rtol,
           ok ? "" : " <==");
    if (ok) g_pass++; else g_fail++;
    return ok;
}

int tu_check(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  %-4s ", cond ? "ok" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (cond) g_pass++; else g_fail++;
    return cond;
}

int tu_expect_error(const char *what, int rc, ...) {
    va_list ap;
    va_start(ap, rc);
    int ok = rc != 0;
    const char *msg = ap_errmsg();
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        if (!strstr(msg, needle)) ok = 0;
    va_end(ap);
    printf("  %-4s %s rejected: \"%s\"\n", ok ? "ok" : "FAIL", what,
           rc ? msg : "(no error returned)");
    if (ok) g_pass++; else g_fail++;
    ap_err_clear();
    return ok;
}

double tu_dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

int tu_gradcheck(const char *what, tu_loss_fn loss, void *state, float *x, int64_t n,
                 const float *analytic, double eps, double tol, int max_points) {
    double scale = 1.0, worst = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(analytic[i]) > scale) scale = fabs(analytic[i]);
    int64_t step = n <= max_points ? 1 : n / max_points;
    int checked = 0, bad = 0;
    for (int64_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = (float)(keep + eps);
        double lp = loss(state);
        x[i] = (float)(keep - eps);
        double lm = loss(state);
        x[i] = keep;
        double num = (lp - lm) / (2 * eps);
        double err = fabs(num - analytic[i]) / scale;
        if (err > worst) worst = err;
        if (err > tol) {
            if (bad < 3)
                printf("    %s[%lld]: numeric %.6g analytic %.6g\n", what,
                       (long long)i, num, (double)analytic[i]);
            bad++;
        }
        checked++;
    }
    int ok = bad == 0;
    printf("  %-4s gradcheck %s: %d of %lld points, max err %.3g relative to "
           "max|grad| %.3g (tol %.1g, eps %.1g)%s\n",
           ok ? "ok" : "FAIL", what, checked, (long long)n, worst, scale, tol, eps,
           ok ? "" : " <==");
    if (ok) g_pass++; else g_fail++;
    return ok;
}

static const char *env_dir(const char *name) {
    const char *d = getenv(name);
    struct stat st;
    if (!d || !*d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return d;
}

const char *tu_fixtures_dir(void) { return env_dir("AP_FIXTURES_DIR"); }
const char *tu_shared_dir(void) { return env_dir("AP_SHARED_DIR"); }

int tu_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return TU_SKIP;
}

int tu_exit(void) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

ap_st_file *tu_fixture_open(const char *module) {
    const char *dir = tu_fixtures_dir();
    if (!dir) {
        printf("  FAIL fixtures: AP_FIXTURES_DIR is not set to a directory\n");
        g_fail++;
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, module);
    ap_st_file *f = NULL;
    if (ap_st_open(&f, path) != 0) {
        printf("  FAIL fixture %s: %s (regenerate: tools/make_fixtures.py %s)\n", module,
               ap_errmsg(), module);
        g_fail++;
        return NULL;
    }
    const char *gen = ap_st_meta(f, "generator"), *tv = ap_st_meta(f, "torch");
    printf("  fixture %s.safetensors: %d tensors from %s (torch %s)\n", module,
           ap_st_count(f), gen ? gen : "?", tv ? tv : "?");
    return f;
}

float *tu_fixture(ap_st_file *f, const char *name, ap_tensor *t) {
    if (ap_st_load_f32(f, name, 0, NULL, t) != 0) {
        printf("  FAIL fixture tensor: %s\n", ap_errmsg());
        g_fail++;
        printf("%d passed, %d failed\n", g_pass, g_fail);
        exit(1);
    }
    return t->data;
}

/* Every test runs on the kernel variant AP_CPU_ISA names (meson runs the op
 * tests once per variant); one this CPU cannot run is a printed skip. */
__attribute__((constructor)) static void tu_isa_guard(void) {
    if (ap_cpu_isa_init() != AP_OK) {
        printf("SKIP: %s\n", ap_errmsg());
        fflush(stdout);
        exit(TU_SKIP);
    }
    const char *e = getenv("AP_CPU_ISA");
    if (e && *e) printf("kernel variant: %s (AP_CPU_ISA)\n", ap_isa_name(ap_cpu_isa()));
}
