/* adamw.c: torch.optim.AdamW and clip_grad_norm_ on a flat buffer (adamw.h).
 * The arithmetic follows torch 1.13's single-tensor _single_tensor_adamw in
 * float32: bias corrections and the step size in double (Python floats). */
#include "train/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int ap_adamw_init(ap_adamw *a, int64_t n) {
    memset(a, 0, sizeof *a);
    a->n = n;
    a->m = ap_calloc((size_t)n, sizeof(float), "AdamW first moments");
    a->v = ap_calloc((size_t)n, sizeof(float), "AdamW second moments");
    if (!a->m || !a->v) {
        ap_adamw_free(a);
        return AP_ERR;
    }
    return AP_OK;
}

void ap_adamw_free(ap_adamw *a) {
    free(a->m), free(a->v);
    memset(a, 0, sizeof *a);
}

void ap_adamw_step(ap_adamw *a, const ap_adamw_hp *hp, float *param, const float *grad) {
    a->step++;
    const double t = (double)a->step;
    const double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
    const float step_size = (float)(hp->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - hp->lr * hp->weight_decay);
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float a1 = (float)(1.0 - hp->beta1), a2 = (float)(1.0 - hp->beta2);
    const float eps = (float)hp->eps;
    float *m = a->m, *v = a->v;
    const int64_t n = a->n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        /* torch: exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) (lerp in 2.x) */
        m[i] = m[i] * b1 + a1 * g;
        v[i] = v[i] * b2 + a2 * g * g; /* addcmul_: self + value * t1 * t2 */
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] = p - step_size * (m[i] / denom);
    }
}

double ap_grad_norm(const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

double ap_clip_grad_norm(float *g, int64_t n, double max_norm) {
    double total = ap_grad_norm(g, n);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (int64_t i = 0; i < n; i++) g[i] *= c;
    }
    return total;
}
