/* adamw.h: torch.optim.AdamW and clip_grad_norm_ over one flat fp32 buffer.
 *
 * AdamW (torch 1.13, foreach=False, amsgrad=False, maximize=False), per
 * element, t = step count after increment:
 *   p <- p * (1 - lr * weight_decay)
 *   m <- beta1 * m + (1 - beta1) * g;   v <- beta2 * v + (1 - beta2) * g^2
 *   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * clip_grad_norm_(max_norm), norm type 2: total = ||g||_2 (summed in double,
 * fixed order), coef = max_norm / (total + 1e-6), g *= coef when coef < 1.
 */
#ifndef AP_TRAIN_ADAMW_H
#define AP_TRAIN_ADAMW_H

#include <stdint.h>

typedef struct ap_adamw_hp {
    double lr, beta1, beta2, eps, weight_decay;
} ap_adamw_hp;

typedef struct ap_adamw {
    int64_t n;
    int64_t step; /* optimizer steps taken */
    float *m;     /* (n) first moments */
    float *v;     /* (n) second moments */
} ap_adamw;

int ap_adamw_init(ap_adamw *a, int64_t n);
void ap_adamw_free(ap_adamw *a);
/* One step on param (n) with grad (n). */
void ap_adamw_step(ap_adamw *a, const ap_adamw_hp *hp, float *param, const float *grad);
/* L2 norm of g (n), accumulated in double in index order. */
double ap_grad_norm(const float *g, int64_t n);
/* clip_grad_norm_: returns the norm before clipping. */
double ap_clip_grad_norm(float *g, int64_t n, double max_norm);

#endif
