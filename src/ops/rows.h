/* rows.h: data movement over a tensor's first dimension (views, copies,
 * host transfers, row gathers and sums, fills), the non-finite count, and
 * the per-row arithmetic of the model heads (broadcast add, l2
 * normalisation, row dot, |x - target|, affine, division): what the
 * sampling loop, the chain, the VAE and the CLIP/aesthetic/HPS heads did
 * with memcpy and host loops over raw floats.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Everything here is an activation op: outputs are overwritten (=) unless a
 * function says it accumulates (ap_sum_rows with accumulate). A "row" is
 * one index of the first dim: t (N, ...) has N rows of numel / N elements.
 * Tensors are contiguous float32.
 *
 * Host <-> tensor: ap_tensor_read and ap_tensor_write are the only places
 * values cross between host memory and a tensor (a device backend
 * synchronises there); code above ops/ reads a value it must see (a
 * non-finite count, a reward to log) through them.
 */
#ifndef AP_OPS_ROWS_H
#define AP_OPS_ROWS_H

#include "core/ctx.h"
#include "core/tensor.h"

/* A view of rows r0 .. r0 + n - 1 of t (N, ...): (n, ...), the same
 * memory. Out-of-range rows, or a t without data, give the (n, ...) shape
 * with no data (an op then fails naming it). */
ap_tensor ap_rows(const ap_tensor *t, int64_t r0, int64_t n);

/* Row i of t (N, d1, ...) as a tensor (d1, ...) over the same memory (a
 * 1-D t gives (1)); no data when i is out of range. */
ap_tensor ap_row(const ap_tensor *t, int64_t i);

/* t with another shape of the same numel (ndim <= AP_MAX_DIMS), the same
 * memory; no data when the sizes differ. */
ap_tensor ap_reshape(const ap_tensor *t, int ndim, const int64_t *shape);

/* out = in (the same shape). out must not partly overlap in. */
int ap_copy(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);

/* host[0 .. numel) = t: the explicit copy from a tensor to host memory. */
int ap_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t);
/* t = host[0 .. numel): the explicit copy from host memory into a tensor. */
int ap_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host);

/* out = value everywhere (any shape). */
int ap_fill(ap_ctx *ctx, const ap_tensor *out, float value);

/* out[j] = in[idx[j]] for j < m: out (m, ...), in (N, ...) with the same
 * trailing dims; idx (host ints) in 0 .. N-1, repeats allowed. out must not
 * overlap in. */
int ap_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx,
                   int m);
/* Its backward: din (N, ...) = 0, then din[idx[j]] gets dout[j] (m, ...)
 * for j in order (a row picked twice gets the sum of its two gradients). */
int ap_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                            const int *idx, int m);

/* s = in[0] + in[1] + ... + in[R-1] (left to right), then
 * out = s (accumulate 0) or out = out + s (accumulate 1).
 * in (R, ...), out (...) with in's trailing dims (any shape of that numel).
 * The backward of using one tensor in R rows of a batch, e.g. the latent
 * fed to both CFG rows: dx += dx_u + dx_c. */
int ap_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);

/* out (1) = the number of non-finite values (NaN, +-inf) in in (any
 * shape), as a float (exact up to 2^24). */
int ap_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);

/* AP_OK when t holds only finite values; otherwise an error
 * "WHAT: non-finite value V at index I of N (K more ...)". Counts with
 * ap_count_nonfinite and reads the count through ap_tensor_read (a
 * synchronisation point); only on failure does it read t itself. */
int ap_check_finite_tensor(ap_ctx *ctx, const ap_tensor *t, const char *what);

/* ---- per-row arithmetic of the model heads -------------------------------- */

/* out[r] = a[r] + b for every row r: out, a (R, ...); b with a's trailing
 * dims, (...) or (1, ...) (e.g. position embeddings added to every
 * sequence). out may alias a. Used on frozen b only: its backward for a
 * is the identity (da = dout, no op needed). */
int ap_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                          const ap_tensor *b);

/* u (B, D) = v / max(|v|_2, eps) per row; norm (B) receives |v|_2 (float,
 * summed in double). eps = 0 gives torch.linalg.vector_norm division
 * (aesthetic), 1e-12 F.normalize (HPS). u may alias v. */
int ap_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm,
                      const ap_tensor *v, float eps);
/* dv (B, D) (=) = (du - u (u . du)) / |v| where |v| > eps, du / eps where the
 * norm was clamped. dv may alias du. */
int ap_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du,
                       const ap_tensor *u, const ap_tensor *norm, float eps);

/* out (B) = sum_i a[b, i] * b[b, i] per row, summed in double in index
 * order, rounded once. a, b (B, D). */
int ap_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                       const ap_tensor *b);
/* da[b, i] = dout[b] * b[b, i], db[b, i] = dout[b] * a[b, i] (each
 * optional, =). dout (B); da, db, a, b (B, D). */
int ap_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                        const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);

/* out = |x - target| (any shape, the same for out and x). out may alias x. */
int ap_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
/* dx = dout * sign(x - target) (0 where x == target or x is NaN). dx may
 * alias dout. */
int ap_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                         const ap_tensor *x, float target);

/* out = a * x + b (any shape; with a = -1, b = 1 exactly 1 - x). out may
 * alias x. Its backward is ap_scale_backward with a. */
int ap_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a, float b);

/* out = x / s, a true division (PyTorch's x / scaling_factor; not
 * x * (1 / s)), any shape. Also its own backward: dx = dout / s. out may
 * alias x. */
int ap_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);

#endif
