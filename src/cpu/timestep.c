/* timestep.c: sinusoidal timestep embedding (CPU reference).
 *
 * Accumulation rule: no parameters; dt is overwritten (=).
 *
 * Exactness. With t up to 999, a 1-ulp change of a frequency f_k moves
 * a_k = t * f_k by up to ~6e-5, hence sin/cos by as much, so the frequencies
 * must equal PyTorch's bit for bit:
 *   c        = (float)(-ln(max_period))                (Python double -> float scalar)
 *   e_k      = (float)(c * (float)k) / (float)(half - shift)   (true float division)
 *   f_k      = torch.exp(e_k): PyTorch's AVX2 CPU kernel uses SLEEF's
 *              1-ulp expf, which is not correctly rounded (16 of the 160 SD
 *              frequencies differ from glibc's expf by 1 ulp). expf_torch()
 *              below evaluates the same algorithm: q = rint(x*log2(e)),
 *              Cody-Waite reduction with a two-part ln 2, a degree-5
 *              polynomial in Horner form with fused multiply-adds, 2^q.
 *              Checked bit-exact against torch.exp on the 160 SD exponents
 *              and 2e5 random arguments in [-80, 80].
 *   a_k      = (float)((float)(t * f_k) * scale)
 *   sin, cos: correctly rounded from double (PyTorch's SLEEF u10 versions
 *              may differ by 1 ulp, ~6e-8 absolute).
 */
#include "cpu.h"
#include "ops/timestep.h"

#include <math.h>

#include "core/err.h"

/* exp(x) as PyTorch 1.13's vectorised CPU kernel computes it (see above). */
static float expf_torch(float x) {
    if (x < -104.0f) return 0.0f;
    if (x > 100.0f) return INFINITY;
    int q = (int)rintf(x * 1.442695040888963407359924681001892137f);
    float qf = (float)q;
    float s = fmaf(qf, -0.693145751953125f, x);
    s = fmaf(qf, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    float ss = s * s;
    u = 1.0f + fmaf(ss, u, s);
    return ldexpf(u, q);
}

typedef struct {
    int half;     /* number of frequencies */
    float c;      /* -ln(max_period) as a float32 scalar */
    float denom;  /* half - shift as a float32 scalar */
} freq_plan;

static int plan(const char *op, freq_plan *p, int64_t dim, float shift, int max_period) {
    if (max_period <= 0) return ap_fail("%s: max_period must be > 0, found %d", op, max_period);
    p->half = (int)(dim / 2);
    p->c = (float)(-log((double)max_period));
    p->denom = (float)((double)p->half - (double)shift);
    if (p->half > 0 && p->denom == 0.0f)
        return ap_fail("%s: half_dim %d - downscale_freq_shift %g is 0 (division by zero)", op,
                       p->half, (double)shift);
    return AP_OK;
}

static inline float freq(const freq_plan *p, int k) {
    float e = (p->c * (float)k) / p->denom;
    return expf_torch(e);
}

int ap_cpu_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *t,
                                  int flip_sin_to_cos, float downscale_freq_shift,
                                  float scale, int max_period) {
    const char *op = "timestep_embedding_forward";
    int64_t B = t->shape[0];
    int64_t dim = out->shape[1];
    freq_plan p;
    AP_TRY(plan(op, &p, dim, downscale_freq_shift, max_period));
    int64_t sin_off = flip_sin_to_cos ? p.half : 0, cos_off = flip_sin_to_cos ? 0 : p.half;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (B * dim > 65536)
    for (int64_t b = 0; b < B; b++) {
        float *e = out->data + b * dim, tb = t->data[b];
        for (int k = 0; k < p.half; k++) {
            float a = (tb * freq(&p, k)) * scale;
            e[sin_off + k] = (float)sin((double)a);
            e[cos_off + k] = (float)cos((double)a);
        }
        if (dim % 2) e[dim - 1] = 0.0f;
    }
    return AP_OK;
}

int ap_cpu_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt, const ap_tensor *dout,
                                   const ap_tensor *t, int flip_sin_to_cos,
                                   float downscale_freq_shift, float scale, int max_period) {
    const char *op = "timestep_embedding_backward";
    int64_t B = t->shape[0];
    int64_t dim = dout->shape[1];
    freq_plan p;
    AP_TRY(plan(op, &p, dim, downscale_freq_shift, max_period));
    int64_t sin_off = flip_sin_to_cos ? p.half : 0, cos_off = flip_sin_to_cos ? 0 : p.half;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (B * dim > 65536)
    for (int64_t b = 0; b < B; b++) {
        const float *g = dout->data + b * dim;
        float tb = t->data[b];
        double acc = 0;
        for (int k = 0; k < p.half; k++) {
            float f = freq(&p, k);
            double a = (double)((tb * f) * scale);
            acc += (double)scale * f * ((double)g[sin_off + k] * cos(a) - (double)g[cos_off + k] * sin(a));
        }
        dt->data[b] = (float)acc;
    }
    return AP_OK;
}
