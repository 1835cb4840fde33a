/* conv2d.h: 2-D convolution (PyTorch Conv2d, no groups, no dilation),
 * forward and backward, as im2col + GEMM.
 *
 * Accumulation rule (every op file): parameter grads +=, activation grads =.
 * Conv2d is a cross-correlation (docs/README.md, conventions):
 *   out[b, o, i, j] = bias[o] + sum_{c,u,v} w[o, c, u, v] * in[b, c, i*s + u - p, j*s + v - p]
 * with zeros outside the input; Ho = (H + 2p - kh)/s + 1, Wo likewise.
 *
 * Scratch: one column buffer (C*kh*kw, rows*Wo) floats, where rows is the
 * number of output rows processed at once: all Ho rows when the columns of one
 * image fit AP_CONV2D_COL_FLOATS, else as many as fit (at least one). Images
 * are processed one at a time, so scratch does not grow with B. A 1x1 kernel
 * with stride 1 and pad 0 is a plain GEMM and needs no columns. On the AVX2
 * and AVX-512 kernel variants (core/isa.h, chosen at run time) the forward and dweight instead
 * run a packed GEMM that gathers columns on the fly (scratch: the packed
 * weights, O rounded up to 12 x C*kh*kw floats; for dweight a packed slice of
 * dout, O rounded up to 12 x at most AP_CONV2D_COL_FLOATS / that pixels),
 * and din of stride-1 convs with pad <= k - 1 runs as a forward conv of dout
 * with transposed, flipped weights (scratch: those weights, C x O*kh*kw, plus
 * their packed copy). 3x3 stride-1 pad-1 convs (forward, and din, which is
 * then also 3x3/s1/p1) with C, O >= 64, H, W >= 8 and B*ceil(H/2)*ceil(W/2)
 * >= 256 tiles run Winograd F(2x2, 3x3) on the packed GEMM instead (2.25x
 * fewer multiplies; scratch: the transformed weights packed, 16 x O rounded
 * up to 12 x C, plus 16 x (C + O) x T for T tiles per chunk, T chosen so this
 * part stays within AP_CONV2D_COL_FLOATS / 2; fp32 error ~1.6x im2col's,
 * measured in tests/ops/test_conv2d.c).
 * The path is the context's (ap_ctx.conv_path, read from the environment
 * once by ap_ctx_init): AP_CONV2D_BLAS=1 forces im2col + BLAS everywhere;
 * AP_CONV2D_DIRECT=1 keeps the packed path but never uses Winograd (exact
 * im2col sums); AP_CONV2D_WINOGRAD=1 uses Winograd for every 3x3/s1/p1 conv
 * regardless of size (tests). ap_conv2d_scratch_bytes() covers forward and
 * backward on any path (the largest of the buffers above) for an f32 weight.
 * w may also be bf16 or f16 (a frozen weight, mixed precision; dw must then
 * be NULL): the packed paths widen it while packing, bit for bit the f32
 * result; im2col + BLAS (and GEMM + col2im for din) widen it into 4 * O *
 * C*kh*kw more bytes of scratch first, beyond ap_conv2d_scratch_bytes (grown
 * on demand).
 */
#ifndef AP_CONV2D_H
#define AP_CONV2D_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/tensor.h"

/* Column buffer budget per chunk: 8 Mi floats (32 MiB). Large layers are cut
 * into equal chunks of output rows of at most this size (SD UNet 64x64x320
 * 3x3: 2880 x 4096 = 11.3 Mi floats per image -> 2 chunks of 32 rows, 22.5
 * MiB; VAE decoder 512x512x256 3x3: 2304 x 262144 = 576 Mi floats -> 74
 * chunks of 7 rows, 31.5 MiB). */
#define AP_CONV2D_COL_FLOATS ((size_t)8 << 20)

/* Scratch bytes ap_conv2d_forward/backward take for these dimensions:
 * 4 * max(C*kh*kw * rows * Wo (0 for 1x1/s1/p0), packed buffers) (see
 * above); 0 for invalid dims. SD 64x64x320 3x3: 26.1 MB (Winograd din:
 * flipped weights 3.7 + transformed weights 6.6 + one chunk 15.7; the im2col
 * columns alone were 23.6). */
size_t ap_conv2d_scratch_bytes(int B, int C, int H, int W, int O, int kh, int kw,
                               int stride, int pad);

/* out (B, O, Ho, Wo) = conv(in (B, C, H, W), w (O, C, kh, kw)) + b (O).
 * b may be NULL (no bias). stride >= 1, pad >= 0. */
int ap_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b, int stride, int pad);

/* Given dout (B, O, Ho, Wo):
 *   din (B, C, H, W)   = conv_transpose(dout, w)          (=, NULL: not wanted)
 *   dw  (O, C, kh, kw) += sum_b dout_b . im2col(in_b)^T   (+=, NULL: not wanted)
 *   db  (O)            += sum over B, Ho, Wo of dout      (+=, NULL: not wanted)
 * in and w are the forward's inputs. in is read only for dw: when dw is NULL,
 * in may be a shape-only descriptor (data NULL), so a frozen layer's input
 * need not be kept for backward. */
int ap_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w, int stride,
                       int pad);

/* The path this process's convolutions take (CPU and environment above), for
 * benchmark reports: e.g. "packed AVX-512 GEMM, Winograd where it pays". */
const char *ap_conv2d_variant(const ap_ctx *ctx);

#endif
