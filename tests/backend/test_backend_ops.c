/* test_backend_ops.c: every public op of src/ops on a table of cases (shapes
 * of SD v1.5's UNet and VAE, CLIP-L's text encoder, ViT-H/14's image encoder,
 * and edge shapes: one element, odd sizes, sizes that are no multiple of a
 * vector width or tile), run on a reference backend and on each test
 * backend, compared with per-op tolerances, every backward also checked by
 * central finite differences (harness.h).
 *
 * Backends today: the CPU backend's kernel variants; pairs generic/avx2 and
 * generic/avx512 (the generic variant is the reference: plain C, im2col +
 * BLAS for conv2d). A variant this CPU lacks is a printed SKIP per case.
 *
 *   test_backend_ops [--op NAME] [--full] [--list] [--fd-points N] [--verbose]
 *
 * The default set (221 cases) uses the models' real channel counts, head
 * dims and kernel sizes with small batch and spatial sizes (a 16x16 latent
 * instead of 64x64, 65 ViT tokens instead of 257), plus edge, in-place and
 * frozen-layer (din only) cases: ~10 s on the 2-core dev box in a release
 * build when it is otherwise idle (~35 s beside other work), ~35 s under
 * AddressSanitizer. --full adds 24 full-size cases (SD 64x64 latent, SD
 * 4096-token attention, ViT-H 257 tokens, VAE 128x128x256 conv, the 512->224
 * reward resize) with 2 finite-difference points each: 1.5-2 min more.
 *
 * Tolerances: |test - ref| <= atol * S + rtol * |ref| elementwise, with S =
 * max(1, max |ref|) over the tensor: float sums err in proportion to their
 * terms, not their result, and S stands for the terms (a weight gradient
 * summed over 16384 pixels has entries of 100 and of 0.02 with the same
 * absolute error). Inputs are O(1) and weights are scaled by 1/sqrt(fan-in),
 * so outputs are O(1) and S = 1 for them. Each tolerance is stated at its
 * op's case macro below with why. Finite differences: eps and tolerance per
 * op; the error is |numeric - analytic| / max(1, max |analytic|).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/isa.h"
#include "harness.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "cpu/blas.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/resize.h"
#include "ops/softmax.h"
#include "ops/timestep.h"
#include "ops/ddim_step.h"
#include "ops/image.h"
#include "ops/matmul.h"
#include "ops/rows.h"
#include "sched/ddim.h"

/* In-place cases (hx_case.inplace): dst takes src's values, then the op runs
 * with dst as both its input and its output. The op's own input tensor
 * stays intact, so the finite differences still see a pure function. */
static const ap_tensor *alias(hx_state *s, const ap_tensor *dst, const ap_tensor *src) {
    return hx_copy(s, dst, src); /* host or device memory, as the case runs */
}

/* ---- conv2d: p = {B, C, H, W, O, k, stride, pad, bias, frozen} ----------- */
/* frozen: the backward of a frozen layer (LoRA training's base convs): din
 * only, dw and db NULL, and in a shape-only descriptor (conv2d.h). */

static void conv_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int Ho = (p[2] + 2 * p[7] - p[5]) / p[6] + 1, Wo = (p[3] + 2 * p[7] - p[5]) / p[6] + 1;
    float a = sqrtf(3.0f / (float)(p[1] * p[5] * p[5]));
    int x = hx_in(s, "x", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    int w = hx_in(s, "w", -a, a, HX_DIMS(p[4], p[1], p[5], p[5]));
    int b = p[8] ? hx_in(s, "b", -1, 1, HX_DIMS(p[4])) : -1;
    hx_out(s, "y", HX_DIMS(p[0], p[4], Ho, Wo));
    if (!c->backward) return;
    hx_grad(s, "dx", x);
    if (p[9]) return;
    hx_grad_acc(s, "dw", w);
    if (b >= 0) hx_grad_acc(s, "db", b);
}

static int conv_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    return ap_conv2d_forward(ctx, HX(s, "y"), HX(s, "x"), HX(s, "w"), HX_OPT(s, "b"), c->p[6],
                             c->p[7]);
}

static int conv_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    ap_tensor in = *HX(s, "x");
    if (c->p[9]) in.data = NULL;
    return ap_conv2d_backward(ctx, HX(s, "dx"), HX_OPT(s, "dw"), HX_OPT(s, "db"), &dy, &in,
                              HX(s, "w"), c->p[6], c->p[7]);
}

/* Generic runs im2col + BLAS, AVX2/AVX-512 the packed GEMM (same sums in
 * another order) or Winograd F(2x2, 3x3) (fp32 error ~1.6x im2col's,
 * tests/ops/test_conv2d.c). For K = C*k*k products of O(1/sqrt(K)) terms the
 * rounding difference grows like sqrt(K) ulp of O(1): ~1e-6 at K = 11520;
 * Winograd's transforms add a few ulp more. atol 2e-5 keeps ~10x margin.
 * FD: the conv is linear, so eps 0.5 costs no truncation error and keeps
 * float rounding of the loss small; tolerance 1e-3. */
#define CONV(label_, B, C, H, W, O, k, st, pad, bias, ...)                                 \
    CONV_(label_, B, C, H, W, O, k, st, pad, bias, 0, __VA_ARGS__)
#define CONV_FROZEN(label_, B, C, H, W, O, k, st, pad, bias, ...)                          \
    CONV_(label_, B, C, H, W, O, k, st, pad, bias, 1, __VA_ARGS__)
#define CONV_(label_, B, C, H, W, O, k, st, pad, bias, frozen, ...)                        \
    {.op = "conv2d", .label = label_, .p = {B, C, H, W, O, k, st, pad, bias, frozen},    \
     .setup = conv_setup, .forward = conv_forward, .backward = conv_backward,            \
     .atol = 2e-5, .rtol = 1e-4, .gatol = 2e-5, .grtol = 1e-4, .fd_eps = 0.5,             \
     .fd_tol = 1e-3, __VA_ARGS__}

/* ---- linear: p = {B, L, I, O, bias, frozen}; B = 0: in is (L, I) -------- */
/* frozen: din only (a frozen projection under a LoRA adapter). */

static void linear_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    float a = sqrtf(3.0f / (float)p[2]);
    int x = p[0] ? hx_in(s, "x", -1, 1, HX_DIMS(p[0], p[1], p[2]))
                 : hx_in(s, "x", -1, 1, HX_DIMS(p[1], p[2]));
    int w = hx_in(s, "w", -a, a, HX_DIMS(p[3], p[2]));
    int b = p[4] ? hx_in(s, "b", -1, 1, HX_DIMS(p[3])) : -1;
    if (p[0]) hx_out(s, "y", HX_DIMS(p[0], p[1], p[3]));
    else hx_out(s, "y", HX_DIMS(p[1], p[3]));
    if (!c->backward) return;
    hx_grad(s, "dx", x);
    if (p[5]) return;
    hx_grad_acc(s, "dw", w);
    if (b >= 0) hx_grad_acc(s, "db", b);
}

static int linear_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    return ap_linear_forward(ctx, HX(s, "y"), HX(s, "x"), HX(s, "w"), HX_OPT(s, "b"));
}

static int linear_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    return ap_linear_backward(ctx, HX(s, "dx"), HX_OPT(s, "dw"), HX_OPT(s, "db"), &dy, HX(s, "x"),
                              HX(s, "w"));
}

/* OpenBLAS on generic and AVX2, the packed GEMM on AVX-512 (N, K >= 16):
 * sums of K products in another order, same scale argument as conv2d. dw
 * sums over all rows (up to 4096 in --full). FD: linear, eps 0.5. */
#define LINEAR(label_, B, L, I, O, bias, ...) LINEAR_(label_, B, L, I, O, bias, 0, __VA_ARGS__)
#define LINEAR_FROZEN(label_, B, L, I, O, bias, ...)                                      \
    LINEAR_(label_, B, L, I, O, bias, 1, __VA_ARGS__)
#define LINEAR_(label_, B, L, I, O, bias, frozen, ...)                                    \
    {.op = "linear", .label = label_, .p = {B, L, I, O, bias, frozen},                    \
     .setup = linear_setup,                                                               \
     .forward = linear_forward, .backward = linear_backward, .atol = 2e-5, .rtol = 1e-4, \
     .gatol = 5e-5, .grtol = 1e-4, .fd_eps = 0.5, .fd_tol = 1e-3, __VA_ARGS__}

/* ---- gemm (blas.h): p = {ta, tb, M, N, K, 4 beta, items, pad}, f = alpha */
/* C (items*M, N) = alpha op(A) op(B) + beta C, row-major, every leading
 * dimension `pad` floats wider than its rows (the pad columns of C must stay
 * as they were). items > 0: ap_gemm_items (A not transposed). beta = 0
 * starts C poisoned (BLAS must not read it), else from a seeded value. */

static void gemm_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int64_t rows = (int64_t)p[2] * (p[6] ? p[6] : 1), pad = p[7];
    float a = sqrtf(3.0f / (float)p[4]);
    if (p[0]) hx_in(s, "A", -1, 1, HX_DIMS(p[4], rows + pad));
    else hx_in(s, "A", -1, 1, HX_DIMS(rows, p[4] + pad));
    if (p[1]) hx_in(s, "B", -a, a, HX_DIMS(p[3], p[4] + pad));
    else hx_in(s, "B", -a, a, HX_DIMS(p[4], p[3] + pad));
    if (p[5] || pad) hx_out_init(s, "C", HX_DIMS(rows, p[3] + pad));
    else hx_out(s, "C", HX_DIMS(rows, p[3]));
}

static int gemm_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const int *p = c->p;
    const ap_tensor *A = HX(s, "A"), *B = HX(s, "B"), *C = HX(s, "C");
    int lda = (int)A->shape[1], ldb = (int)B->shape[1], ldc = (int)C->shape[1];
    float beta = 0.25f * (float)p[5];
    if (p[6])
        ap_gemm_items(ctx, p[6], p[1], p[2], p[3], p[4], c->f, A->data, lda, B->data, ldb,
                      beta, C->data, ldc);
    else
        ap_gemm(ctx, p[0], p[1], p[2], p[3], p[4], c->f, A->data, lda, B->data, ldb, beta,
                C->data, ldc);
    return AP_OK;
}

/* As linear (OpenBLAS or the packed GEMM on AVX-512). Forward only. */
#define GEMM(label_, ta, tb, M, N, K, beta4, items, pad, alpha)                             \
    {.op = "gemm", .label = label_, .p = {ta, tb, M, N, K, beta4, items, pad}, .f = alpha, \
     .setup = gemm_setup, .forward = gemm_forward, .atol = 2e-5, .rtol = 1e-4,               \
     .host_only = "ap_gemm is the CPU backend's internal GEMM on host pointers"}

/* ---- attention: p = {B, Lq, Lk, H, D, causal, qk range}; range 0: 2 ------- */

static void attn_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int64_t HD = (int64_t)p[3] * p[4];
    float r = p[6] ? (float)p[6] : 2.0f;
    int q = hx_in(s, "q", -r, r, HX_DIMS(p[0], p[1], HD));
    int k = hx_in(s, "k", -r, r, HX_DIMS(p[0], p[2], HD));
    int v = hx_in(s, "v", -1, 1, HX_DIMS(p[0], p[2], HD));
    hx_out(s, "out", HX_DIMS(p[0], p[1], HD));
    hx_aux(s, "lse", HX_DIMS(p[0], p[3], p[1]));
    if (!c->backward) return;
    hx_grad(s, "dq", q);
    hx_grad(s, "dk", k);
    hx_grad(s, "dv", v);
}

static int attn_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    return ap_attention_forward(ctx, HX(s, "out"), HX(s, "lse"), HX(s, "q"), HX(s, "k"),
                                HX(s, "v"), c->p[3], 1.0f / sqrtf((float)c->p[4]), c->p[5]);
}

static int attn_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dout = hx_dout(s, hx_find(s, "out"));
    return ap_attention_backward(ctx, HX(s, "dq"), HX(s, "dk"), HX(s, "dv"), &dout, HX(s, "q"),
                                 HX(s, "k"), HX(s, "v"), HX(s, "out"), HX(s, "lse"), c->p[3],
                                 1.0f / sqrtf((float)c->p[4]), c->p[5]);
}

/* Online softmax over key tiles with each variant's exp and dot products:
 * tests/ops/test_attention.c sees ~1e-6 against PyTorch on O(1) values and
 * allows 2e-5 + 1e-4 rel; the same here. FD: eps 1e-2 (softmax curvature
 * gives ~1e-5 truncation), tolerance 2e-3. */
#define ATTN(label_, B, Lq, Lk, H, D, causal, ...)                                        \
    ATTN_(label_, B, Lq, Lk, H, D, causal, 0, __VA_ARGS__)
#define ATTN_RANGE(label_, B, Lq, Lk, H, D, causal, range, ...)                           \
    ATTN_(label_, B, Lq, Lk, H, D, causal, range, __VA_ARGS__)
#define ATTN_(label_, B, Lq, Lk, H, D, causal, range, ...)                                \
    {.op = "attention", .label = label_, .p = {B, Lq, Lk, H, D, causal, range},           \
     .setup = attn_setup, .forward = attn_forward, .backward = attn_backward,             \
     .atol = 2e-5, .rtol = 1e-4, .gatol = 2e-5, .grtol = 1e-4, .fd_eps = 1e-2,            \
     .fd_tol = 2e-3, __VA_ARGS__}

/* ---- group_norm: p = {B, C, H, W, groups, affine, offset}; H = 0: (B, C) -- */

static void gn_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    float off = (float)p[6];
    int x = p[2] ? hx_in(s, "x", off - 1, off + 1, HX_DIMS(p[0], p[1], p[2], p[3]))
                 : hx_in(s, "x", off - 1, off + 1, HX_DIMS(p[0], p[1]));
    int g = p[5] ? hx_in(s, "gamma", 0.5f, 1.5f, HX_DIMS(p[1])) : -1;
    int b = p[5] ? hx_in(s, "beta", -1, 1, HX_DIMS(p[1])) : -1;
    if (p[2]) hx_out(s, "y", HX_DIMS(p[0], p[1], p[2], p[3]));
    else hx_out(s, "y", HX_DIMS(p[0], p[1]));
    hx_aux(s, "mean", HX_DIMS(p[0], p[4]));
    hx_aux(s, "rstd", HX_DIMS(p[0], p[4]));
    if (!c->backward) return;
    hx_grad(s, "dx", x);
    if (g >= 0) hx_grad_acc(s, "dgamma", g);
    if (b >= 0) hx_grad_acc(s, "dbeta", b);
}

static int gn_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *x = c->inplace ? alias(s, HX(s, "y"), HX(s, "x")) : HX(s, "x");
    return ap_group_norm_forward(ctx, HX(s, "y"), HX(s, "mean"), HX(s, "rstd"), x,
                                 HX_OPT(s, "gamma"), HX_OPT(s, "beta"), c->p[4], c->f);
}

static int gn_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    return ap_group_norm_backward(ctx, HX(s, "dx"), HX_OPT(s, "dgamma"), HX_OPT(s, "dbeta"),
                                  &dy, HX(s, "x"), HX(s, "mean"), HX(s, "rstd"),
                                  HX_OPT(s, "gamma"), c->p[4]);
}

/* Statistics in float blocks and double across blocks (norm.h): outputs
 * agree to a few ulp of O(1); rstd of a one-element group is 1/sqrt(eps) ~
 * 316 (hence rtol). atol 1e-5 + rtol 1e-5. dgamma/dbeta sum over B*H*W
 * (up to 4096) O(1) terms: atol 1e-4. FD: eps 1e-2, tolerance 2e-3. */
#define GN(label_, B, C, H, W, G, affine, off, eps_, ...)                                  \
    {.op = "group_norm", .label = label_, .p = {B, C, H, W, G, affine, off}, .f = eps_,  \
     .setup = gn_setup, .forward = gn_forward, .backward = gn_backward, .atol = 1e-5,    \
     .rtol = 1e-5, .gatol = 1e-4, .grtol = 1e-5, .fd_eps = 1e-2, .fd_tol = 2e-3,         \
     __VA_ARGS__}

/* ---- layer_norm: p = {B, L, C, affine} ----------------------------------- */

static void ln_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int x = hx_in(s, "x", -1, 1, HX_DIMS(p[0], p[1], p[2]));
    int g = p[3] ? hx_in(s, "gamma", 0.5f, 1.5f, HX_DIMS(p[2])) : -1;
    int b = p[3] ? hx_in(s, "beta", -1, 1, HX_DIMS(p[2])) : -1;
    hx_out(s, "y", HX_DIMS(p[0], p[1], p[2]));
    hx_aux(s, "mean", HX_DIMS((int64_t)p[0] * p[1]));
    hx_aux(s, "rstd", HX_DIMS((int64_t)p[0] * p[1]));
    if (!c->backward) return;
    hx_grad(s, "dx", x);
    if (g >= 0) hx_grad_acc(s, "dgamma", g);
    if (b >= 0) hx_grad_acc(s, "dbeta", b);
}

static int ln_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *x = c->inplace ? alias(s, HX(s, "y"), HX(s, "x")) : HX(s, "x");
    return ap_layer_norm_forward(ctx, HX(s, "y"), HX(s, "mean"), HX(s, "rstd"), x,
                                 HX_OPT(s, "gamma"), HX_OPT(s, "beta"), c->f);
}

static int ln_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    return ap_layer_norm_backward(ctx, HX(s, "dx"), HX_OPT(s, "dgamma"), HX_OPT(s, "dbeta"),
                                  &dy, HX(s, "x"), HX(s, "mean"), HX(s, "rstd"),
                                  HX_OPT(s, "gamma"));
}

/* As group_norm. */
#define LN(label_, B, L, C, affine, eps_, ...)                                             \
    {.op = "layer_norm", .label = label_, .p = {B, L, C, affine}, .f = eps_,              \
     .setup = ln_setup, .forward = ln_forward, .backward = ln_backward, .atol = 1e-5,    \
     .rtol = 1e-5, .gatol = 1e-4, .grtol = 1e-5, .fd_eps = 1e-2, .fd_tol = 2e-3,         \
     __VA_ARGS__}

/* ---- softmax: p = {rows, N, range} ---------------------------------------- */

static void softmax_setup(hx_state *s, const hx_case *c) {
    float r = (float)c->p[2];
    int x = hx_in(s, "x", -r, r, HX_DIMS(c->p[0], c->p[1]));
    hx_out(s, "y", HX_DIMS(c->p[0], c->p[1]));
    if (c->backward) hx_grad(s, "dx", x);
}

static int softmax_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *x = c->inplace ? alias(s, HX(s, "y"), HX(s, "x")) : HX(s, "x");
    return ap_softmax_forward(ctx, HX(s, "y"), x);
}

static int softmax_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    const ap_tensor *dout = c->inplace ? alias(s, HX(s, "dx"), &dy) : &dy;
    return ap_softmax_backward(ctx, HX(s, "dx"), dout, HX(s, "y"));
}

/* Probabilities in [0, 1]; the variants' exp is held to 1 ulp (softmax.h),
 * the row sum differs in order: atol 1e-6 + rtol 1e-5. FD: eps 1e-2. */
#define SOFTMAX(label_, rows, N, range, ...)                                               \
    {.op = "softmax", .label = label_, .p = {rows, N, range}, .setup = softmax_setup,     \
     .forward = softmax_forward, .backward = softmax_backward, .atol = 1e-6,              \
     .rtol = 1e-5, .gatol = 1e-6, .grtol = 1e-5, .fd_eps = 1e-2, .fd_tol = 2e-3,          \
     __VA_ARGS__}

/* ---- activations: p = {n0, n1, n2, kind, range}; range 0: 6 --------------- */

enum { ACT_SILU, ACT_GELU_ERF, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_GEGLU };

static void act_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int64_t n_out = p[3] == ACT_GEGLU ? p[2] / 2 : p[2];
    float r = p[4] ? (float)p[4] : 6.0f;
    int x = hx_in(s, "x", -r, r, HX_DIMS(p[0], p[1], p[2]));
    hx_out(s, "y", HX_DIMS(p[0], p[1], n_out));
    if (c->backward) hx_grad(s, "dx", x);
}

static int act_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *y = HX(s, "y"), *x = HX(s, "x");
    if (c->inplace) x = alias(s, y, x); /* not GEGLU: its out is half its in */
    switch (c->p[3]) {
    case ACT_SILU: return ap_silu_forward(ctx, y, x);
    case ACT_GELU_ERF: return ap_gelu_forward(ctx, y, x, 0);
    case ACT_GELU_TANH: return ap_gelu_forward(ctx, y, x, 1);
    case ACT_QUICK_GELU: return ap_quick_gelu_forward(ctx, y, x);
    default: return ap_geglu_forward(ctx, y, x);
    }
}

static int act_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    const ap_tensor *dx = HX(s, "dx"), *x = HX(s, "x"), *dout = &dy;
    if (c->inplace) dout = alias(s, dx, &dy);
    switch (c->p[3]) {
    case ACT_SILU: return ap_silu_backward(ctx, dx, dout, x);
    case ACT_GELU_ERF: return ap_gelu_backward(ctx, dx, dout, x, 0);
    case ACT_GELU_TANH: return ap_gelu_backward(ctx, dx, dout, x, 1);
    case ACT_QUICK_GELU: return ap_quick_gelu_backward(ctx, dx, dout, x);
    default: return ap_geglu_backward(ctx, dx, dout, x);
    }
}

/* Pointwise; the variants' exp/erf/tanh differ by a few ulp on inputs in
 * [-6, 6] (outputs up to 6): atol 2e-6 + rtol 1e-5. FD: eps 1e-2
 * (third derivatives are O(1): truncation ~2e-5), tolerance 1e-3. */
#define ACT(op_, label_, n0, n1, n2, kind, ...) ACT_(op_, label_, n0, n1, n2, kind, 0, __VA_ARGS__)
#define ACT_RANGE(op_, label_, n0, n1, n2, kind, range, ...)                             \
    ACT_(op_, label_, n0, n1, n2, kind, range, __VA_ARGS__)
#define ACT_(op_, label_, n0, n1, n2, kind, range, ...)                                   \
    {.op = op_, .label = label_, .p = {n0, n1, n2, kind, range}, .setup = act_setup,      \
     .forward = act_forward, .backward = act_backward, .atol = 2e-6, .rtol = 1e-5,        \
     .gatol = 2e-6, .grtol = 1e-5, .fd_eps = 1e-2, .fd_tol = 1e-3, __VA_ARGS__}

/* ---- resize: p = {B, C, H, W, Ho, Wo}; Ho = 0: nearest 2x ----------------- */

static void resize_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int x = hx_in(s, "x", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    if (p[4]) hx_out(s, "y", HX_DIMS(p[0], p[1], p[4], p[5]));
    else hx_out(s, "y", HX_DIMS(p[0], p[1], 2 * p[2], 2 * p[3]));
    if (c->backward) hx_grad(s, "dx", x);
}

static int resize_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    return c->p[4] ? ap_resize_bilinear_forward(ctx, HX(s, "y"), HX(s, "x"))
                   : ap_upsample_nearest2x_forward(ctx, HX(s, "y"), HX(s, "x"));
}

static int resize_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    return c->p[4] ? ap_resize_bilinear_backward(ctx, HX(s, "dx"), &dy)
                   : ap_upsample_nearest2x_backward(ctx, HX(s, "dx"), &dy);
}

/* Bilinear: same weights and (PyTorch's) order on every variant: 1 ulp
 * allowed for contraction into FMA. Nearest: a copy and sums of 4. FD:
 * linear, eps 0.5. */
#define RESIZE(op_, label_, B, C, H, W, Ho, Wo, ...)                                       \
    {.op = op_, .label = label_, .p = {B, C, H, W, Ho, Wo}, .setup = resize_setup,        \
     .forward = resize_forward, .backward = resize_backward, .atol = 1e-6, .rtol = 1e-6,  \
     .gatol = 1e-6, .grtol = 1e-6, .fd_eps = 0.5, .fd_tol = 1e-4, __VA_ARGS__}

/* ---- timestep embedding: p = {B, dim, flip, max_period, t_max}, f = shift - */

static void ts_setup(hx_state *s, const hx_case *c) {
    int t = hx_in(s, "t", 0, (float)c->p[4], HX_DIMS(c->p[0]));
    hx_out(s, "y", HX_DIMS(c->p[0], c->p[1]));
    if (c->backward) hx_grad(s, "dt", t);
}

static int ts_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    return ap_timestep_embedding_forward(ctx, HX(s, "y"), HX(s, "t"), c->p[2], c->f, 1.0f,
                                         c->p[3]);
}

static int ts_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    return ap_timestep_embedding_backward(ctx, HX(s, "dt"), &dy, HX(s, "t"), c->p[2], c->f,
                                          1.0f, c->p[3]);
}

/* sin/cos of float arguments up to 1000 rad (as PyTorch computes them): the
 * variants share libm; 1e-6. FD: for t up to 1000 the argument t * f_k
 * rounds to ~6e-5, so the loss is smooth only at a coarser scale: eps 0.1
 * (truncation f^3 eps^2 / 6 ~ 2e-3 for f_0 = 1, against max|dt| ~ 10; seen
 * up to 7e-4); for t < 10 eps 1e-2. Tolerance 5e-3 (a wrong gradient is off
 * by O(1)). */
#define TIMESTEP(label_, B, dim, flip, maxp, tmax, shift, eps_, ...)                       \
    {.op = "timestep_embedding", .label = label_, .p = {B, dim, flip, maxp, tmax},        \
     .f = shift, .setup = ts_setup, .forward = ts_forward, .backward = ts_backward,       \
     .atol = 1e-6, .rtol = 1e-6, .gatol = 1e-5, .grtol = 1e-6, .fd_eps = eps_,            \
     .fd_tol = 5e-3, __VA_ARGS__}

/* ---- elementwise: p = {kind, B, C, H, W, C2}, f = scalar ----------------- */

enum { EW_ADD, EW_MUL, EW_SCALE, EW_AXPY, EW_CONCAT, EW_BIAS, EW_TO_NLC, EW_TO_NCHW };

static void ew_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int64_t B = p[1], C = p[2], H = p[3], W = p[4], C2 = p[5];
    int a, b = -1;
    switch (p[0]) {
    case EW_CONCAT:
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, C, H, W));
        b = hx_in(s, "b", -1, 1, HX_DIMS(B, C2, H, W));
        hx_out(s, "y", HX_DIMS(B, C + C2, H, W));
        break;
    case EW_BIAS:
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, C, H, W));
        b = hx_in(s, "b", -1, 1, HX_DIMS(B, C));
        hx_out(s, "y", HX_DIMS(B, C, H, W));
        break;
    case EW_TO_NLC:
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, C, H, W));
        hx_out(s, "y", HX_DIMS(B, H * W, C));
        break;
    case EW_TO_NCHW:
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, H * W, C));
        hx_out(s, "y", HX_DIMS(B, C, H, W));
        break;
    case EW_AXPY: /* y += f * a: y starts from a seeded value */
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, C, H, W));
        hx_out_init(s, "y", HX_DIMS(B, C, H, W));
        break;
    default:
        a = hx_in(s, "a", -1, 1, HX_DIMS(B, C, H, W));
        if (p[0] != EW_SCALE) b = hx_in(s, "b", -1, 1, HX_DIMS(B, C, H, W));
        hx_out(s, "y", HX_DIMS(B, C, H, W));
    }
    if (!c->backward) return;
    hx_grad(s, "da", a);
    if (b >= 0) hx_grad(s, "db", b);
}

static int ew_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *y = HX(s, "y"), *a = HX(s, "a"), *b = HX_OPT(s, "b");
    if (c->inplace) a = alias(s, y, a); /* add, mul, scale, channel bias */
    switch (c->p[0]) {
    case EW_ADD: return ap_add_forward(ctx, y, a, b);
    case EW_MUL: return ap_mul_forward(ctx, y, a, b);
    case EW_SCALE: return ap_scale_forward(ctx, y, a, c->f);
    case EW_AXPY: return ap_axpy(ctx, y, c->f, a);
    case EW_CONCAT: return ap_concat_channels_forward(ctx, y, a, b);
    case EW_BIAS: return ap_add_channel_bias_forward(ctx, y, a, b);
    case EW_TO_NLC: return ap_nchw_to_nlc_forward(ctx, y, a);
    default: return ap_nlc_to_nchw_forward(ctx, y, a);
    }
}

static int ew_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor dy = hx_dout(s, hx_find(s, "y"));
    const ap_tensor *da = HX(s, "da"), *db = HX_OPT(s, "db"), *dout = &dy;
    if (c->inplace) dout = alias(s, da, &dy); /* add, mul, scale, channel bias */
    switch (c->p[0]) {
    case EW_ADD: return ap_add_backward(ctx, da, db, dout);
    case EW_MUL: return ap_mul_backward(ctx, da, db, dout, HX(s, "a"), HX(s, "b"));
    case EW_SCALE: return ap_scale_backward(ctx, da, dout, c->f);
    case EW_CONCAT: return ap_concat_channels_backward(ctx, da, db, &dy);
    case EW_BIAS: return ap_add_channel_bias_backward(ctx, da, db, dout);
    case EW_TO_NLC: return ap_nchw_to_nlc_backward(ctx, da, &dy);
    default: return ap_nlc_to_nchw_backward(ctx, da, &dy);
    }
}

/* One rounding per element (a sum of H*W for dbias, in double): exact but
 * for FMA contraction, 1 ulp: 1e-6 rel. FD: linear (mul: bilinear), eps 0.5. */
#define EW(op_, label_, kind, B, C, H, W, C2, scal, bwd, ...)                               \
    {.op = op_, .label = label_, .p = {kind, B, C, H, W, C2}, .f = scal,                  \
     .setup = ew_setup, .forward = ew_forward, .backward = bwd, .atol = 1e-7,            \
     .rtol = 1e-6, .gatol = 1e-7, .grtol = 1e-6, .fd_eps = 0.5, .fd_tol = 1e-4,          \
     __VA_ARGS__}

/* ---- the table ------------------------------------------------------------ */

/* ---- matmul: p = {ta, tb, M, N, K, beta, items, bf16}, f = alpha --------- */
/* a (M, K) or (K, M) with ta, as (M/2, 2, K) when M is even and not items
 * (leading dims collapse into rows); items > 0: ap_matmul_items, a (items,
 * M, K), out (items, M, N). beta 1 starts out from a seeded value, beta 0
 * from NaN (it must not be read). */

static void mm_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int64_t M = p[2], N = p[3], K = p[4];
    float a = sqrtf(3.0f / (float)K);
    if (p[6]) hx_in(s, "a", -1, 1, HX_DIMS(p[6], M, K));
    else if (p[0]) hx_in(s, "a", -1, 1, HX_DIMS(K, M));
    else if (M % 2 == 0) hx_in(s, "a", -1, 1, HX_DIMS(M / 2, 2, K));
    else hx_in(s, "a", -1, 1, HX_DIMS(M, K));
    if (p[1]) hx_in(s, "b", -a, a, HX_DIMS(N, K));
    else hx_in(s, "b", -a, a, HX_DIMS(K, N));
    if (p[6] && p[5]) hx_out_init(s, "out", HX_DIMS(p[6], M, N));
    else if (p[6]) hx_out(s, "out", HX_DIMS(p[6], M, N));
    else if (p[5]) hx_out_init(s, "out", HX_DIMS(M, N));
    else hx_out(s, "out", HX_DIMS(M, N));
    if (p[7]) hx_aux(s, "b_bf16", HX_DIMS(N * K / 2)); /* N*K even: bf16 pairs */
}

static int mm_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const int *p = c->p;
    const ap_tensor *b = HX(s, "b");
    ap_tensor b16;
    if (p[7]) { /* b as a bf16 weight, converted by ap_copy into the aux's storage */
        b16 = ap_tensor_of(HX(s, "b_bf16")->data, AP_BF16, b->device, b->ndim, b->shape);
        int rc = ap_copy(ctx, &b16, b);
        if (rc != AP_OK) return rc;
        b = &b16;
    }
    if (p[6])
        return ap_matmul_items(ctx, HX(s, "out"), HX(s, "a"), b, p[1], c->f, (float)p[5]);
    return ap_matmul(ctx, HX(s, "out"), HX(s, "a"), b, p[0], p[1], c->f, (float)p[5]);
}

/* One GEMM (ap_gemm / ap_gemm_items): as gemm. Forward only (matmul.h: no
 * backward of its own). */
#define MATMUL(label_, ta, tb, M, N, K, beta, items, alpha, ...)                          \
    MATMUL_(label_, ta, tb, M, N, K, beta, items, alpha, 0, __VA_ARGS__)
#define MATMUL_(label_, ta, tb, M, N, K, beta, items, alpha, bf16, ...)                   \
    {.op = "matmul", .label = label_, .p = {ta, tb, M, N, K, beta, items, bf16},          \
     .f = alpha,                                                                          \
     .setup = mm_setup, .forward = mm_forward, .atol = 2e-5, .rtol = 1e-4, __VA_ARGS__}
/* b in bf16 (p[7]; the aux b_bf16 holds its bf16 pairs, compared as floats):
 * both sides multiply by the same bf16 values, so the fp32 tolerance holds
 * unless a variant also rounds a (an avx512bf16 dot product would). */
/* On CUDA a bf16 b takes the tensor-core path, which rounds a to bf16 too
 * (kernels/cuda_gemm.cu): ~2^-9 relative per product, hence 1e-2. */
#define MATMUL_BF16(label_, ta, tb, M, N, K, beta, items, alpha, ...)                     \
    MATMUL_(label_, ta, tb, M, N, K, beta, items, alpha, 1, .dev_atol = 1e-2,             \
            .dev_rtol = 1e-2, __VA_ARGS__)

/* ---- ddim_update: p = {B, C, H, W, step, noise, clip, inplace, vpred} ----- */
/* Scalars of step `step` of SD v1.5's 50-step schedule (ap_ddim_config_sd15,
 * ap_ddim_coeffs); with noise, eta 1 (sigma from the step's variance, as
 * diffusers); clip: clamp x0 to +-1 (x in +-2 so that many elements clamp).
 * inplace 1: x_prev aliases x (forward), dx aliases dx_prev (backward);
 * inplace 2: x_prev aliases eps, deps aliases dx_prev. vpred 1: eps holds
 * the model's v (prediction_type v_prediction, docs/ddim.md §4). */

static ap_ddim_scalars ddim_scalars(const hx_case *c) {
    static ap_ddim sched;
    static int ready;
    if (!ready) {
        ap_ddim_config cfg;
        ap_ddim_config_sd15(&cfg);
        if (ap_ddim_init(&sched, &cfg, 50) != AP_OK) abort();
        ready = 1;
    }
    ap_ddim_coef k;
    if (ap_ddim_coeffs(&sched, c->p[4], &k) != AP_OK) abort();
    ap_ddim_scalars sc = {k.sqrt_alpha_t, k.sqrt_beta_t, k.sqrt_alpha_prev, k.sqrt_dir,
                          k.sigma, c->p[6], 1.0f, (int)c->p[8]};
    if (c->p[5]) {
        float var = (1.0f - k.alpha_prev) / (1.0f - k.alpha_t) * (1.0f - k.alpha_t / k.alpha_prev);
        sc.sigma = sqrtf(var);
        sc.sqrt_dir = sqrtf(1.0f - k.alpha_prev - sc.sigma * sc.sigma);
    }
    return sc;
}

static void ddim_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    float r = p[6] ? 2.0f : 1.0f;
    int x = hx_in(s, "x", -r, r, HX_DIMS(p[0], p[1], p[2], p[3]));
    int e = hx_in(s, "eps", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    if (p[5]) hx_in(s, "noise", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    hx_out(s, "x_prev", HX_DIMS(p[0], p[1], p[2], p[3]));
    if (!c->backward) return;
    hx_grad(s, "dx", x);
    hx_grad(s, "deps", e);
}

static int ddim_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_ddim_scalars sc = ddim_scalars(c);
    const ap_tensor *y = HX(s, "x_prev"), *x = HX(s, "x"), *e = HX(s, "eps");
    if (c->p[7] == 1) x = alias(s, y, x);
    if (c->p[7] == 2) e = alias(s, y, e);
    return ap_ddim_update_forward(ctx, y, x, e, HX_OPT(s, "noise"), &sc);
}

static int ddim_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_ddim_scalars sc = ddim_scalars(c);
    ap_tensor g = hx_dout(s, hx_find(s, "x_prev"));
    const ap_tensor *dy = &g;
    if (c->p[7] == 1) dy = alias(s, HX(s, "dx"), &g);
    if (c->p[7] == 2) dy = alias(s, HX(s, "deps"), &g);
    return ap_ddim_update_backward(ctx, HX(s, "dx"), HX(s, "deps"), dy,
                                   c->p[6] ? HX(s, "x") : NULL, c->p[6] ? HX(s, "eps") : NULL,
                                   &sc);
}

/* One float32 expression per element in a fixed order (ddim_step.h: bit
 * for bit with torch): the variants may differ only by FMA contraction,
 * 1 ulp of O(1/sqrt_alpha_t) ~ O(10) values: atol 1e-6 + rtol 1e-6 on S.
 * FD: linear between clamp kinks, eps 1e-3 (x0 moves by eps/sqrt_alpha_t,
 * a kink within reach at some point is unlikely), tolerance 1e-3. */
#define DDIM(label_, B, C, H, W, step, noise, clip, inpl, ...)                             \
    {.op = "ddim_update", .label = label_, .p = {B, C, H, W, step, noise, clip, inpl},    \
     .setup = ddim_setup, .forward = ddim_forward, .backward = ddim_backward,             \
     .atol = 1e-6, .rtol = 1e-6, .gatol = 1e-6, .grtol = 1e-6, .fd_eps = 1e-3,            \
     .fd_tol = 1e-3, __VA_ARGS__}

/* The same with v prediction. */
#define DDIM_V(label_, B, C, H, W, step, noise, clip, inpl, ...)                           \
    {.op = "ddim_update", .label = label_, .p = {B, C, H, W, step, noise, clip, inpl, 1},  \
     .setup = ddim_setup, .forward = ddim_forward, .backward = ddim_backward,             \
     .atol = 1e-6, .rtol = 1e-6, .gatol = 1e-6, .grtol = 1e-6, .fd_eps = 1e-3,            \
     .fd_tol = 1e-3, __VA_ARGS__}

/* ---- guidance: p = {B, C, H, W, inplace}, f = guidance scale -------------- */
/* inplace 1: eps aliases eps_u, deps_u aliases deps; 2: eps_c, deps_c. */

static void guid_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int u = hx_in(s, "eps_u", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    int k = hx_in(s, "eps_c", -1, 1, HX_DIMS(p[0], p[1], p[2], p[3]));
    hx_out(s, "eps", HX_DIMS(p[0], p[1], p[2], p[3]));
    if (!c->backward) return;
    hx_grad(s, "deps_u", u);
    hx_grad(s, "deps_c", k);
}

static int guid_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const ap_tensor *y = HX(s, "eps"), *u = HX(s, "eps_u"), *k = HX(s, "eps_c");
    if (c->p[4] == 1) u = alias(s, y, u);
    if (c->p[4] == 2) k = alias(s, y, k);
    return ap_guidance_forward(ctx, y, u, k, c->f);
}

static int guid_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    ap_tensor g = hx_dout(s, hx_find(s, "eps"));
    const ap_tensor *d = &g;
    if (c->p[4] == 1) d = alias(s, HX(s, "deps_u"), &g);
    if (c->p[4] == 2) d = alias(s, HX(s, "deps_c"), &g);
    return ap_guidance_backward(ctx, HX(s, "deps_u"), HX(s, "deps_c"), d, c->f);
}

/* Two float ops per element in main.py's order: FMA contraction at most,
 * 1 ulp of values up to ~15 (guidance 7.5): atol 1e-6 on S. FD: linear,
 * eps 0.5. */
#define GUIDANCE(label_, B, C, H, W, g, inpl, ...)                                          \
    {.op = "guidance", .label = label_, .p = {B, C, H, W, inpl}, .f = g,                  \
     .setup = guid_setup, .forward = guid_forward, .backward = guid_backward,             \
     .atol = 1e-6, .rtol = 1e-6, .gatol = 1e-6, .grtol = 1e-6, .fd_eps = 0.5,             \
     .fd_tol = 1e-4, __VA_ARGS__}

/* ---- rows.h and image.h: p = {kind, n0, n1, n2, k0, k1, ...}, f = scalar -- */

enum {
    RW_GATHER, RW_SUM, RW_BCAST, RW_L2NORM, RW_ROWDOT, RW_ABSDIFF, RW_AFFINE, RW_DIVIDE,
    RW_NONFINITE, RW_COPY, IM_UNIT, IM_NORMALIZE, IM_COLOUR
};

/* gather_rows indices: m of them over N rows, j*5+2 mod N (repeats once
 * m > N; with N = 2 every other index repeats). */
static void gather_idx(int *idx, int m, int N) {
    for (int j = 0; j < m; j++) idx[j] = (j * 5 + 2) % N;
}

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* kinds: GATHER {N, D, m}; SUM {R, D, acc}; BCAST {R, L, D, b has lead 1};
 * L2NORM {B, D}, f eps; ROWDOT {B, D}; ABSDIFF {n, range}, f target;
 * AFFINE {n, b*4}, f a; DIVIDE {n}, f s; NONFINITE {n, planted}; COPY
 * {n0, n1}; UNIT {B, C, H, W}; NORMALIZE {B, 3, H, W}; COLOUR {B, 3, H, W}. */
static void rw_setup(hx_state *s, const hx_case *c) {
    const int *p = c->p;
    int x;
    switch (p[0]) {
    case RW_GATHER:
        x = hx_in(s, "in", -1, 1, HX_DIMS(p[1], p[2]));
        hx_out(s, "out", HX_DIMS(p[3], p[2]));
        break;
    case RW_SUM:
        hx_in(s, "in", -1, 1, HX_DIMS(p[1], p[2]));
        if (p[3]) hx_out_init(s, "out", HX_DIMS(p[2]));
        else hx_out(s, "out", HX_DIMS(p[2]));
        return;
    case RW_BCAST:
        hx_in(s, "a", -1, 1, HX_DIMS(p[1], p[2], p[3]));
        if (p[4]) hx_in(s, "b", -1, 1, HX_DIMS(1, p[2], p[3]));
        else hx_in(s, "b", -1, 1, HX_DIMS(p[2], p[3]));
        hx_out(s, "out", HX_DIMS(p[1], p[2], p[3]));
        return;
    case RW_L2NORM:
        x = hx_in(s, "v", -1, 1, HX_DIMS(p[1], p[2]));
        hx_out(s, "u", HX_DIMS(p[1], p[2]));
        hx_aux(s, "norm", HX_DIMS(p[1]));
        break;
    case RW_ROWDOT:
        x = hx_in(s, "a", -1, 1, HX_DIMS(p[1], p[2]));
        hx_in(s, "b", -1, 1, HX_DIMS(p[1], p[2]));
        hx_out(s, "out", HX_DIMS(p[1]));
        if (c->backward) {
            hx_grad(s, "da", x);
            hx_grad(s, "db", x + 1);
        }
        return;
    case RW_ABSDIFF:
        x = hx_in(s, "x", -(float)p[2], (float)p[2], HX_DIMS(p[1]));
        hx_out(s, "out", HX_DIMS(p[1]));
        break;
    case RW_AFFINE: case RW_DIVIDE: case RW_COPY:
        x = hx_in(s, "x", -1, 1, HX_DIMS(p[1], p[2] ? p[2] : 1));
        hx_out(s, "out", HX_DIMS(p[1], p[2] ? p[2] : 1));
        break;
    case RW_NONFINITE:
        hx_in(s, "x", -1, 1, HX_DIMS(p[1]));
        hx_aux(s, "planted", HX_DIMS(p[1]));
        hx_out(s, "count", HX_DIMS(1));
        return;
    case IM_COLOUR:
        x = hx_in(s, "image", -1, 1, HX_DIMS(p[1], p[2], p[3], p[4]));
        hx_out(s, "out", HX_DIMS(p[1]));
        break;
    default: /* IM_UNIT, IM_NORMALIZE; unit: x in +-1.5, both clamps */
        x = hx_in(s, "x", p[0] == IM_UNIT ? -1.5f : 0, p[0] == IM_UNIT ? 1.5f : 1,
                  HX_DIMS(p[1], p[2], p[3], p[4]));
        hx_out(s, "out", HX_DIMS(p[1], p[2], p[3], p[4]));
        break;
    }
    if (c->backward) hx_grad(s, "dx", x);
}

static int rw_forward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const int *p = c->p;
    const ap_tensor *out = HX_OPT(s, "out");
    int idx[512];
    switch (p[0]) {
    case RW_GATHER:
        gather_idx(idx, p[3], p[1]);
        return ap_gather_rows(ctx, out, HX(s, "in"), idx, p[3]);
    case RW_SUM: return ap_sum_rows(ctx, out, HX(s, "in"), p[3]);
    case RW_BCAST:
        return ap_add_broadcast_rows(ctx, out, c->inplace ? alias(s, out, HX(s, "a")) : HX(s, "a"),
                                     HX(s, "b"));
    case RW_L2NORM: {
        const ap_tensor *u = HX(s, "u");
        return ap_l2norm_forward(ctx, u, HX(s, "norm"), c->inplace ? alias(s, u, HX(s, "v"))
                                                                    : HX(s, "v"), c->f);
    }
    case RW_ROWDOT: return ap_row_dot_forward(ctx, out, HX(s, "a"), HX(s, "b"));
    case RW_NONFINITE: {
        /* A copy of x with NaN, +inf, -inf planted at spread indices (the
         * input itself must stay as generated). */
        const ap_tensor *t = alias(s, HX(s, "planted"), HX(s, "x"));
        int64_t n = ap_numel(t);
        for (int k = 0; k < p[2]; k++) {
            int64_t i = (int64_t)k * 7919 % n;
            hx_set(s, t, i, k % 3 == 0 ? NAN : k % 3 == 1 ? INFINITY : -INFINITY);
        }
        int rc = ap_count_nonfinite(ctx, HX(s, "count"), t);
        alias(s, t, HX(s, "x")); /* finite again: the aux compare sees NaN as unwritten */
        return rc;
    }
    default: break;
    }
    const ap_tensor *x = HX_OPT(s, "x");
    if (c->inplace) x = alias(s, out, x);
    switch (p[0]) {
    case RW_ABSDIFF: return ap_abs_diff_forward(ctx, out, x, c->f);
    case RW_AFFINE: return ap_affine_forward(ctx, out, x, c->f, 0.25f * (float)p[3]);
    case RW_DIVIDE: return ap_divide_forward(ctx, out, x, c->f);
    case RW_COPY: return ap_copy(ctx, out, x);
    case IM_UNIT: return ap_to_unit_range_forward(ctx, out, x);
    case IM_NORMALIZE: return ap_channel_normalize_forward(ctx, out, x, clip_mean, clip_std);
    default: return ap_colourfulness_forward(ctx, out, HX(s, "image"));
    }
}

static int rw_backward(hx_state *s, ap_ctx *ctx, const hx_case *c) {
    const int *p = c->p;
    int oi = hx_index(s, "out") >= 0 ? hx_find(s, "out") : hx_find(s, "u");
    ap_tensor g = hx_dout(s, oi);
    const ap_tensor *dx = HX_OPT(s, "dx"), *d = &g;
    if (c->inplace) d = alias(s, dx, &g);
    int idx[512];
    switch (p[0]) {
    case RW_GATHER:
        gather_idx(idx, p[3], p[1]);
        return ap_gather_rows_backward(ctx, dx, d, idx, p[3]);
    case RW_L2NORM: return ap_l2norm_backward(ctx, dx, d, HX(s, "u"), HX(s, "norm"), c->f);
    case RW_ROWDOT:
        return ap_row_dot_backward(ctx, HX(s, "da"), HX(s, "db"), d, HX(s, "a"), HX(s, "b"));
    case RW_ABSDIFF: return ap_abs_diff_backward(ctx, dx, d, HX(s, "x"), c->f);
    case RW_DIVIDE: return ap_divide_forward(ctx, dx, d, c->f);
    case IM_UNIT: return ap_to_unit_range_backward(ctx, dx, d, HX(s, "x"));
    case IM_NORMALIZE: return ap_channel_normalize_backward(ctx, dx, d, clip_std);
    default: return ap_colourfulness_backward(ctx, dx, d, HX(s, "image"));
    }
}

/* Data movement (gather, copy, count): exact, tolerance 0. Pointwise
 * arithmetic of one or two float ops (abs_diff, affine, divide,
 * to_unit_range, channel_normalize, broadcast add): FMA contraction at
 * most, 1 ulp: atol 1e-6 + rtol 1e-6 on S (outputs up to ~4 after
 * Normalize's 1/0.26). Sums over rows in index order: the same. FD: linear
 * (or piecewise linear away from the kinks), eps 1e-3, tolerance 1e-3. */
#define ROWS(op_, label_, kind, n0, n1, n2, n3, f_, bwd, ...)                              \
    ROWS_(op_, label_, kind, n0, n1, n2, n3, f_, bwd, 1e-6, 1e-3, 1e-3, __VA_ARGS__)
/* abs_diff with the target 1 or more away from every x (x in +-1): no kink
 * within reach, so eps 1e-2 (at 1e-3 the float rounding of outputs ~10,
 * 1e-6, over 2e-3 is 5e-4 of the tolerance's 1e-3). */
#define ROWS_FAR(op_, label_, kind, n0, n1, n2, n3, f_, bwd, ...)                          \
    ROWS_(op_, label_, kind, n0, n1, n2, n3, f_, bwd, 1e-6, 1e-2, 1e-3, __VA_ARGS__)
#define ROWS_(op_, label_, kind, n0, n1, n2, n3, f_, bwd, tol, fdeps, fdtol, ...)          \
    {.op = op_, .label = label_, .p = {kind, n0, n1, n2, n3}, .f = f_, .setup = rw_setup, \
     .forward = rw_forward, .backward = bwd, .atol = tol, .rtol = tol, .gatol = tol,      \
     .grtol = tol, .fd_eps = fdeps, .fd_tol = fdtol, __VA_ARGS__}
#define ROWS_EXACT(op_, label_, kind, n0, n1, n2, n3, f_, bwd, ...)                        \
    ROWS_(op_, label_, kind, n0, n1, n2, n3, f_, bwd, 0, 1e-3, 1e-3, __VA_ARGS__)
/* Row reductions summed in double and rounded once (l2norm's norm, row_dot,
 * colourfulness): the variants agree to 1 ulp of O(1) outputs; l2norm's
 * backward is a few float ops per element from u and norm: 2 ulp. atol
 * 2e-6 + rtol 2e-6. FD: smooth, eps 1e-3 (curvature ~1/|v| = O(1/sqrt(D))
 * gives ~1e-6 truncation), tolerance 2e-3 (float rounding of a loss of
 * O(sqrt(D)) terms over 2e-3). */
#define ROWS_RED(op_, label_, kind, n0, n1, n2, n3, f_, bwd, ...)                          \
    ROWS_(op_, label_, kind, n0, n1, n2, n3, f_, bwd, 2e-6, 1e-3, 2e-3, __VA_ARGS__)

static const hx_case cases[] = {
    /* conv2d. SD v1.5 UNet: conv_in 4->320, ResNet 3x3 at 320/640/1280,
     * Downsample 3x3 s2, 1x1 shortcut; VAE conv_out 128->3; ViT-H patch
     * embedding 14x14 s14 3->1280. Default: 8x8..32x32 maps. */
    CONV("SD conv_in 3x3 (1,4,16,16)->320", 1, 4, 16, 16, 320, 3, 1, 1, 1),
    CONV("SD res 3x3 (1,320,8,8)->320 winograd", 1, 320, 8, 8, 320, 3, 1, 1, 1,
         .conv_path = AP_CONV_WINOGRAD),
    CONV("SD res 3x3 (1,320,8,8)->320 direct", 1, 320, 8, 8, 320, 3, 1, 1, 1,
         .conv_path = AP_CONV_DIRECT),
    CONV("winograd by size 3x3 (1,64,32,32)->64", 1, 64, 32, 32, 64, 3, 1, 1, 1),
    CONV("SD res 3x3 (1,1280,4,4)->1280", 1, 1280, 4, 4, 1280, 3, 1, 1, 1),
    CONV("SD down 3x3 s2 (1,320,16,16)->320", 1, 320, 16, 16, 320, 3, 2, 1, 1),
    CONV("SD shortcut 1x1 (1,320,8,8)->640", 1, 320, 8, 8, 640, 1, 1, 0, 1),
    CONV("VAE conv_out 3x3 (1,128,16,16)->3", 1, 128, 16, 16, 3, 3, 1, 1, 1),
    CONV("ViT-H patch 14x14 s14 (1,3,28,28)->1280", 1, 3, 28, 28, 1280, 14, 14, 0, 0),
    CONV_FROZEN("frozen din only 3x3 (1,64,32,32)->64", 1, 64, 32, 32, 64, 3, 1, 1, 1),
    CONV_FROZEN("frozen din only s2 (1,320,16,16)->320", 1, 320, 16, 16, 320, 3, 2, 1, 1),
    CONV_FROZEN("frozen din only 1x1 (1,320,8,8)->640", 1, 320, 8, 8, 640, 1, 1, 0, 0),
    CONV("edge 1x1 (1,1,1,1)->1", 1, 1, 1, 1, 1, 1, 1, 0, 1),
    CONV("edge 3x3 pad 1 on 1x1 (1,2,1,1)->3", 1, 2, 1, 1, 3, 3, 1, 1, 1),
    CONV("edge odd 3x3 (2,3,7,5)->5", 2, 3, 7, 5, 5, 3, 1, 1, 1),
    CONV("edge odd 3x3 s2 (1,5,9,11)->7", 1, 5, 9, 11, 7, 3, 2, 1, 0),
    CONV("edge 3x3 pad 0 (1,17,9,10)->13", 1, 17, 9, 10, 13, 3, 1, 0, 1),
    CONV("edge 1x1 s2 (1,33,7,7)->35", 1, 33, 7, 7, 35, 1, 2, 0, 1),
    CONV("edge winograd odd (2,67,9,11)->70", 2, 67, 9, 11, 70, 3, 1, 1, 1,
         .conv_path = AP_CONV_WINOGRAD),
    CONV("SD res 3x3 (1,320,64,64)->320", 1, 320, 64, 64, 320, 3, 1, 1, 1, .full = 1),
    CONV("SD down 3x3 s2 (1,640,32,32)->640", 1, 640, 32, 32, 640, 3, 2, 1, 1, .full = 1),
    CONV("VAE dec 3x3 (1,256,128,128)->256", 1, 256, 128, 128, 256, 3, 1, 1, 1, .full = 1),
    CONV("ViT-H patch 14x14 s14 (1,3,224,224)->1280", 1, 3, 224, 224, 1280, 14, 14, 0, 0,
         .full = 1),

    /* linear. SD attention q/k/v/out at 320, GEGLU proj 320->2560, FF out,
     * cross-attn k/v 768->320, time embedding 320->1280; CLIP-L MLP
     * 768->3072; ViT-H qkv 1280->3840 and MLP 5120->1280. */
    LINEAR("SD to_q (1,256,320)->320", 1, 256, 320, 320, 0),
    LINEAR("SD to_k cross (1,77,768)->320", 1, 77, 768, 320, 0),
    LINEAR("SD geglu proj (1,64,320)->2560", 1, 64, 320, 2560, 1),
    LINEAR("SD ff out (1,64,1280)->320", 1, 64, 1280, 320, 1),
    LINEAR("SD time_emb (2,320)->1280", 0, 2, 320, 1280, 1),
    LINEAR("CLIP-L fc1 (1,77,768)->3072", 1, 77, 768, 3072, 1),
    LINEAR("ViT-H qkv (1,17,1280)->3840", 1, 17, 1280, 3840, 1),
    LINEAR("ViT-H fc2 (1,17,5120)->1280", 1, 17, 5120, 1280, 1),
    LINEAR_FROZEN("frozen din only (1,77,768)->320", 1, 77, 768, 320, 0),
    LINEAR("edge (1,1)->1", 0, 1, 1, 1, 1),
    LINEAR("edge (3,5)->7", 0, 3, 5, 7, 1),
    LINEAR("edge odd packed (2,19,100)->70", 2, 19, 100, 70, 1),
    LINEAR("edge K=15 (1,33,15)->300", 1, 33, 15, 300, 0),
    LINEAR("SD to_q (2,4096,320)->320", 2, 4096, 320, 320, 0, .full = 1),
    LINEAR("ViT-H fc1 (1,257,1280)->5120", 1, 257, 1280, 5120, 1, .full = 1),

    /* gemm: every op's GEMM. The packed path (AVX-512, beta 0 or 1, N, K
     * >= 16, N*K >= 4096) and BLAS; transposes as linear's backward uses
     * them; beta 0 on a poisoned C, 1, 0.5; alpha; items (per-prompt rows
     * of CLIP, 77 each); padded leading dimensions; tiny and odd sizes. */
    GEMM("SD q.k-like (256,320,320) beta 0", 0, 0, 256, 320, 320, 0, 0, 0, 1.0f),
    GEMM("SD dw-like A^T (320,320,256) beta 1", 1, 0, 320, 320, 256, 4, 0, 0, 1.0f),
    GEMM("SD dx-like B^T (256,320,320) beta 1", 0, 1, 256, 320, 320, 4, 0, 0, 1.0f),
    GEMM("A^T B^T (77,768,64) beta 0.5 alpha 0.125", 1, 1, 77, 768, 64, 2, 0, 0, 0.125f),
    GEMM("CLIP items 2x(77,768,768) B^T", 0, 1, 77, 768, 768, 0, 2, 0, 1.0f),
    GEMM("items 3x(5,70,100) beta 1", 0, 0, 5, 70, 100, 4, 3, 0, 1.0f),
    GEMM("padded ld +3 (33,130,47) beta 1", 0, 0, 33, 130, 47, 4, 0, 3, 1.0f),
    GEMM("padded ld +5 A^T B^T (19,40,130)", 1, 1, 19, 40, 130, 0, 0, 5, -0.5f),
    GEMM("edge (1,1,1)", 0, 0, 1, 1, 1, 0, 0, 0, 1.0f),
    GEMM("edge N,K < 16 (100,15,15)", 0, 0, 100, 15, 15, 0, 0, 0, 1.0f),
    GEMM("edge M=1 (1,4096,320) beta 1", 0, 1, 1, 4096, 320, 4, 0, 0, 1.0f),

    /* attention. SD head dim 40/80/160 (8 heads at 320/640/1280 channels),
     * self and cross (77 CLIP tokens); CLIP-L text 12 heads of 64, causal;
     * ViT-H 16 heads of 80. Edge: one token, tiles (128 queries, 256
     * keys) overrun by one, B*H below the thread count (key-split
     * backward), causal on 5 tokens. */
    ATTN("SD self D=40 (1,256,8x40)", 1, 256, 256, 8, 40, 0),
    ATTN("SD cross D=40 (1,256|77,8x40)", 1, 256, 77, 8, 40, 0),
    ATTN("SD self D=80 (1,64,8x80)", 1, 64, 64, 8, 80, 0),
    ATTN("SD self D=160 (1,16,8x160)", 1, 16, 16, 8, 160, 0),
    ATTN("SD cross D=160 (1,16|77,8x160)", 1, 16, 77, 8, 160, 0),
    ATTN("CLIP-L causal D=64 (1,77,12x64)", 1, 77, 77, 12, 64, 1),
    ATTN("ViT-H D=80 (1,65,16x80)", 1, 65, 65, 16, 80, 0),
    ATTN("edge one token (1,1,1x8)", 1, 1, 1, 1, 8, 0),
    ATTN("edge causal one token (1,1,1x8)", 1, 1, 1, 1, 8, 1),
    ATTN("edge tiles+1 (1,129|257,1x40)", 1, 129, 257, 1, 40, 0),
    ATTN("edge causal tiles+1 (1,257,1x24)", 1, 257, 257, 1, 24, 1),
    ATTN("edge causal odd (3,5,2x3)", 3, 5, 5, 2, 3, 1),
    ATTN("edge D=1 (2,7|9,3x1)", 2, 7, 9, 3, 1, 0),
    ATTN_RANGE("peaked scores q,k in +-6 (1,300,2x64)", 1, 300, 300, 2, 64, 0, 6),
    ATTN("SD self D=40 (1,4096,8x40)", 1, 4096, 4096, 8, 40, 0, .full = 1),
    ATTN("ViT-H D=80 (1,257,16x80)", 1, 257, 257, 16, 80, 0, .full = 1),

    /* group_norm: SD GroupNorm(32) at 320/640/1280 (eps 1e-5), VAE at 512
     * (eps 1e-6); a shifted input (mean 100x the spread); no affine; no
     * spatial dims; one element per group; odd sizes. */
    GN("SD (1,320,16,16) g32", 1, 320, 16, 16, 32, 1, 0, 1e-5f),
    GN("SD (2,1280,4,4) g32", 2, 1280, 4, 4, 32, 1, 0, 1e-5f),
    GN("VAE (1,512,8,8) g32 eps 1e-6", 1, 512, 8, 8, 32, 1, 0, 1e-6f),
    GN("shifted mean 100 (1,64,8,8) g32", 1, 64, 8, 8, 32, 1, 100, 1e-5f),
    GN("shifted mean 300 (1,320,8,8) g32", 1, 320, 8, 8, 32, 1, 300, 1e-5f),
    GN("no affine (2,6,5,3) g3", 2, 6, 5, 3, 3, 0, 0, 1e-5f),
    GN("no spatial (3,8) g2", 3, 8, 0, 0, 2, 1, 0, 1e-5f),
    GN("edge 1 element/group (1,32,1,1) g32", 1, 32, 1, 1, 32, 1, 0, 1e-5f),
    GN("edge odd (1,15,7,9) g5", 1, 15, 7, 9, 5, 1, 0, 1e-5f),
    GN("in-place SD (1,320,8,8) g32", 1, 320, 8, 8, 32, 1, 0, 1e-5f, .inplace = 1),
    GN("SD (1,320,64,64) g32", 1, 320, 64, 64, 32, 1, 0, 1e-5f, .full = 1),
    GN("VAE (1,128,256,256) g32 eps 1e-6", 1, 128, 256, 256, 32, 1, 0, 1e-6f, .full = 1),

    /* layer_norm: SD transformer 320 / 1280, CLIP-L 768 on 77 tokens,
     * ViT-H 1280; edge C=1 (variance 0), odd C, no affine. */
    LN("SD (1,256,320)", 1, 256, 320, 1, 1e-5f),
    LN("SD (1,16,1280)", 1, 16, 1280, 1, 1e-5f),
    LN("CLIP-L (1,77,768)", 1, 77, 768, 1, 1e-5f),
    LN("ViT-H (1,17,1280)", 1, 17, 1280, 1, 1e-5f),
    LN("edge C=1 (1,3,1)", 1, 3, 1, 1, 1e-5f),
    LN("edge odd (2,5,7) no affine", 2, 5, 7, 0, 1e-5f),
    LN("edge odd C=33 (1,3,33)", 1, 3, 33, 1, 1e-5f),
    LN("in-place CLIP-L (1,77,768)", 1, 77, 768, 1, 1e-5f, .inplace = 1),
    LN("SD (2,4096,320)", 2, 4096, 320, 1, 1e-5f, .full = 1),

    /* softmax over the last axis: CLIP/ViT attention rows, a 1000-way
     * classifier row, large logits, one element, odd widths. */
    SOFTMAX("CLIP-L scores (77,77)", 77, 77, 4),
    SOFTMAX("ViT-H scores (65,65)", 65, 65, 4),
    SOFTMAX("logits (2,1000)", 2, 1000, 4),
    SOFTMAX("large logits (5,33) in +-80", 5, 33, 80),
    SOFTMAX("edge (1,1)", 1, 1, 4),
    SOFTMAX("edge odd (3,17)", 3, 17, 4),
    SOFTMAX("edge (1,257)", 1, 257, 4),
    SOFTMAX("in-place CLIP-L scores (77,77)", 77, 77, 4, .inplace = 1),
    SOFTMAX("SD scores (4096,4096)", 4096, 4096, 4, .full = 1),

    /* activations: SiLU in the ResNet blocks (320..1280 channels) and the
     * time embedding; GELU (erf) in ViT-H's MLP, GELU tanh; QuickGELU in
     * CLIP-L's MLP; GEGLU in SD's feed-forward (2 x 1280). */
    ACT("silu", "SD res (1,320,256)", 1, 320, 256, ACT_SILU),
    ACT("silu", "SD temb (1,1,1280)", 1, 1, 1280, ACT_SILU),
    ACT("silu", "edge (1,1,1)", 1, 1, 1, ACT_SILU),
    ACT("silu", "edge odd (1,3,17)", 1, 3, 17, ACT_SILU),
    ACT("gelu", "erf ViT-H mlp (1,17,5120)", 1, 17, 5120, ACT_GELU_ERF),
    ACT("gelu", "erf edge (1,1,1)", 1, 1, 1, ACT_GELU_ERF),
    ACT("gelu", "erf edge odd (1,1,33)", 1, 1, 33, ACT_GELU_ERF),
    ACT("gelu", "tanh (1,17,5120)", 1, 17, 5120, ACT_GELU_TANH),
    ACT("gelu", "tanh edge odd (1,1,31)", 1, 1, 31, ACT_GELU_TANH),
    ACT("quick_gelu", "CLIP-L mlp (1,77,3072)", 1, 77, 3072, ACT_QUICK_GELU),
    ACT("quick_gelu", "edge (1,1,1)", 1, 1, 1, ACT_QUICK_GELU),
    ACT("quick_gelu", "edge odd (1,1,15)", 1, 1, 15, ACT_QUICK_GELU),
    ACT("silu", "in-place SD res (1,320,256)", 1, 320, 256, ACT_SILU, .inplace = 1),
    ACT("gelu", "erf in-place odd (1,17,1283)", 1, 17, 1283, ACT_GELU_ERF, .inplace = 1),
    ACT("gelu", "tanh in-place odd (1,17,1283)", 1, 17, 1283, ACT_GELU_TANH, .inplace = 1),
    ACT("quick_gelu", "in-place CLIP-L (1,77,3072)", 1, 77, 3072, ACT_QUICK_GELU,
        .inplace = 1),
    ACT_RANGE("silu", "tails in +-100 (1,7,33)", 1, 7, 33, ACT_SILU, 100),
    ACT_RANGE("gelu", "erf tails in +-100 (1,7,33)", 1, 7, 33, ACT_GELU_ERF, 100),
    ACT_RANGE("gelu", "tanh tails in +-100 (1,7,33)", 1, 7, 33, ACT_GELU_TANH, 100),
    ACT_RANGE("quick_gelu", "tails in +-100 (1,7,33)", 1, 7, 33, ACT_QUICK_GELU, 100),
    ACT_RANGE("geglu", "tails in +-100 (1,7,66)->33", 1, 7, 66, ACT_GEGLU, 100),
    ACT("geglu", "SD ff (1,64,2560)->1280", 1, 64, 2560, ACT_GEGLU),
    ACT("geglu", "edge (1,1,2)->1", 1, 1, 2, ACT_GEGLU),
    ACT("geglu", "edge odd (1,3,34)->17", 1, 3, 34, ACT_GEGLU),
    ACT("silu", "SD res (2,320,4096)", 2, 320, 4096, ACT_SILU, .full = 1),
    ACT("geglu", "SD ff (2,4096,2560)->1280", 2, 4096, 2560, ACT_GEGLU, .full = 1),

    /* resize: the reward's bilinear 512->224 (scaled down 64->28 by
     * default), upscaling, one pixel; SD Upsample2D nearest 2x. */
    RESIZE("resize_bilinear", "reward (1,3,64,64)->28x28", 1, 3, 64, 64, 28, 28),
    RESIZE("resize_bilinear", "up odd (1,2,5,7)->11x13", 1, 2, 5, 7, 11, 13),
    RESIZE("resize_bilinear", "edge (1,1,1,1)->3x5", 1, 1, 1, 1, 3, 5),
    RESIZE("resize_bilinear", "edge ->1x1 (1,2,9,7)", 1, 2, 9, 7, 1, 1),
    RESIZE("resize_bilinear", "reward (1,3,512,512)->224x224", 1, 3, 512, 512, 224, 224,
           .full = 1),
    RESIZE("upsample_nearest2x", "SD up (1,1280,8,8)", 1, 1280, 8, 8, 0, 0),
    RESIZE("upsample_nearest2x", "edge (1,1,1,1)", 1, 1, 1, 1, 0, 0),
    RESIZE("upsample_nearest2x", "edge odd (2,3,5,7)", 2, 3, 5, 7, 0, 0),
    RESIZE("upsample_nearest2x", "SD up (1,640,32,32)", 1, 640, 32, 32, 0, 0, .full = 1),

    /* timestep embedding: SD's dim 320 flip_sin_to_cos, t in [0, 1000);
     * no flip with shift 1; odd dim (zero column); dim 2. */
    TIMESTEP("SD (2) dim 320 flip", 2, 320, 1, 10000, 1000, 0.0f, 0.1),
    TIMESTEP("no flip shift 1 (3) dim 64", 3, 64, 0, 10000, 1000, 1.0f, 0.1),
    TIMESTEP("edge odd dim (1) dim 7", 1, 7, 1, 10000, 10, 0.0f, 1e-2),
    TIMESTEP("edge dim 2 (1)", 1, 2, 1, 10000, 10, 0.0f, 1e-2),

    /* elementwise. */
    EW("add", "SD residual (1,320,16,16)", EW_ADD, 1, 320, 16, 16, 0, 0, ew_backward),
    EW("add", "edge (1,1,1,1)", EW_ADD, 1, 1, 1, 1, 0, 0, ew_backward),
    EW("add", "edge odd (1,3,5,7)", EW_ADD, 1, 3, 5, 7, 0, 0, ew_backward),
    EW("mul", "SD (1,320,16,16)", EW_MUL, 1, 320, 16, 16, 0, 0, ew_backward),
    EW("mul", "edge odd (1,1,1,17)", EW_MUL, 1, 1, 1, 17, 0, 0, ew_backward),
    EW("scale", "SD (1,320,16,16) x0.18215", EW_SCALE, 1, 320, 16, 16, 0, 0.18215f,
       ew_backward),
    EW("scale", "edge odd (1,1,1,15) x-3", EW_SCALE, 1, 1, 1, 15, 0, -3.0f, ew_backward),
    EW("add", "in-place SD (1,320,8,8)", EW_ADD, 1, 320, 8, 8, 0, 0, ew_backward, .inplace = 1),
    EW("mul", "in-place odd (1,3,5,7)", EW_MUL, 1, 3, 5, 7, 0, 0, ew_backward, .inplace = 1),
    EW("scale", "in-place SD (1,320,8,8) x0.5", EW_SCALE, 1, 320, 8, 8, 0, 0.5f, ew_backward,
       .inplace = 1),
    EW("axpy", "SD skip (1,320,16,16) +0.5x", EW_AXPY, 1, 320, 16, 16, 0, 0.5f, NULL),
    EW("axpy", "edge odd (1,1,1,33) -2x", EW_AXPY, 1, 1, 1, 33, 0, -2.0f, NULL),
    EW("axpy", "edge (1,1,1,1) +1x", EW_AXPY, 1, 1, 1, 1, 0, 1.0f, NULL),
    EW("concat_channels", "SD up skip (1,1280,4,4)+640", EW_CONCAT, 1, 1280, 4, 4, 640, 0,
       ew_backward),
    EW("concat_channels", "edge (1,1,1,1)+2", EW_CONCAT, 1, 1, 1, 1, 2, 0, ew_backward),
    EW("concat_channels", "edge odd (2,3,5,7)+1", EW_CONCAT, 2, 3, 5, 7, 1, 0, ew_backward),
    EW("add_channel_bias", "SD temb (2,320,16,16)", EW_BIAS, 2, 320, 16, 16, 0, 0,
       ew_backward),
    EW("add_channel_bias", "in-place SD (2,320,8,8)", EW_BIAS, 2, 320, 8, 8, 0, 0,
       ew_backward, .inplace = 1),
    EW("add_channel_bias", "edge (1,1,1,1)", EW_BIAS, 1, 1, 1, 1, 0, 0, ew_backward),
    EW("add_channel_bias", "edge odd (1,3,5,7)", EW_BIAS, 1, 3, 5, 7, 0, 0, ew_backward),
    EW("nchw_to_nlc", "SD proj_in (1,320,16,16)", EW_TO_NLC, 1, 320, 16, 16, 0, 0,
       ew_backward),
    EW("nchw_to_nlc", "edge odd (2,3,5,7)", EW_TO_NLC, 2, 3, 5, 7, 0, 0, ew_backward),
    EW("nchw_to_nlc", "edge (1,1,1,1)", EW_TO_NLC, 1, 1, 1, 1, 0, 0, ew_backward),
    EW("nlc_to_nchw", "SD proj_out (1,320,16,16)", EW_TO_NCHW, 1, 320, 16, 16, 0, 0,
       ew_backward),
    EW("nlc_to_nchw", "edge odd (2,3,5,7)", EW_TO_NCHW, 2, 3, 5, 7, 0, 0, ew_backward),
    EW("add", "SD (2,320,64,64)", EW_ADD, 2, 320, 64, 64, 0, 0, ew_backward, .full = 1),
    EW("nchw_to_nlc", "SD (2,320,64,64)", EW_TO_NLC, 2, 320, 64, 64, 0, 0, ew_backward,
       .full = 1),
    /* matmul (tensor GEMM): SD LoRA rank-4 branches (down 320->4, up 4->320,
     * their dW as a^T b), ViT-H's 1280->1024 projection, every transpose
     * with beta 0 (out poisoned) and 1, alpha; items: CLIP's per-prompt
     * rows (77 each); a with a collapsed leading dim; tiny and odd sizes. */
    MATMUL("SD LoRA down (256,320).(4,320)^T", 0, 1, 256, 4, 320, 0, 0, 1.0f),
    MATMUL("SD LoRA up (256,4).(320,4)^T beta 1", 0, 1, 256, 320, 4, 1, 0, 1.0f),
    MATMUL("SD LoRA dW a^T (256,4)^T.(256,320) beta 1", 1, 0, 4, 320, 256, 1, 0, 1.0f),
    MATMUL("ViT-H proj (2,1280).(1280,1024)", 0, 0, 2, 1024, 1280, 0, 0, 1.0f),
    MATMUL("a^T b^T (77,64,96) alpha 0.125 beta 1", 1, 1, 77, 64, 96, 1, 0, 0.125f),
    MATMUL("a^T b^T (33,17,40) beta 0", 1, 1, 33, 17, 40, 0, 0, 1.0f),
    MATMUL("CLIP items 2x(77,768).(768,768)^T", 0, 1, 77, 768, 768, 0, 2, 1.0f),
    MATMUL("items 3x(5,70,100) beta 1 alpha -0.5", 0, 0, 5, 70, 100, 1, 3, -0.5f),
    MATMUL("items one (1,9,33).(33,17)", 0, 0, 9, 17, 33, 0, 1, 1.0f),
    MATMUL("edge (1,1,1)", 0, 0, 1, 1, 1, 0, 0, 1.0f),
    MATMUL_BF16("bf16 b SD LoRA-like (256,320).(64,320)^T", 0, 1, 256, 64, 320, 0, 0, 1.0f),
    MATMUL_BF16("bf16 b ViT-H proj (2,1280).(1280,1024) beta 1", 0, 0, 2, 1024, 1280, 1, 0,
                1.0f),
    MATMUL_BF16("bf16 b a^T odd (7,9,14)", 1, 0, 7, 9, 14, 0, 0, 1.0f),
    MATMUL_BF16("bf16 b items 2x(77,768).(768,768)^T", 0, 1, 77, 768, 768, 0, 2, 1.0f),
    MATMUL("edge odd (5,17,3) beta 1", 0, 0, 5, 17, 3, 1, 0, 1.0f),
    MATMUL("edge a^T odd (7,9,13)", 1, 0, 7, 9, 13, 0, 0, 1.0f),
    MATMUL("edge b^T odd (7,9,13) beta 1", 0, 1, 7, 9, 13, 1, 0, 2.0f),
    MATMUL("SD LoRA up (8192,4).(320,4)^T beta 1", 0, 1, 8192, 320, 4, 1, 0, 1.0f, .full = 1),
    MATMUL("CLIP items 4x(77,768).(3072,768)^T", 0, 1, 77, 3072, 768, 0, 4, 1.0f,
           .full = 1),

    /* ddim_update: SD v1.5 50-step schedule (steps 0 = t 981, 10, 25, 40,
     * 49 = t 1); eta 1 noise; x0 clamp to +-1; in-place x / eps. */
    DDIM("SD latent (1,4,16,16) step 25", 1, 4, 16, 16, 25, 0, 0, 0),
    DDIM("SD latent noise eta 1 (1,4,16,16) step 10", 1, 4, 16, 16, 10, 1, 0, 0),
    DDIM("clip x0 (2,4,8,8) step 40", 2, 4, 8, 8, 40, 0, 1, 0),
    DDIM("clip + noise (1,4,8,8) step 0", 1, 4, 8, 8, 0, 1, 1, 0),
    DDIM("last step 49 (1,4,8,8)", 1, 4, 8, 8, 49, 0, 0, 0),
    DDIM("in-place x (1,4,16,16) step 25", 1, 4, 16, 16, 25, 0, 0, 1, .inplace = 1),
    DDIM("in-place eps clip (1,4,8,8) step 25", 1, 4, 8, 8, 25, 0, 1, 2, .inplace = 1),
    DDIM("edge (1,1,1,1) noise", 1, 1, 1, 1, 30, 1, 0, 0),
    DDIM("edge odd (1,3,5,7) noise clip", 1, 3, 5, 7, 20, 1, 1, 0),
    DDIM("SD latent (2,4,64,64) clip noise", 2, 4, 64, 64, 25, 1, 1, 0, .full = 1),
    DDIM_V("v-pred SD latent (1,4,16,16) step 25", 1, 4, 16, 16, 25, 0, 0, 0),
    DDIM_V("v-pred noise eta 1 (1,4,16,16) step 10", 1, 4, 16, 16, 10, 1, 0, 0),
    DDIM_V("v-pred clip x0 (2,4,8,8) step 40", 2, 4, 8, 8, 40, 0, 1, 0),
    DDIM_V("v-pred in-place x (1,4,8,8) step 0", 1, 4, 8, 8, 0, 0, 0, 1, .inplace = 1),
    DDIM_V("v-pred in-place eps clip (1,3,5,7) step 49", 1, 3, 5, 7, 49, 0, 1, 2, .inplace = 1),

    /* guidance: AlignProp's 7.5 on SD latents; in-place either way. */
    GUIDANCE("SD (1,4,16,16) g7.5", 1, 4, 16, 16, 7.5f, 0),
    GUIDANCE("in-place eps_u (1,4,16,16) g7.5", 1, 4, 16, 16, 7.5f, 1, .inplace = 1),
    GUIDANCE("in-place eps_c (1,4,8,8) g7.5", 1, 4, 8, 8, 7.5f, 2, .inplace = 1),
    GUIDANCE("edge (1,1,1,1) g1", 1, 1, 1, 1, 1.0f, 0),
    GUIDANCE("edge odd (1,3,5,7) g0", 1, 3, 5, 7, 0.0f, 0),
    GUIDANCE("SD (2,4,64,64) g7.5", 2, 4, 64, 64, 7.5f, 0, .full = 1),

    /* rows.h. gather_rows: CLIP-L's EOT tokens, CFG rows repeated. */
    ROWS_EXACT("gather_rows", "CLIP-L EOT (77,768) pick 2", RW_GATHER, 77, 768, 2, 0, 0,
               rw_backward),
    ROWS_EXACT("gather_rows", "repeats (2,1024) pick 8", RW_GATHER, 2, 1024, 8, 0, 0,
               rw_backward),
    ROWS_EXACT("gather_rows", "edge (1,1) pick 3", RW_GATHER, 1, 1, 3, 0, 0, rw_backward),
    ROWS_EXACT("gather_rows", "edge odd (5,33) pick 7", RW_GATHER, 5, 33, 7, 0, 0, rw_backward),
    ROWS("sum_rows", "CFG dx (2,1024)", RW_SUM, 2, 1024, 0, 0, 0, NULL),
    ROWS("sum_rows", "CFG dx += (2,1024)", RW_SUM, 2, 1024, 1, 0, 0, NULL),
    ROWS("sum_rows", "odd (3,17) +=", RW_SUM, 3, 17, 1, 0, 0, NULL),
    ROWS("sum_rows", "edge (1,1)", RW_SUM, 1, 1, 0, 0, 0, NULL),
    ROWS("add_broadcast_rows", "CLIP-L pos (2,77,768)+(77,768)", RW_BCAST, 2, 77, 768, 0, 0,
         NULL),
    ROWS("add_broadcast_rows", "ViT-H pos (1,65,1280)+(1,65,1280)", RW_BCAST, 1, 65, 1280, 1,
         0, NULL),
    ROWS("add_broadcast_rows", "in-place odd (3,5,7)", RW_BCAST, 3, 5, 7, 1, 0, NULL,
         .inplace = 1),
    ROWS("add_broadcast_rows", "edge (1,1,1)", RW_BCAST, 1, 1, 1, 0, 0, NULL),
    ROWS_RED("l2norm", "aesthetic CLIP-L (2,768) eps 0", RW_L2NORM, 2, 768, 0, 0, 0.0f,
             rw_backward),
    ROWS_RED("l2norm", "HPS ViT-H (2,1024) eps 1e-12", RW_L2NORM, 2, 1024, 0, 0, 1e-12f,
             rw_backward),
    ROWS_RED("l2norm", "in-place (2,1024) eps 1e-12", RW_L2NORM, 2, 1024, 0, 0, 1e-12f,
             rw_backward, .inplace = 1),
    ROWS_RED("l2norm", "edge odd (3,17) eps 0", RW_L2NORM, 3, 17, 0, 0, 0.0f, rw_backward),
    ROWS_RED("l2norm", "edge (1,2) eps 1e-12", RW_L2NORM, 1, 2, 0, 0, 1e-12f, rw_backward),
    ROWS_RED("row_dot", "HPS img.txt (2,1024)", RW_ROWDOT, 2, 1024, 0, 0, 0, rw_backward),
    ROWS_RED("row_dot", "edge (1,1)", RW_ROWDOT, 1, 1, 0, 0, 0, rw_backward),
    ROWS_RED("row_dot", "edge odd (3,33)", RW_ROWDOT, 3, 33, 0, 0, 0, rw_backward),
    /* abs_diff: x in +-1 with the target outside (no kink within fd_eps),
     * and one target inside (both signs; no FD point lands within 1e-3). */
    ROWS_FAR("abs_diff", "aesthetic |x-10| (2048)", RW_ABSDIFF, 2048, 1, 0, 0, 10.0f,
             rw_backward),
    ROWS("abs_diff", "target 0.3 (2048)", RW_ABSDIFF, 2048, 1, 0, 0, 0.3f, rw_backward),
    ROWS_FAR("abs_diff", "in-place odd (33) target -2", RW_ABSDIFF, 33, 1, 0, 0, -2.0f,
             rw_backward, .inplace = 1),
    ROWS_FAR("abs_diff", "edge (1) target 5", RW_ABSDIFF, 1, 1, 0, 0, 5.0f, rw_backward),
    ROWS("affine", "1 - x (2,1024)", RW_AFFINE, 2, 1024, 4, 0, -1.0f, NULL),
    ROWS("affine", "in-place odd (3,17) 0.5x-0.25", RW_AFFINE, 3, 17, -1, 0, 0.5f, NULL,
         .inplace = 1),
    ROWS("affine", "edge (1,1) 3x", RW_AFFINE, 1, 1, 0, 0, 3.0f, NULL),
    ROWS("divide", "VAE latents / 0.18215 (4,256)", RW_DIVIDE, 4, 256, 0, 0, 0.18215f,
         rw_backward),
    ROWS("divide", "in-place odd (3,17) / 3", RW_DIVIDE, 3, 17, 0, 0, 3.0f, rw_backward,
         .inplace = 1),
    ROWS("divide", "edge (1,1) / -7", RW_DIVIDE, 1, 1, 0, 0, -7.0f, rw_backward),
    ROWS_EXACT("count_nonfinite", "SD latent (1024) 5 planted", RW_NONFINITE, 1024, 5, 0, 0,
               0, NULL),
    ROWS_EXACT("count_nonfinite", "none planted (1024)", RW_NONFINITE, 1024, 0, 0, 0, 0, NULL),
    ROWS_EXACT("count_nonfinite", "odd (17) 3 planted", RW_NONFINITE, 17, 3, 0, 0, 0, NULL),
    ROWS_EXACT("count_nonfinite", "edge (1) 1 planted", RW_NONFINITE, 1, 1, 0, 0, 0, NULL),
    ROWS_EXACT("count_nonfinite", "(65537) 9 planted", RW_NONFINITE, 65537, 9, 0, 0, 0, NULL),
    ROWS_EXACT("copy", "(4,1024)", RW_COPY, 4, 1024, 0, 0, 0, NULL),
    ROWS_EXACT("copy", "edge (1,1)", RW_COPY, 1, 1, 0, 0, 0, NULL),
    ROWS_EXACT("copy", "edge odd (3,17)", RW_COPY, 3, 17, 0, 0, 0, NULL),

    /* image.h: the VAE's decoded image to [0, 1] (x in +-1.5: both clamps),
     * CLIP Normalize, the demo reward's colourfulness. */
    ROWS("to_unit_range", "VAE out (1,3,32,32)", IM_UNIT, 1, 3, 32, 32, 0, rw_backward),
    ROWS("to_unit_range", "in-place (1,3,16,16)", IM_UNIT, 1, 3, 16, 16, 0, rw_backward,
         .inplace = 1),
    ROWS("to_unit_range", "edge (1,1,1,1)", IM_UNIT, 1, 1, 1, 1, 0, rw_backward),
    ROWS("to_unit_range", "edge odd (1,3,5,7)", IM_UNIT, 1, 3, 5, 7, 0, rw_backward),
    ROWS("channel_normalize", "CLIP (1,3,28,28)", IM_NORMALIZE, 1, 3, 28, 28, 0, rw_backward),
    ROWS("channel_normalize", "in-place (2,3,8,8)", IM_NORMALIZE, 2, 3, 8, 8, 0, rw_backward,
         .inplace = 1),
    ROWS("channel_normalize", "edge (1,3,1,1)", IM_NORMALIZE, 1, 3, 1, 1, 0, rw_backward),
    ROWS("channel_normalize", "CLIP (2,3,224,224)", IM_NORMALIZE, 2, 3, 224, 224, 0,
         rw_backward, .full = 1),
    ROWS_RED("colourfulness", "demo (2,3,32,32)", IM_COLOUR, 2, 3, 32, 32, 0, rw_backward),
    ROWS_RED("colourfulness", "edge odd (1,3,2,3)", IM_COLOUR, 1, 3, 2, 3, 0, rw_backward),
    ROWS_RED("colourfulness", "demo (1,3,512,512)", IM_COLOUR, 1, 3, 512, 512, 0, rw_backward,
             .full = 1),
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void usage(const char *argv0) {
    printf("usage: %s [--op NAME] [--full] [--list] [--fd-points N] [--verbose]\n"
           "  Runs every op of src/ops on the reference backend (generic CPU kernels)\n"
           "  and on each test backend (avx2, avx512), compares outputs and gradients\n"
           "  with per-op tolerances and checks every backward by finite differences.\n"
           "  --op NAME       only the cases of op NAME (e.g. conv2d, attention)\n"
           "  --full          add the full-size cases (SD 64x64 latent, 4096-token\n"
           "                  attention, ViT-H 257 tokens, 512->224 resize): minutes\n"
           "  --list          print the cases and exit\n"
           "  --fd-points N   finite-difference coordinates per gradient (default 4,\n"
           "                  2 for the full-size cases)\n"
           "  --verbose       per-tensor errors of every case\n",
           argv0);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    int full = 0, list = 0;
    hx_options opt = {.fd_points = 4, .fd_points_full = 2, .verbose = 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--op") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--full")) full = 1;
        else if (!strcmp(argv[i], "--list")) list = 1;
        else if (!strcmp(argv[i], "--verbose")) opt.verbose = 1;
        else if (!strcmp(argv[i], "--fd-points") && i + 1 < argc)
            opt.fd_points = opt.fd_points_full = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "test_backend_ops: unknown argument '%s'\n", argv[i]);
            usage(argv[0]);
            return 2;
        }
    }
    int selected = 0;
    for (int i = 0; i < N_CASES; i++) {
        const hx_case *c = &cases[i];
        if ((only && strcmp(only, c->op)) || (c->full && !full)) continue;
        selected++;
        if (list)
            printf("%-18s %-46s%s%s%s\n", c->op, c->label, c->backward ? " fwd+bwd" : " fwd",
                   c->full ? " (--full)" : "", c->known_failure ? " (known failure)" : "");
    }
    if (list) return 0;
    if (!selected) {
        fprintf(stderr, "test_backend_ops: no case matches --op %s\n", only ? only : "");
        return 2;
    }

    char cpu[512];
    printf("%s\n", ap_cpu_describe(cpu, (int)sizeof cpu));
#ifdef AP_HARNESS_CUDA
    /* test_backend_ops_cuda: generic CPU (the reference) against CUDA. */
    hx_backend ref, cuda;
    hx_backend *tests[] = {&cuda};
    const char *names[] = {"cuda"};
    const int n_tests = 1;
#else
    /* Pairs: generic (the reference) against each other variant. */
    hx_backend ref, avx2, avx512;
    hx_backend *tests[] = {&avx2, &avx512};
    const char *names[] = {"avx2", "avx512"};
    const int n_tests = 2;
#endif
    if (harness_ctx_open(&ref, "generic") != AP_OK) {
        printf("reference backend generic: %s\n", ap_errmsg());
        return 1;
    }
    if (!ref.available) {
        printf("reference backend generic: %s\n", ref.why);
        return 77;
    }
    for (int t = 0; t < n_tests; t++) {
        if (harness_ctx_open(tests[t], names[t]) != AP_OK) {
            printf("backend %s: %s\n", names[t], ap_errmsg());
            return 1;
        }
        if (!tests[t]->available) printf("backend %s skipped: %s\n", names[t], tests[t]->why);
    }
#ifdef AP_HARNESS_CUDA
    if (!cuda.available) { /* the one test backend: nothing to compare */
        printf("SKIP: %s\n", cuda.why);
        harness_ctx_close(&ref);
        return 77;
    }
#endif
    printf("reference %s; threads %d; %d cases%s\n", ref.name, ref.ctx.n_threads, selected,
           full ? " (with --full)" : "");

    int counts[5] = {0};
    for (int i = 0; i < N_CASES; i++) {
        const hx_case *c = &cases[i];
        if ((only && strcmp(only, c->op)) || (c->full && !full)) continue;
        harness_run_case(c, i, &ref, tests, n_tests, &opt, counts);
    }
    for (int t = 0; t < n_tests; t++) harness_ctx_close(tests[t]);
    harness_ctx_close(&ref);

    int passed = counts[HX_PASS] + counts[HX_XPASS], failed = counts[HX_FAIL];
    printf("%d passed, %d failed, %d skipped", passed, failed, counts[HX_SKIP]);
    if (counts[HX_XFAIL]) printf(", %d known failures", counts[HX_XFAIL]);
    printf("\n");
    if (failed) return 1;
    if (!passed && !counts[HX_XFAIL]) return 77;
    return 0;
}
