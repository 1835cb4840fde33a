/* proj.h: a linear projection with an optional LoRA branch, the building
 * block of every attention in the UNet, VAE and CLIP towers.
 *
 *   y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ      x (rows, in), W (out, in), b (out),
 *                                   A = lora.down (r, in), B = lora.up (out, r)
 *
 * W and b are frozen (no gradients). LoRA grads accumulate (+=); dx is
 * written (=) or accumulated (+=, for inputs that feed several projections)
 * as the caller asks. Saved for backward: u = x·Aᵀ (rows, r) when LoRA is on;
 * x itself is the caller's (it is usually saved already).
 */
#ifndef AP_NN_PROJ_H
#define AP_NN_PROJ_H

#include "core/ctx.h"
#include "core/tape.h"
#include "core/tensor.h"

typedef struct ap_lora {
    ap_tensor down;  /* (r, in)  A, LoRALinearLayer.down.weight */
    ap_tensor up;    /* (out, r) B, LoRALinearLayer.up.weight */
    ap_tensor ddown; /* (r, in)  gradient of A (+=); data NULL: frozen */
    ap_tensor dup;   /* (out, r) gradient of B (+=); data NULL: frozen */
    float scale;     /* s: 1.0 in AlignProp */
} ap_lora;

typedef struct ap_proj {
    ap_tensor w;   /* (out, in) frozen */
    ap_tensor b;   /* (out) or data NULL: no bias */
    ap_lora *lora; /* NULL: no LoRA */
} ap_proj;

typedef struct ap_proj_saved {
    ap_tape_rec rec; /* the forward's stamp (core/tape.h) */
    ap_tensor u; /* (rows, r) = x·Aᵀ, only with LoRA */
} ap_proj_saved;


/* out (..., out) = projection of x (..., in). tape: where u is kept for
 * backward (NULL for inference: u then lives in scratch). */
int ap_proj_forward(ap_ctx *ctx, ap_tape *tape, const ap_proj *p, ap_proj_saved *sv,
                    const ap_tensor *out, const ap_tensor *x);

/* dout (..., out) -> dx (..., in) (= or += by accumulate_dx; NULL: not
 * wanted) and LoRA grads (+=). x is the forward input. */
int ap_proj_backward(ap_ctx *ctx, ap_tape *tape, const ap_proj *p, const ap_proj_saved *sv,
                     const ap_tensor *dx, int accumulate_dx, const ap_tensor *dout,
                     const ap_tensor *x);

#endif
