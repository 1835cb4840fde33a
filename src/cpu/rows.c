/* cpu/rows.c: copies, fills, row gathers and sums, the non-finite count
 * (CPU bodies of ops/rows.h). Copies are memcpy (bits preserved, -0 and NaN
 * payloads included); sums run in one fixed order per element. */
#include "cpu/rows.h"

#include <string.h>

#include "core/err.h"
#include "core/finite.h"

static int64_t row_len(const ap_tensor *t) { return ap_numel(t) / t->shape[0]; }

int ap_cpu_copy(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    if (out->data != in->data)
        memmove(out->data, in->data, (size_t)ap_numel(in) * sizeof(float));
    return AP_OK;
}

int ap_cpu_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t) {
    if (host != t->data) memcpy(host, t->data, (size_t)ap_numel(t) * sizeof(float));
    return AP_OK;
}

int ap_cpu_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host) {
    if (host != t->data) memcpy(t->data, host, (size_t)ap_numel(t) * sizeof(float));
    return AP_OK;
}

int ap_cpu_fill(ap_ctx *ctx, const ap_tensor *out, float value) {
    float *o = out->data;
    const int64_t n = ap_numel(out);
    for (int64_t i = 0; i < n; i++) o[i] = value;
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
