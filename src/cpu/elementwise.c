/* elementwise.c: add, mul, scale, axpy, channel concat, channel bias and
 * NCHW <-> NLC permutes (CPU reference).
 *
 * Accumulation rule: activation grads =, except ap_axpy (y +=).
 * Loops split over OpenMP threads only above PAR_MIN elements; every output
 * element is written by exactly one thread in a fixed order, so results do
 * not depend on the thread count.
 */
#include "cpu.h"
#include "ops/elementwise.h"

#include <string.h>

#include "core/err.h"
#include "core/isa.h"

#define PAR_MIN 32768 /* below this many elements one thread is faster */

/* dst = src unless they are the same buffer. */
static void copy_floats(ap_ctx *ctx, float *dst, const float *src, int64_t n) {
    if (dst == src) return;
    const int64_t chunk = 1 << 16;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (nchunks > 1)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t i0 = k * chunk, len = n - i0 < chunk ? n - i0 : chunk;
        memcpy(dst + i0, src + i0, (size_t)len * sizeof(float));
    }
}

/* ---- per-variant chunk kernels (core/isa.h) ------------------------------
 * Loops run over fixed chunks of CHUNK elements, threads over chunks; every
 * output element is computed by one expression, so all variants agree. */
#define CHUNK 16384
enum { EW_ADD, EW_MUL, EW_SCALE, EW_AXPY, EW_ADDC };

/* z = x + y | x * y | s * x; z += s * x (axpy); z = x + s (ADDC) over n. */
AP_ISA_INLINE void ew_map_body(int op, const float *x, const float *y, float *z, float s,
                               int64_t n) {
    switch (op) {
    case EW_ADD:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) z[i] = x[i] + y[i];
        break;
    case EW_MUL:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) z[i] = x[i] * y[i];
        break;
    case EW_SCALE:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) z[i] = s * x[i];
        break;
    case EW_AXPY:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) z[i] += s * x[i];
        break;
    default:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) z[i] = x[i] + s;
        break;
    }
}
AP_ISA_KERNEL(ew_map, (int op, const float *x, const float *y, float *z, float s, int64_t n),
              (op, x, y, z, s, n));

/* z (n) = op(x, y, s) in chunks over the context's threads. */
static void ew_run(ap_ctx *ctx, int op, const float *x, const float *y, float *z, float s,
                   int64_t n) {
    void (*const k)(int, const float *, const float *, float *, float, int64_t) =
        ap_isa_pick(ctx, ew_map);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > PAR_MIN)
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK)
        k(op, x + c0, y ? y + c0 : NULL, z + c0, s, n - c0 < CHUNK ? n - c0 : CHUNK);
}

/* da = g * b, db = g * a (either may be NULL); each element's inputs are read
 * before its outputs are written. */
AP_ISA_INLINE void mul_bwd_body(const float *x, const float *y, const float *g, float *dx,
                                float *dy, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], xi = x[i], yi = y[i];
        if (dx) dx[i] = gi * yi;
        if (dy) dy[i] = gi * xi;
    }
}
AP_ISA_KERNEL(mul_bwd, (const float *x, const float *y, const float *g, float *dx, float *dy,
                        int64_t n), (x, y, g, dx, dy, n));

/* ---- add, mul, scale, axpy ---------------------------------------------- */

int ap_cpu_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b) {
    const float *x = a->data, *y = b->data;
    float *z = out->data;
    int64_t n = ap_numel(a);
    ew_run(ctx, EW_ADD, x, y, z, 0.0f, n);
    return AP_OK;
}

int ap_cpu_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout) {
    int64_t n = ap_numel(dout);
    if (ap_present(da)) copy_floats(ctx, da->data, dout->data, n);
    if (ap_present(db)) copy_floats(ctx, db->data, dout->data, n);
    return AP_OK;
}

int ap_cpu_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b) {
    const float *x = a->data, *y = b->data;
    float *z = out->data;
    int64_t n = ap_numel(a);
    ew_run(ctx, EW_MUL, x, y, z, 0.0f, n);
    return AP_OK;
}

int ap_cpu_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                    const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b) {
    const float *x = a->data, *y = b->data, *g = dout->data;
    float *dx = ap_present(da) ? da->data : NULL, *dy = ap_present(db) ? db->data : NULL;
    int64_t n = ap_numel(a);
    /* Each element's inputs are read before its outputs are written, so da
     * and db may alias dout, a or b (not each other). */
    void (*const k)(const float *, const float *, const float *, float *, float *, int64_t) =
        ap_isa_pick(ctx, mul_bwd);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n > PAR_MIN)
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK)
        k(x + c0, y + c0, g + c0, dx ? dx + c0 : NULL, dy ? dy + c0 : NULL,
          n - c0 < CHUNK ? n - c0 : CHUNK);
    return AP_OK;
}

/* dst = s * src, shared by scale's forward and backward (the same map). */
static int scale_map(ap_ctx *ctx, const char *op, const char *src_name, const ap_tensor *src,
                     const char *dst_name, const ap_tensor *dst, float s) {
    const float *x = src->data;
    float *z = dst->data;
    int64_t n = ap_numel(src);
    ew_run(ctx, EW_SCALE, x, NULL, z, s, n);
    return AP_OK;
}

int ap_cpu_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s) {
    return scale_map(ctx, "scale_forward", "a", a, "out", out, s);
}

int ap_cpu_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout, float s) {
    return scale_map(ctx, "scale_backward", "dout", dout, "da", da, s);
}

int ap_cpu_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x) {
    const float *xs = x->data;
    float *ys = y->data;
    int64_t n = ap_numel(x);
    ew_run(ctx, EW_AXPY, xs, NULL, ys, s, n);
    return AP_OK;
}

/* ---- channel concat --------------------------------------------------- */

int ap_cpu_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                               const ap_tensor *b) {
    int64_t B = a->shape[0], C1 = a->shape[1], H = a->shape[2], W = a->shape[3];
    int64_t C2 = b->shape[1], C = C1 + C2, L = H * W;
    int64_t planes = B * C;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (planes * L > PAR_MIN)
    for (int64_t q = 0; q < planes; q++) {
        int64_t n = q / C, c = q % C;
        const float *src = c < C1 ? a->data + (n * C1 + c) * L : b->data + (n * C2 + c - C1) * L;
        memcpy(out->data + q * L, src, (size_t)L * sizeof(float));
    }
    return AP_OK;
}

int ap_cpu_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                const ap_tensor *dout) {
    int64_t B = dout->shape[0], C = dout->shape[1], H = dout->shape[2], W = dout->shape[3];
    int have_a = ap_present(da), have_b = ap_present(db);
    if (!have_a && !have_b) return AP_OK;
    /* C1 comes from da, else from db (ops/elementwise.c checked the split) */
    int64_t C1 = have_a ? da->shape[1] : C - db->shape[1];
    int64_t C2 = C - C1;
    int64_t L = H * W, planes = B * C;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (planes * L > PAR_MIN)
    for (int64_t q = 0; q < planes; q++) {
        int64_t n = q / C, c = q % C;
        float *dst = NULL;
        if (c < C1 && have_a) dst = da->data + (n * C1 + c) * L;
        if (c >= C1 && have_b) dst = db->data + (n * C2 + c - C1) * L;
        if (dst) memcpy(dst, dout->data + q * L, (size_t)L * sizeof(float));
    }
    return AP_OK;
}

/* ---- per-(b, c) bias over H x W ---------------------------------------- */

int ap_cpu_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                const ap_tensor *bias) {
    int64_t B = in->shape[0], C = in->shape[1], L = in->shape[2] * in->shape[3];
    int64_t planes = B * C;
    void (*const k)(int, const float *, const float *, float *, float, int64_t) =
        ap_isa_pick(ctx, ew_map);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (planes * L > PAR_MIN)
    for (int64_t q = 0; q < planes; q++)
        k(EW_ADDC, in->data + q * L, NULL, out->data + q * L, bias->data[q], L);
    return AP_OK;
}

int ap_cpu_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dbias,
                                 const ap_tensor *dout) {
    int64_t B = dout->shape[0], C = dout->shape[1], L = dout->shape[2] * dout->shape[3];
    if (ap_present(dbias)) {
        int64_t planes = B * C;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (planes * L > PAR_MIN)
        for (int64_t q = 0; q < planes; q++) {
            const float *g = dout->data + q * L;
            double acc = 0;
            for (int64_t i = 0; i < L; i++) acc += g[i];
            dbias->data[q] = (float)acc;
        }
    }
    if (ap_present(din)) copy_floats(ctx, din->data, dout->data, B * C * L);
    return AP_OK;
}

/* ---- NCHW <-> (B, H*W, C) ----------------------------------------------- */

/* Tile of the transpose: TILE_R source rows x TILE_C source columns. The
 * inner loop runs down a source column so the writes are contiguous runs of
 * TILE_R floats; reads touch TILE_C consecutive floats of each row. Measured
 * on (4, 320, 4096) both ways, 1 thread: 64 x 8 took 6-8 ms where square
 * 32 x 32 tiles took 14-50 ms (power-of-two strides thrash the L1 sets). */
#define TILE_R 64
#define TILE_C 8

/* dst (B, cols, rows) = transpose of src (B, rows, cols), per batch. */
static void transpose_batched(ap_ctx *ctx, float *dst, const float *src, int64_t B,
                              int64_t rows, int64_t cols) {
    int64_t tr = (rows + TILE_R - 1) / TILE_R, tc = (cols + TILE_C - 1) / TILE_C;
    int64_t tiles = B * tr * tc;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (B * rows * cols > PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t b = t / (tr * tc), r0 = (t / tc) % tr * TILE_R, c0 = t % tc * TILE_C;
        int64_t r1 = r0 + TILE_R < rows ? r0 + TILE_R : rows;
        int64_t c1 = c0 + TILE_C < cols ? c0 + TILE_C : cols;
        const float *s = src + b * rows * cols;
        float *d = dst + b * rows * cols;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t r = r0; r < r1; r++) d[c * rows + r] = s[r * cols + c];
    }
}

/* nchw (B, C, H, W) -> nlc (B, H*W, C); never aliased (ops/elementwise.c). */
static int to_nlc(ap_ctx *ctx, const ap_tensor *nlc, const ap_tensor *nchw) {
    int64_t B = nchw->shape[0], C = nchw->shape[1], L = nchw->shape[2] * nchw->shape[3];
    transpose_batched(ctx, nlc->data, nchw->data, B, C, L);
    return AP_OK;
}

/* nlc (B, H*W, C) -> nchw (B, C, H, W). */
static int to_nchw(ap_ctx *ctx, const ap_tensor *nchw, const ap_tensor *nlc) {
    int64_t B = nchw->shape[0], C = nchw->shape[1], L = nchw->shape[2] * nchw->shape[3];
    transpose_batched(ctx, nchw->data, nlc->data, B, L, C);
    return AP_OK;
}

int ap_cpu_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    return to_nlc(ctx, out, in);
}

int ap_cpu_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    return to_nchw(ctx, din, dout);
}

int ap_cpu_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    return to_nchw(ctx, out, in);
}

int ap_cpu_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout) {
    return to_nlc(ctx, din, dout);
}
