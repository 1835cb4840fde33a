/* linear.h: fully connected layer (PyTorch Linear), forward and backward.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * y = x . w^T + b over every leading index of x (docs/README.md, conventions).
 * One GEMM each way (ap_gemm, threaded); no scratch for an f32 weight.
 * w may be f32, bf16 or f16 (a frozen weight stored in 2 bytes, widened
 * exactly on the fly; dw must then be NULL). Where the CPU runs BLAS rather
 * than the packed GEMM, such a weight is widened into scratch first
 * (4 * O * I bytes, grown on demand). Everything else is f32.
 */
#ifndef AP_LINEAR_H
#define AP_LINEAR_H

#include "core/ctx.h"
#include "core/tensor.h"

/* out (..., O) = in (..., I) . w (O, I)^T + b (O). b may be NULL (no bias).
 * out has the leading dims of in; rows = numel(in) / I. */
int ap_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b);

/* Given dout (..., O):
 *   din (..., I) = dout . w                 (=,  NULL: not wanted)
 *   dw  (O, I)  += dout^T . in over all rows (+=, NULL: not wanted)
 *   db  (O)     += sum of dout over all rows (+=, NULL: not wanted)
 * in is the forward's input (needed only for dw). */
int ap_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w);

#endif
