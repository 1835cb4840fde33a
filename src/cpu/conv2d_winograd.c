/* conv2d_winograd.c: Winograd F(2x2, 3x3) for 3x3 / stride 1 / pad 1
 * convolutions on the packed GEMM (CPU backend; cpu/conv2d.c decides when it
 * runs, see wg_eligible there). */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "conv2d_internal.h"
#include "widen.h"
#include "core/isa.h"
#include "packed_gemm.h"

#if PG_HAVE
/* ---- Winograd F(2x2, 3x3): 3x3 kernels, stride 1, pad 1 -----------------
 *
 * Each 2x2 output tile (rows 2ti.., cols 2tj..) of each image is
 *   A^T [ sum_c (G g_oc G^T) .* (B^T d_c B) ] A  (+ bias)
 * with d_c the 4x4 input patch at rows 2ti-1.., cols 2tj-1.. (zeros outside):
 * 16 multiplies per tile and (o, c) instead of 36. For transform point
 * p = 4i + j (i, j < 4) and a chunk of T tiles:
 *   U[p] (O, C) = (G g G^T)[i][j]  once per call, written packed for pg_gemm
 *   V[p] (C, T) = (B^T d B)[i][j]  input transform (threads over c, tile rows)
 *   M[p] (O, T) = U[p] . V[p]      16 packed GEMMs (threads inside pg_gemm)
 *   out          = A^T M A + bias  output transform (threads over o, tile rows)
 * Tiles are numbered over the whole batch (image-major, then row-major), and
 * chunks are runs of that numbering, so small images still give the GEMMs
 * wide N and scratch does not grow with B or H*W. fp32 error: the transforms
 * add at most 4 terms per stage with weights 1 or 1/2, a few ulp of the
 * operands (measured in tests/ops/test_conv2d.c).
 */
enum { WG_TB = 64 }; /* tiles per transform block (stack buffers) */
/* Floats for one chunk's V and M: 16 MiB (measured on SD 64x64x320, 2
 * threads: 8, 16 and 32 MiB chunks within noise of each other). */
#define WG_BUDGET (AP_CONV2D_COL_FLOATS / 2)


/* Tiles per chunk (tiles counted over the batch, image-major, row-major in
 * each image): the fewest equal chunks whose V and M, 16 (C + O) T floats,
 * fit WG_BUDGET, T rounded up to a multiple of 64 (at least 64) so the
 * GEMMs' 32-column panels split evenly over 2 threads (measured: 96-tile
 * chunks ran ~35% slower than 192-tile ones on 2 threads). */
static int wg_chunk_tiles(const conv_dims *d) {
    const int64_t ntile = (int64_t)d->B * wg_tiles_h(d) * wg_tiles_w(d);
    int64_t tmax = (int64_t)(WG_BUDGET / ((size_t)16 * ((size_t)d->C + d->O))) / 64 * 64;
    if (tmax < 64) tmax = 64;
    if (tmax >= ntile) return (int)ntile;
    int64_t n = (ntile + tmax - 1) / tmax, t = (ntile + n - 1) / n;
    return (int)((t + 63) / 64 * 64);
}

/* Scratch floats: packed U (16 x O rounded up to 12 x C), V and M of a chunk. */
size_t ap_wg_floats(const conv_dims *d) {
    size_t T = (size_t)wg_chunk_tiles(d);
    return (size_t)16 * ap_pg_mpad(d->O) * d->C + (size_t)16 * ((size_t)d->C + d->O) * T;
}

/* Up[p] = pg_pack_a layout of U[p] (O, C), rows O..Mp-1 zero. */
static void wg_weights(const ap_ctx *ctx, const conv_dims *d, const void *w,
                       float *Up) {
    const int O = d->O, C = d->C, Mp = ap_pg_mpad(O);
    const size_t per = (size_t)Mp * C;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int m = 0; m < Mp; m++) {
        const int ip = m / PG_MR, r = m % PG_MR;
        for (int c = 0; c < C; c++) {
            const int k0 = c / PG_KC * PG_KC, kc = C - k0 < PG_KC ? C - k0 : PG_KC;
            const size_t at =
                (size_t)Mp * k0 + (size_t)ip * PG_MR * kc + (size_t)(c - k0) * PG_MR + r;
            float u[16] = {0};
            if (m < O) {
                float g[9]; /* the 3x3 kernel, widened from d->wdt */
                for (int i = 0; i < 9; i++)
                    g[i] = ap_widen_at(w, d->wdt, ((size_t)m * C + c) * 9 + i);
                float t[4][3]; /* G g */
                for (int v = 0; v < 3; v++) {
                    t[0][v] = g[v];
                    t[1][v] = 0.5f * (g[v] + g[3 + v] + g[6 + v]);
                    t[2][v] = 0.5f * (g[v] - g[3 + v] + g[6 + v]);
                    t[3][v] = g[6 + v];
                }
                for (int i = 0; i < 4; i++) { /* (G g) G^T */
                    u[4 * i + 0] = t[i][0];
                    u[4 * i + 1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                    u[4 * i + 2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                    u[4 * i + 3] = t[i][2];
                }
            }
            for (int p = 0; p < 16; p++) Up[p * per + at] = u[p];
        }
    }
}

/* V[p][c][t - t0] for the chunk's tiles t in [t0, t1), t = g*tw + tj with g
 * the tile row over the batch; V[p] has row stride ldT. */
AP_ISA_INLINE void wg_input_row_body(const conv_dims *d, const float *xs, int t0, int t1,
                                     float *V, int ldT, int c, int g) {
    const int C = d->C, H = d->H, W = d->W, th = wg_tiles_h(d), tw = wg_tiles_w(d);
    const size_t ps = (size_t)C * ldT;
    const int bi = g / th, ti = g % th;
    const int js = t0 - g * tw > 0 ? t0 - g * tw : 0;
    const int je = t1 - g * tw < tw ? t1 - g * tw : tw;
    const float *xc = xs + ((size_t)bi * C + c) * H * W;
    for (int tj0 = js; tj0 < je; tj0 += WG_TB) {
        const int nt = je - tj0 < WG_TB ? je - tj0 : WG_TB;
        const int xs0 = 2 * tj0 - 1, width = 2 * nt + 2;
        _Alignas(64) float rows[4][2 * WG_TB + 2], s[4][2 * WG_TB + 2];
        int klo = -xs0 > 0 ? -xs0 : 0, khi = W - xs0 < width ? W - xs0 : width;
        for (int r = 0; r < 4; r++) {
            const int y = 2 * ti - 1 + r;
            if (y < 0 || y >= H) {
                memset(rows[r], 0, sizeof(float) * (size_t)width);
                continue;
            }
            for (int k = 0; k < klo; k++) rows[r][k] = 0.0f;
            memcpy(rows[r] + klo, xc + (size_t)y * W + xs0 + klo,
                   sizeof(float) * (size_t)(khi - klo));
            for (int k = khi; k < width; k++) rows[r][k] = 0.0f;
        }
        for (int k = 0; k < width; k++) { /* B^T d */
            s[0][k] = rows[0][k] - rows[2][k];
            s[1][k] = rows[1][k] + rows[2][k];
            s[2][k] = rows[2][k] - rows[1][k];
            s[3][k] = rows[1][k] - rows[3][k];
        }
        float *v = V + (size_t)c * ldT + ((size_t)g * tw + tj0 - t0);
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
            const float *si = s[i];
            float *v0 = v + 4 * i * ps, *v1 = v0 + ps, *v2 = v1 + ps, *v3 = v2 + ps;
            for (int t = 0; t < nt; t++) {
                v0[t] = si[2 * t] - si[2 * t + 2];
                v1[t] = si[2 * t + 1] + si[2 * t + 2];
                v2[t] = si[2 * t + 2] - si[2 * t + 1];
                v3[t] = si[2 * t + 1] - si[2 * t + 3];
            }
        }
    }
}
AP_ISA_KERNEL(wg_input_row, (const conv_dims *d, const float *xs, int t0, int t1, float *V,
                             int ldT, int c, int g), (d, xs, t0, t1, V, ldT, c, g));

/* V for tiles [t0, t1): threads over (channel, tile row). */
static void wg_input(const ap_ctx *ctx, const conv_dims *d, const float *xs, int t0, int t1,
                     float *V, int ldT) {
    const int C = d->C, tw = wg_tiles_w(d), g0 = t0 / tw, g1 = (t1 - 1) / tw + 1;
    void (*const row)(const conv_dims *, const float *, int, int, float *, int, int, int) =
        ap_isa_pick(ctx, wg_input_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) collapse(2)
    for (int c = 0; c < C; c++)
        for (int g = g0; g < g1; g++) row(d, xs, t0, t1, V, ldT, c, g);
}

/* out tiles t in [t0, t1) = A^T M A + bias (may be NULL). */
AP_ISA_INLINE void wg_output_row_body(const conv_dims *d, const float *M, int ldT, int t0,
                                      int t1, const float *bias, float *out, int o, int g) {
    const int O = d->O, Ho = d->Ho, Wo = d->Wo, th = wg_tiles_h(d), tw = wg_tiles_w(d);
    const size_t ps = (size_t)O * ldT;
    const int bi = g / th, ti = g % th;
    const int js = t0 - g * tw > 0 ? t0 - g * tw : 0;
    const int je = t1 - g * tw < tw ? t1 - g * tw : tw;
    const float bo = bias ? bias[o] : 0.0f;
    float *yo = out + ((size_t)bi * O + o) * Ho * Wo;
    for (int tj0 = js; tj0 < je; tj0 += WG_TB) {
        const int nt = je - tj0 < WG_TB ? je - tj0 : WG_TB;
        _Alignas(64) float q[2][4][WG_TB], yb[2][2 * WG_TB];
        const float *m = M + (size_t)o * ldT + ((size_t)g * tw + tj0 - t0);
        for (int j = 0; j < 4; j++) { /* A^T M */
            const float *m0 = m + j * ps, *m1 = m0 + 4 * ps, *m2 = m1 + 4 * ps,
                        *m3 = m2 + 4 * ps;
            for (int t = 0; t < nt; t++) {
                q[0][j][t] = m0[t] + m1[t] + m2[t];
                q[1][j][t] = m1[t] - m2[t] - m3[t];
            }
        }
        for (int a = 0; a < 2; a++) /* (A^T M) A */
            for (int t = 0; t < nt; t++) {
                yb[a][2 * t] = q[a][0][t] + q[a][1][t] + q[a][2][t] + bo;
                yb[a][2 * t + 1] = q[a][1][t] - q[a][2][t] - q[a][3][t] + bo;
            }
        const int ncol = Wo - 2 * tj0 < 2 * nt ? Wo - 2 * tj0 : 2 * nt;
        for (int a = 0; a < 2; a++)
            if (2 * ti + a < Ho)
                memcpy(yo + (size_t)(2 * ti + a) * Wo + 2 * tj0, yb[a],
                       sizeof(float) * (size_t)ncol);
    }
}
AP_ISA_KERNEL(wg_output_row, (const conv_dims *d, const float *M, int ldT, int t0, int t1,
                              const float *bias, float *out, int o, int g),
              (d, M, ldT, t0, t1, bias, out, o, g));

/* out tiles [t0, t1): threads over (output channel, tile row). */
static void wg_output(const ap_ctx *ctx, const conv_dims *d, const float *M, int ldT, int t0,
                      int t1, const float *bias, float *out) {
    const int O = d->O, tw = wg_tiles_w(d), g0 = t0 / tw, g1 = (t1 - 1) / tw + 1;
    void (*const row)(const conv_dims *, const float *, int, int, int, const float *, float *,
                      int, int) = ap_isa_pick(ctx, wg_output_row);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) collapse(2)
    for (int o = 0; o < O; o++)
        for (int g = g0; g < g1; g++) row(d, M, ldT, t0, t1, bias, out, o, g);
}

/* out (B, O, Ho, Wo) = conv3x3/s1/p1(xs, w (O, C*9)) (+ bias); scr holds
 * wg_floats(d) floats. */
void ap_wg_run(const ap_ctx *ctx, const conv_dims *d, const float *xs,
                   const void *w, const float *bias, float *out, float *scr) {
    const int C = d->C, O = d->O;
    const int ntile = d->B * wg_tiles_h(d) * wg_tiles_w(d), ldT = wg_chunk_tiles(d);
    const size_t per = (size_t)ap_pg_mpad(O) * C;
    float *Up = scr, *V = Up + 16 * per, *M = V + (size_t)16 * C * ldT;
    wg_weights(ctx, d, w, Up);
    for (int t0 = 0; t0 < ntile; t0 += ldT) {
        const int t1 = t0 + ldT < ntile ? t0 + ldT : ntile, T = t1 - t0;
        wg_input(ctx, d, xs, t0, t1, V, ldT);
        for (int p = 0; p < 16; p++) {
            ap_pg_rows_arg a = {V + (size_t)p * C * ldT, ldT};
            ap_pg_gemm(ctx, O, T, C, Up + p * per, ap_pg_pack_rows, &a, M + (size_t)p * O * ldT,
                    ldT, 0, NULL);
        }
        wg_output(ctx, d, M, ldT, t0, t1, bias, out);
    }
}
#endif
