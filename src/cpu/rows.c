/* cpu/rows.c: copies, fills, row gathers and sums, the non-finite count,
 * and the per-row arithmetic of the model heads (broadcast add, l2
 * normalisation, row dot, |x - target|, affine, division), the CPU bodies
 * of ops/rows.h. Copies are memcpy (bits preserved, -0 and NaN payloads
 * included); sums run in one fixed order per element; the head loops are
 * the ones models/ and vae.c had, unchanged. */
#include "cpu/rows.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "core/finite.h"

static int64_t row_len(const ap_tensor *t) { return ap_numel(t) / t->shape[0]; }

int ap_cpu_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t) {
    if (host != t->data) memcpy(host, t->data, (size_t)ap_numel(t) * sizeof(float));
    return AP_OK;
}

int ap_cpu_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host) {
    if (host != t->data) memcpy(t->data, host, (size_t)ap_numel(t) * sizeof(float));
    return AP_OK;
}

int ap_cpu_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx,
                       int m) {
    const int64_t r = row_len(in);
    for (int j = 0; j < m; j++)
        memcpy(out->data + (int64_t)j * r, in->data + (int64_t)idx[j] * r,
               (size_t)r * sizeof(float));
    return AP_OK;
}

int ap_cpu_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                const int *idx, int m) {
    const int64_t r = row_len(din);
    memset(din->data, 0, (size_t)ap_numel(din) * sizeof(float));
    for (int j = 0; j < m; j++) {
        float *d = din->data + (int64_t)idx[j] * r;
        const float *g = dout->data + (int64_t)j * r;
        int seen = 0; /* a first visit copies (keeps -0), later ones add */
        for (int q = 0; q < j && !seen; q++) seen = idx[q] == idx[j];
        if (!seen) memcpy(d, g, (size_t)r * sizeof(float));
        else
            for (int64_t e = 0; e < r; e++) d[e] += g[e];
    }
    return AP_OK;
}

int ap_cpu_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate) {
    const int64_t R = in->shape[0], r = row_len(in);
    const float *x = in->data;
    float *o = out->data;
    for (int64_t e = 0; e < r; e++) {
        float s = x[e];
        for (int64_t k = 1; k < R; k++) s += x[k * r + e];
        o[e] = accumulate ? o[e] + s : s;
    }
    return AP_OK;
}

int ap_cpu_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const float *x = in->data;
    const int64_t n = ap_numel(in);
    int64_t count = 0, at = 0, i;
    while (at < n && (i = ap_first_nonfinite(x + at, n - at)) >= 0) count++, at += i + 1;
    out->data[0] = (float)count;
    return AP_OK;
}

/* ---- per-row arithmetic of the model heads -------------------------------- */

int ap_cpu_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                              const ap_tensor *b) {
    const int64_t R = a->shape[0], r = row_len(a);
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    for (int64_t k = 0; k < R; k++)
        for (int64_t e = 0; e < r; e++) o[k * r + e] = x[k * r + e] + y[e];
    return AP_OK;
}

/* Moved from models/clip_common.c. */
int ap_cpu_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm,
                          const ap_tensor *v, float eps) {
    int64_t B = v->shape[0], D = v->shape[1];
    for (int64_t b = 0; b < B; b++) {
        const float *x = v->data + b * D;
        double s = 0;
        for (int64_t i = 0; i < D; i++) s += (double)x[i] * x[i];
        float n = (float)sqrt(s), d = n > eps ? n : eps;
        norm->data[b] = n;
        for (int64_t i = 0; i < D; i++) u->data[b * D + i] = x[i] / d;
    }
    return AP_OK;
}

int ap_cpu_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du,
                           const ap_tensor *u, const ap_tensor *norm, float eps) {
    int64_t B = u->shape[0], D = u->shape[1];
    for (int64_t b = 0; b < B; b++) {
        const float *g = du->data + b * D, *y = u->data + b * D;
        float *o = dv->data + b * D, n = norm->data[b];
        if (!(n > eps)) { /* clamped: the norm is a constant */
            for (int64_t i = 0; i < D; i++) o[i] = g[i] / eps;
            continue;
        }
        double dot = 0;
        for (int64_t i = 0; i < D; i++) dot += (double)y[i] * g[i];
        for (int64_t i = 0; i < D; i++) o[i] = (float)((g[i] - y[i] * dot) / n);
    }
    return AP_OK;
}

/* Moved from models/hps.c (the score n . t). */
int ap_cpu_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                           const ap_tensor *b) {
    int64_t B = a->shape[0], D = a->shape[1];
    for (int64_t k = 0; k < B; k++) {
        double d = 0;
        for (int64_t i = 0; i < D; i++) d += (double)a->data[k * D + i] * b->data[k * D + i];
        out->data[k] = (float)d;
    }
    return AP_OK;
}

int ap_cpu_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                            const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b) {
    int64_t B = a->shape[0], D = a->shape[1];
    for (int64_t k = 0; k < B; k++) {
        const float g = dout->data[k];
        if (ap_present(da))
            for (int64_t i = 0; i < D; i++) da->data[k * D + i] = g * b->data[k * D + i];
        if (ap_present(db))
            for (int64_t i = 0; i < D; i++) db->data[k * D + i] = g * a->data[k * D + i];
    }
    return AP_OK;
}

/* Moved from models/aesthetic.c (|reward - target|). */
int ap_cpu_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target) {
    const int64_t n = ap_numel(x);
    for (int64_t i = 0; i < n; i++) out->data[i] = fabsf(x->data[i] - target);
    return AP_OK;
}

int ap_cpu_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                             const ap_tensor *x, float target) {
    const int64_t n = ap_numel(x);
    for (int64_t i = 0; i < n; i++) {
        float d = x->data[i] - target;
        float sg = d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f);
        dx->data[i] = dout->data[i] * sg;
    }
    return AP_OK;
}

int ap_cpu_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a,
                          float b) {
    const int64_t n = ap_numel(x);
    for (int64_t i = 0; i < n; i++) out->data[i] = a * x->data[i] + b;
    return AP_OK;
}

/* Moved from models/vae.c (z = latent / scaling_factor). */
int ap_cpu_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s) {
    const float *a = x->data;
    float *y = out->data;
    const int64_t n = ap_numel(x);
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] / s;
    return AP_OK;
}
