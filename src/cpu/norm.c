/* norm.c: GroupNorm and LayerNorm (CPU reference).
 *
 * Accumulation rule: dgamma, dbeta +=; din =.
 * Forward statistics take two passes (mean, then deviations from the float
 * mean, whose rounding residual is kept: see moments()), summed in float lanes
 * over short blocks and in double across blocks. Backward, for one group / row of
 * n elements with x̂ = (x - mean) * rstd and d = dout * gamma:
 *   din = rstd * (d - mean(d) - x̂ * mean(d * x̂)),
 *   dgamma[c] += sum dout * x̂, dbeta[c] += sum dout (over batch and positions).
 * Channel sums are formed in double per (batch, channel) (GroupNorm) or per
 * fixed row chunk (LayerNorm) in scratch, then reduced in a fixed order: the
 * result is the same for any number of threads.
 */
#include "cpu.h"
#include "ops/norm.h"

#include <math.h>
#include <string.h>

#include "core/err.h"
#include "core/isa.h"

/* LayerNorm backward splits rows into at most this many chunks; the split
 * depends only on the shape, never on the thread count. */
#define LN_CHUNKS 64

/* ---- summation helpers --------------------------------------------------- */

/* Sums run in float over blocks of BLOCK elements, each block as NCH
 * interleaved stretches summed side by side with OpenMP simd reductions
 * (NCH independent vector chains: one chain was latency bound, 1 float per
 * cycle, and made GroupNorm 5-14x slower than PyTorch), and the block results
 * are added in double. The float error is that of ~BLOCK / lanes additions
 * (~1e-6 relative), independent of the length, and the order never depends
 * on the thread count. These helpers are inlined into the per-variant kernels
 * below (core/isa.h), so each is compiled for AVX-512, AVX2 and baseline. */
#define BLOCK 512
#define NCH 4

/* sum x[i], i < len <= BLOCK */
AP_ISA_INLINE float sum_block(const float *x, int64_t len) {
    const int64_t q = len / NCH;
    float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
#pragma omp simd reduction(+ : t0, t1, t2, t3)
    for (int64_t i = 0; i < q; i++) {
        t0 += x[i];
        t1 += x[q + i];
        t2 += x[2 * q + i];
        t3 += x[3 * q + i];
    }
    float t = (t0 + t1) + (t2 + t3);
    for (int64_t i = NCH * q; i < len; i++) t += x[i];
    return t;
}

/* sum x[i] */
AP_ISA_INLINE double sum_f(const float *x, int64_t n) {
    double s = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK)
        s += sum_block(x + b0, n - b0 < BLOCK ? n - b0 : BLOCK);
    return s;
}

/* s[0] += sum (x[i] - m), s[1] += sum (x[i] - m)^2, i < len <= BLOCK */
AP_ISA_INLINE void dev_block(const float *x, int64_t len, float m, double s[2]) {
    const int64_t q = len / 2;
    float a0 = 0, a1 = 0, b0 = 0, b1 = 0;
#pragma omp simd reduction(+ : a0, a1, b0, b1)
    for (int64_t i = 0; i < q; i++) {
        const float d0 = x[i] - m, d1 = x[q + i] - m;
        a0 += d0, b0 += d0 * d0;
        a1 += d1, b1 += d1 * d1;
    }
    float a = a0 + a1, b = b0 + b1;
    for (int64_t i = 2 * q; i < len; i++) {
        const float d = x[i] - m;
        a += d, b += d * d;
    }
    s[0] += a, s[1] += b;
}

/* s[0] = sum (x[i] - m), s[1] = sum (x[i] - m)^2 */
AP_ISA_INLINE void sum_dev(const float *x, int64_t n, float m, double s[2]) {
    s[0] = s[1] = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK)
        dev_block(x + b0, n - b0 < BLOCK ? n - b0 : BLOCK, m, s);
}

/* Mean and rstd of x[0..n), two passes: m0 = float(sum / n), then the sums of
 * d = x - m0 and d^2, which are exact-ish even when |mean| >> std. *mean is
 * the float mean, *delta = true mean - *mean (below half an ulp of *mean),
 * which the caller subtracts as well: x - true mean = (x - *mean) - *delta. */
AP_ISA_INLINE void moments(const float *x, int64_t n, float eps, float *mean, float *delta,
                           float *rstd) {
    const float m0 = (float)(sum_f(x, n) / (double)n);
    double s[2];
    sum_dev(x, n, m0, s);
    const double d0 = s[0] / (double)n, m = m0 + d0;
    double var = s[1] / (double)n - d0 * d0;
    if (var < 0) var = 0;
    *mean = (float)m;
    *delta = (float)(m - (double)*mean);
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

/* With d = x[i] - m and w = g[i] (1 when g is NULL):
 * s[0] = sum w dy, s[1] = sum w dy d, s[2] = sum d. */
AP_ISA_INLINE void sums_bwd(const float *dy, const float *x, const float *g, int64_t n, float m,
                            double s[3]) {
    s[0] = s[1] = s[2] = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int64_t len = n - b0 < BLOCK ? n - b0 : BLOCK, q = len / 2;
        const float *xb = x + b0, *db = dy + b0, *gb = g ? g + b0 : NULL;
        float t1 = 0, t2 = 0, t3 = 0, u1 = 0, u2 = 0, u3 = 0; /* two halves side by side */
        if (gb) {
#pragma omp simd reduction(+ : t1, t2, t3, u1, u2, u3)
            for (int64_t i = 0; i < q; i++) {
                const float w = db[i] * gb[i], d = xb[i] - m;
                const float v = db[q + i] * gb[q + i], e = xb[q + i] - m;
                t1 += w, t2 += w * d, t3 += d;
                u1 += v, u2 += v * e, u3 += e;
            }
        } else {
#pragma omp simd reduction(+ : t1, t2, t3, u1, u2, u3)
            for (int64_t i = 0; i < q; i++) {
                const float d = xb[i] - m, e = xb[q + i] - m;
                t1 += db[i], t2 += db[i] * d, t3 += d;
                u1 += db[q + i], u2 += db[q + i] * e, u3 += e;
            }
        }
        t1 += u1, t2 += u2, t3 += u3;
        for (int64_t i = 2 * q; i < len; i++) {
            const float w = gb ? db[i] * gb[i] : db[i], d = xb[i] - m;
            t1 += w, t2 += w * d, t3 += d;
        }
        s[0] += t1, s[1] += t2, s[2] += t3;
    }
}

/* ---- GroupNorm ----------------------------------------------------------- */

typedef struct {
    int64_t B, C, S, cg; /* batch, channels, spatial size, channels per group */
} gn_dims;

/* The dims of in (B, C, *) in groups (ops/norm.c validated both). */
static gn_dims gn_dims_of(const ap_tensor *in, int groups) {
    gn_dims d = {in->shape[0], in->shape[1], 1, in->shape[1] / groups};
    for (int i = 2; i < in->ndim; i++) d.S *= in->shape[i];
    return d;
}

/* Statistics and output of group bg (batch b, group g) of x. */
AP_ISA_INLINE void gn_fwd_group_body(const gn_dims *d, const float *x, const float *g,
                                     const float *bt, int groups, float eps, int64_t bg,
                                     float *y, float *mu, float *rs) {
    const int64_t n = d->cg * d->S;
    const float *xg = x + bg * n; /* (cg, S) block of group g of batch b */
    float *yg = y + bg * n;
    float mf, dm, rf;
    moments(xg, n, eps, &mf, &dm, &rf);
    mu[bg] = mf;
    rs[bg] = rf;
    const int64_t c0 = (bg % groups) * d->cg;
    for (int64_t c = 0; c < d->cg; c++) {
        const float a = g ? rf * g[c0 + c] : rf, sh = bt ? bt[c0 + c] : 0.0f;
        const float *xc = xg + c * d->S;
        float *yc = yg + c * d->S;
#pragma omp simd
        for (int64_t i = 0; i < d->S; i++) yc[i] = ((xc[i] - mf) - dm) * a + sh;
    }
}
AP_ISA_KERNEL(gn_fwd_group, (const gn_dims *d, const float *x, const float *g, const float *bt,
                             int groups, float eps, int64_t bg, float *y, float *mu, float *rs),
              (d, x, g, bt, groups, eps, bg, y, mu, rs));

int ap_cpu_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, int groups,
                          float eps) {
    const gn_dims d = gn_dims_of(in, groups);
    const float *x = in->data;
    const float *g = ap_present(gamma) ? gamma->data : NULL;
    const float *bt = ap_present(beta) ? beta->data : NULL;
    float *y = out->data, *mu = mean->data, *rs = rstd->data;
    const int64_t n = d.cg * d.S, nbg = d.B * groups;
    void (*const group)(const gn_dims *, const float *, const float *, const float *, int,
                        float, int64_t, float *, float *, float *) = ap_isa_pick(ctx, gn_fwd_group);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic, 1) if (nbg * n > 32768)
    for (int64_t bg = 0; bg < nbg; bg++) group(&d, x, g, bt, groups, eps, bg, y, mu, rs);
    return AP_OK;
}

size_t ap_group_norm_scratch_bytes(int64_t batch, int64_t channels) {
    return ap_align64(2 * (size_t)batch * (size_t)channels * sizeof(double));
}

/* Channel sums of group bg into sum_dy / sum_dyxh and, when dx, its din. */
AP_ISA_INLINE void gn_bwd_group_body(const gn_dims *d, const float *x, const float *dy,
                                     const float *g, const float *mu, const float *rs,
                                     int groups, int64_t bg, double *sum_dy, double *sum_dyxh,
                                     float *dx) {
    const int64_t n = d->cg * d->S;
    const int64_t c0 = (bg % groups) * d->cg; /* first channel of the group */
    const int64_t bc0 = bg * d->cg;           /* its index in (B, C) */
    const float mf = mu[bg], rf = rs[bg];
    /* Per channel: sum dy, sum dy (x - mf), and sum (x - mf) for the
     * residual dm = true mean - mf (see moments()). */
    double sxc = 0;
    for (int64_t c = 0; c < d->cg; c++) {
        double s[3];
        sums_bwd(dy + (bc0 + c) * d->S, x + (bc0 + c) * d->S, NULL, d->S, mf, s);
        sum_dy[bc0 + c] = s[0];
        sum_dyxh[bc0 + c] = s[1];
        sxc += s[2];
    }
    const double dm = sxc / (double)n;
    double m1 = 0, m2 = 0; /* sum d, sum d * x̂ over the group, d = dy * gamma */
    for (int64_t c = 0; c < d->cg; c++) {
        sum_dyxh[bc0 + c] = rf * (sum_dyxh[bc0 + c] - dm * sum_dy[bc0 + c]);
        const double gc = g ? g[c0 + c] : 1.0;
        m1 += gc * sum_dy[bc0 + c];
        m2 += gc * sum_dyxh[bc0 + c];
    }
    if (!dx) return;
    /* din = rstd*gamma*dy - rstd*mean(d) - rstd^2*mean(d x̂)*(x - mf - dm) */
    const double kxd = -(double)rf * rf * m2 / (double)n;
    const float kx = (float)kxd, k0 = (float)(-rf * m1 / (double)n - kxd * dm);
    for (int64_t c = 0; c < d->cg; c++) {
        const float *xc = x + (bc0 + c) * d->S, *dyc = dy + (bc0 + c) * d->S;
        float *dxc = dx + (bc0 + c) * d->S;
        const float a = g ? rf * g[c0 + c] : rf;
#pragma omp simd
        for (int64_t i = 0; i < d->S; i++) dxc[i] = a * dyc[i] + kx * (xc[i] - mf) + k0;
    }
}
AP_ISA_KERNEL(gn_bwd_group, (const gn_dims *d, const float *x, const float *dy, const float *g,
                             const float *mu, const float *rs, int groups, int64_t bg,
                             double *sum_dy, double *sum_dyxh, float *dx),
              (d, x, dy, g, mu, rs, groups, bg, sum_dy, sum_dyxh, dx));

size_t ap_cpu_group_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din,
                                          const ap_tensor *dgamma, const ap_tensor *dbeta,
                                          const ap_tensor *dout, const ap_tensor *in,
                                          const ap_tensor *mean, const ap_tensor *rstd,
                                          const ap_tensor *gamma, int groups) {
    if (!ap_present(din) && !ap_present(dgamma) && !ap_present(dbeta)) return 0;
    return ap_group_norm_scratch_bytes(in->shape[0], in->shape[1]);
}

int ap_cpu_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma, int groups) {
    const gn_dims d = gn_dims_of(in, groups);
    const int want_dx = ap_present(din);
    const int want_w = ap_present(dgamma) || ap_present(dbeta);
    if (!want_dx && !want_w) return AP_OK;
    /* (B, C) sums of dout and of dout * x̂ per channel, in double. */
    double *sum_dy = ap_scratch(ctx, ap_group_norm_scratch_bytes(d.B, d.C),
                                "group_norm_backward channel sums");
    if (!sum_dy) return AP_ERR;
    double *sum_dyxh = sum_dy + d.B * d.C;
    const float *x = in->data, *dy = dout->data, *mu = mean->data, *rs = rstd->data;
    const float *g = ap_present(gamma) ? gamma->data : NULL;
    float *dx = want_dx ? din->data : NULL;
    const int64_t n = d.cg * d.S, nbg = d.B * groups;
    void (*const group)(const gn_dims *, const float *, const float *, const float *,
                        const float *, const float *, int, int64_t, double *, double *,
                        float *) = ap_isa_pick(ctx, gn_bwd_group);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic, 1) if (nbg * n > 32768)
    for (int64_t bg = 0; bg < nbg; bg++)
        group(&d, x, dy, g, mu, rs, groups, bg, sum_dy, sum_dyxh, dx);
    if (!want_w) return AP_OK;
    float *dg = ap_present(dgamma) ? dgamma->data : NULL;
    float *db = ap_present(dbeta) ? dbeta->data : NULL;
    for (int64_t c = 0; c < d.C; c++) { /* fixed order over the batch */
        double sg = 0, sb = 0;
        for (int64_t b = 0; b < d.B; b++) {
            sg += sum_dyxh[b * d.C + c];
            sb += sum_dy[b * d.C + c];
        }
        if (dg) dg[c] += (float)sg;
        if (db) db[c] += (float)sb;
    }
    return AP_OK;
}

/* ---- LayerNorm ----------------------------------------------------------- */

/* Statistics and output of row r of x (C values). */
AP_ISA_INLINE void ln_fwd_row_body(const float *x, const float *g, const float *bt, int64_t C,
                                   float eps, int64_t r, float *y, float *mu, float *rs) {
    const float *xr = x + r * C;
    float *yr = y + r * C;
    float mf, dm, rf;
    moments(xr, C, eps, &mf, &dm, &rf);
    mu[r] = mf;
    rs[r] = rf;
    if (g && bt) {
#pragma omp simd
        for (int64_t i = 0; i < C; i++) yr[i] = ((xr[i] - mf) - dm) * rf * g[i] + bt[i];
    } else {
        for (int64_t i = 0; i < C; i++)
            yr[i] = ((xr[i] - mf) - dm) * rf * (g ? g[i] : 1.0f) + (bt ? bt[i] : 0.0f);
    }
}
AP_ISA_KERNEL(ln_fwd_row, (const float *x, const float *g, const float *bt, int64_t C, float eps,
                           int64_t r, float *y, float *mu, float *rs),
              (x, g, bt, C, eps, r, y, mu, rs));

int ap_cpu_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                          const ap_tensor *rstd, const ap_tensor *in,
                          const ap_tensor *gamma, const ap_tensor *beta, float eps) {
    const int64_t C = in->shape[in->ndim - 1], rows = ap_numel(in) / C; /* validated in ops/norm.c */
    const float *x = in->data;
    const float *g = ap_present(gamma) ? gamma->data : NULL;
    const float *bt = ap_present(beta) ? beta->data : NULL;
    float *y = out->data, *mu = mean->data, *rs = rstd->data;
    void (*const row)(const float *, const float *, const float *, int64_t, float, int64_t,
                      float *, float *, float *) = ap_isa_pick(ctx, ln_fwd_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * C > 32768)
    for (int64_t r = 0; r < rows; r++) row(x, g, bt, C, eps, r, y, mu, rs);
    return AP_OK;
}

static int64_t ln_chunks(int64_t rows) { return rows < LN_CHUNKS ? rows : LN_CHUNKS; }

size_t ap_layer_norm_scratch_bytes(int64_t rows, int64_t channels) {
    return ap_align64(2 * (size_t)ln_chunks(rows) * (size_t)channels * sizeof(double));
}

/* Row r of the backward: adds its dgamma/dbeta terms to pg/pb (when not
 * NULL) and writes its din (when dx). */
AP_ISA_INLINE void ln_bwd_row_body(const float *x, const float *dy, const float *g,
                                   const float *mu, const float *rs, int64_t C, int64_t r,
                                   double *pg, double *pb, float *dx) {
    const float *xr = x + r * C, *dyr = dy + r * C;
    const float mf = mu[r], rf = rs[r];
    /* sum d, sum d (x - mf), sum (x - mf), d = dy * gamma */
    double sm[3];
    sums_bwd(dyr, xr, g, C, mf, sm);
    const float dm = (float)(sm[2] / (double)C); /* true mean - mf */
    const double m1 = sm[0], m2 = rf * (sm[1] - dm * sm[0]); /* sum d, sum d x̂ */
    if (pg) {
#pragma omp simd
        for (int64_t i = 0; i < C; i++) {
            pg[i] += (double)dyr[i] * (double)(((xr[i] - mf) - dm) * rf);
            pb[i] += dyr[i];
        }
    }
    if (!dx) return;
    const float k1 = (float)(m1 / (double)C), k2 = (float)(m2 / (double)C);
    float *dxr = dx + r * C;
#pragma omp simd
    for (int64_t i = 0; i < C; i++) {
        const float xh = ((xr[i] - mf) - dm) * rf;
        dxr[i] = rf * (dyr[i] * (g ? g[i] : 1.0f) - k1 - xh * k2);
    }
}
AP_ISA_KERNEL(ln_bwd_row, (const float *x, const float *dy, const float *g, const float *mu,
                           const float *rs, int64_t C, int64_t r, double *pg, double *pb,
                           float *dx), (x, dy, g, mu, rs, C, r, pg, pb, dx));

size_t ap_cpu_layer_norm_backward_scratch(ap_ctx *ctx, const ap_tensor *din,
                                          const ap_tensor *dgamma, const ap_tensor *dbeta,
                                          const ap_tensor *dout, const ap_tensor *in,
                                          const ap_tensor *mean, const ap_tensor *rstd,
                                          const ap_tensor *gamma) {
    if (!ap_present(dgamma) && !ap_present(dbeta)) return 0;
    const int64_t C = in->shape[in->ndim - 1];
    return ap_layer_norm_scratch_bytes(ap_numel(in) / C, C);
}

int ap_cpu_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                           const ap_tensor *dbeta, const ap_tensor *dout,
                           const ap_tensor *in, const ap_tensor *mean,
                           const ap_tensor *rstd, const ap_tensor *gamma) {
    const int64_t C = in->shape[in->ndim - 1], rows = ap_numel(in) / C;
    const int want_dx = ap_present(din);
    const int want_w = ap_present(dgamma) || ap_present(dbeta);
    if (!want_dx && !want_w) return AP_OK;
    const int64_t nch = ln_chunks(rows);
    /* (nch, C) partial sums of dout * x̂ and dout per row chunk, in double. */
    double *part_g = NULL, *part_b = NULL;
    if (want_w) {
        part_g = ap_scratch(ctx, ap_layer_norm_scratch_bytes(rows, C),
                            "layer_norm_backward chunk sums");
        if (!part_g) return AP_ERR;
        part_b = part_g + nch * C;
    }
    const float *x = in->data, *dy = dout->data, *mu = mean->data, *rs = rstd->data;
    const float *g = ap_present(gamma) ? gamma->data : NULL;
    float *dx = want_dx ? din->data : NULL;
    void (*const row)(const float *, const float *, const float *, const float *, const float *,
                      int64_t, int64_t, double *, double *, float *) = ap_isa_pick(ctx, ln_bwd_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (rows * C > 32768)
    for (int64_t k = 0; k < nch; k++) {
        double *pg = want_w ? part_g + k * C : NULL, *pb = want_w ? part_b + k * C : NULL;
        if (want_w) {
            memset(pg, 0, (size_t)C * sizeof(double));
            memset(pb, 0, (size_t)C * sizeof(double));
        }
        for (int64_t r = k * rows / nch; r < (k + 1) * rows / nch; r++)
            row(x, dy, g, mu, rs, C, r, pg, pb, dx);
    }
    if (!want_w) return AP_OK;
    float *dg = ap_present(dgamma) ? dgamma->data : NULL;
    float *db = ap_present(dbeta) ? dbeta->data : NULL;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (nch * C > 32768)
    for (int64_t i = 0; i < C; i++) { /* fixed order over chunks */
        double sg = 0, sb = 0;
        for (int64_t k = 0; k < nch; k++) {
            sg += part_g[k * C + i];
            sb += part_b[k * C + i];
        }
        if (dg) dg[i] += (float)sg;
        if (db) db[i] += (float)sb;
    }
    return AP_OK;
}
