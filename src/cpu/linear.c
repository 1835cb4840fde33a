/* linear.c: fully connected layer (CPU reference).
 *
 * Accumulation rule: parameter grads (dw, db) +=, activation grads (din) =.
 *
 * in is viewed as a (rows, I) matrix, rows = numel(in) / I:
 *   forward:  out (rows, O) = bias (pre-filled) + in . w^T     one ap_gemm
 *   backward: din (rows, I) = dout . w                         one ap_gemm
 *             dw (O, I)    += dout^T . in                      one ap_gemm
 *             db (O)       += column sums of dout (double accumulation)
 * w may be bf16 / f16 (a frozen weight; no dw then): ap_gemm_w widens it.
 */
#include "cpu.h"
#include "ops/linear.h"

#include <limits.h>
#include <stdio.h>

#include "blas.h"
#include "core/err.h"

/* Re-records the current error with the shapes of in and w appended. */
/* Validates in (..., I) and w (O, I); sets rows, I, O. */
/* Checks t has in's leading dims and last dim O. */
int ap_cpu_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                      const ap_tensor *w, const ap_tensor *b) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], rows = (int)(ap_numel(in) / I);
    int bias = ap_present(b);

    float *y = out->data;
    if (bias) {
        const float *bb = b->data;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if ((int64_t)rows * O > 32768)
        for (int r = 0; r < rows; r++) {
            float *yr = y + (size_t)r * O;
            for (int o = 0; o < O; o++) yr[o] = bb[o];
        }
    }
    /* (B, ..., I) with 3+ dims: one GEMM per leading index (image, prompt),
     * so its rows never depend on the batch; a 2-D input is one block (give
     * per-item rows as (B, 1, I) to have them computed alone). */
    int items = in->ndim >= 3 ? (int)in->shape[0] : 1;
    return ap_gemm_items_w(ctx, items, 1, rows / items, O, I, 1.0f, in->data, I, w->data,
                           w->dtype, I, bias ? 1.0f : 0.0f, y, O);
}

/* db[o] += sum_r g[r, o] in double, rows in order (so the result does not
 * depend on the thread count). Columns are split into one contiguous block
 * per thread (at most BLK wide): each row contributes one contiguous
 * stretch, which the prefetchers follow; blocks of 64 columns made every row
 * a new 4 KiB page at SD widths (row stride 5 KiB) and ran at ~5 GB/s. */
static void bias_grad(const ap_ctx *ctx, float *db, const float *g, int rows, int O) {
    enum { BLK = 1024 };
    int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    int nblk = (O + BLK - 1) / BLK;
    if (nblk < nt) nblk = nt;
    int width = (O + nblk - 1) / nblk;
    width = (width + 15) & ~15;
    nblk = (O + width - 1) / width;
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)rows * O > 32768)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * width, n = O - o0 < width ? O - o0 : width;
        double acc[BLK];
        for (int k = 0; k < n; k++) acc[k] = 0.0;
        for (int r = 0; r < rows; r++) {
            const float *gr = g + (size_t)r * O + o0;
            for (int k = 0; k < n; k++) acc[k] += gr[k];
        }
        for (int k = 0; k < n; k++) db[o0 + k] += (float)acc[k];
    }
}

size_t ap_cpu_linear_forward_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                     const ap_tensor *w, const ap_tensor *b) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], rows = (int)(ap_numel(in) / I);
    const int items = in->ndim >= 3 ? (int)in->shape[0] : 1;
    return ap_gemm_w_scratch(ctx, 1, rows / items, O, I, w->dtype, I, ap_present(b) ? 1.0f : 0.0f);
}

size_t ap_cpu_linear_backward_scratch(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                                      const ap_tensor *db, const ap_tensor *dout,
                                      const ap_tensor *in, const ap_tensor *w) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], rows = (int)(ap_numel(in) / I);
    return ap_present(din) ? ap_gemm_w_scratch(ctx, 0, rows, I, O, w->dtype, I, 0.0f) : 0;
}

int ap_cpu_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                       const ap_tensor *db, const ap_tensor *dout,
                       const ap_tensor *in, const ap_tensor *w) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], rows = (int)(ap_numel(in) / I);
    int want_dx = ap_present(din), want_dw = ap_present(dw), want_db = ap_present(db);

    const float *g = dout->data;
    if (want_db) bias_grad(ctx, db->data, g, rows, O);
    if (want_dw)
        ap_gemm(ctx, 1, 0, O, I, rows, 1.0f, g, O, in->data, I, 1.0f, dw->data, I);
    if (want_dx)
        return ap_gemm_w(ctx, 0, 0, rows, I, O, 1.0f, g, O, w->data, w->dtype, I, 0.0f,
                         din->data, I);
    return AP_OK;
}
