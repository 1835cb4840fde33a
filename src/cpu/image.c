/* cpu/image.c: pixel-range clamp and per-channel normalisation (CPU bodies
 * of ops/image.h), moved from models/clip_common.c unchanged. Every
 * element is one expression, so the thread split does not change bits. */
#include "cpu/image.h"

#include <math.h>

#include "core/err.h"

int ap_cpu_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x) {
    const float *a = x->data;
    float *o = out->data;
    const int64_t n = ap_numel(x);
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = a[i] / 2.0f + 0.5f;
        o[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); /* NaN stays NaN, as torch.clamp */
    }
    return AP_OK;
}

int ap_cpu_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                  const ap_tensor *x) {
    const float *a = x->data, *g = dout->data;
    float *d = dx->data;
    const int64_t n = ap_numel(x);
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = a[i] / 2.0f + 0.5f;
        d[i] = (v >= 0.0f && v <= 1.0f) ? g[i] / 2.0f : 0.0f;
    }
    return AP_OK;
}

int ap_cpu_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                     const float *mean, const float *std) {
    const int64_t B = x->shape[0], C = x->shape[1], plane = x->shape[2] * x->shape[3];
#pragma omp parallel for collapse(2) num_threads(ctx->n_threads) if (B * C * plane > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *q = x->data + (b * C + c) * plane;
            float *o = out->data + (b * C + c) * plane;
            for (int64_t i = 0; i < plane; i++) o[i] = (q[i] - mean[c]) / std[c];
        }
    return AP_OK;
}

int ap_cpu_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                      const float *std) {
    const int64_t B = dout->shape[0], C = dout->shape[1], plane = dout->shape[2] * dout->shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *s = dout->data + (b * C + c) * plane;
            float *d = dx->data + (b * C + c) * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i] / std[c];
        }
    return AP_OK;
}

/* Moved from train/reward.c (the demo reward). */
/* Colourfulness of one image (3, H, W) in [0, 1] = x/2 + 0.5 (train/reward.h). */
static double colourfulness(const float *img, int64_t HW, double *st) {
    const float *R = img, *G = img + HW, *Bc = img + 2 * HW;
    double s_rg = 0, s_yb = 0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        s_rg += r - g;
        s_yb += 0.5 * (r + g) - b;
    }
    double m_rg = s_rg / HW, m_yb = s_yb / HW, v_rg = 0, v_yb = 0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        v_rg += a * a;
        v_yb += c * c;
    }
    v_rg /= HW, v_yb /= HW;
    double s = sqrt(v_rg + v_yb), m = sqrt(m_rg * m_rg + m_yb * m_yb);
    st[0] = m_rg, st[1] = m_yb, st[2] = v_rg, st[3] = v_yb, st[4] = s, st[5] = m;
    return s + 0.3 * m;
}

/* d(colourfulness)/d(image) * dC, written into dimg (3, H, W). */
static void colourfulness_backward(float *dimg, const float *img, int64_t HW, const double *st,
                                   double dC) {
    const float *R = img, *G = img + HW, *Bc = img + 2 * HW;
    double m_rg = st[0], m_yb = st[1], s = st[4], m = st[5];
    /* dC/dv = 1/(2s) for each variance; dC/dmean = 0.3 * mean / m */
    double ds = s > 0 ? dC / (2.0 * s) : 0.0;
    double dm_rg = m > 0 ? dC * 0.3 * m_rg / m : 0.0, dm_yb = m > 0 ? dC * 0.3 * m_yb / m : 0.0;
    for (int64_t p = 0; p < HW; p++) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        /* d var/d x_p = 2 (x_p - mean) / HW (the mean's own term sums to 0) */
        double d_rg = ds * 2.0 * a / HW + dm_rg / HW;
        double d_yb = ds * 2.0 * c / HW + dm_yb / HW;
        /* rg = r - g, yb = (r + g)/2 - b; pixel = x/2 + 0.5 */
        dimg[p] = (float)(0.5 * (d_rg + 0.5 * d_yb));
        dimg[HW + p] = (float)(0.5 * (-d_rg + 0.5 * d_yb));
        dimg[2 * HW + p] = (float)(0.5 * (-d_yb));
    }
}

int ap_cpu_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image) {
    const int64_t B = image->shape[0], HW = image->shape[2] * image->shape[3];
    for (int64_t b = 0; b < B; b++) {
        double st[6];
        out->data[b] = (float)colourfulness(image->data + b * 3 * HW, HW, st);
    }
    return AP_OK;
}

int ap_cpu_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout,
                                  const ap_tensor *image) {
    const int64_t B = image->shape[0], HW = image->shape[2] * image->shape[3];
    for (int64_t b = 0; b < B; b++) {
        double st[6]; /* the forward's statistics, recomputed (the same arithmetic) */
        colourfulness(image->data + b * 3 * HW, HW, st);
        colourfulness_backward(dimage->data + b * 3 * HW, image->data + b * 3 * HW, HW, st,
                               (double)dout->data[b]);
    }
    return AP_OK;
}
