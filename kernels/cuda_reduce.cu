/* cuda_reduce.cu: the CUDA bodies of the ops that reduce: GroupNorm and
 * LayerNorm (ops/norm.h), softmax (ops/softmax.h), the channel-bias
 * gradient, the row ops of ops/rows.h (gathers, sums, the non-finite
 * count, l2 normalisation, row dot), colourfulness (ops/image.h) and the
 * timestep embedding's backward.
 *
 * Accumulation rule (as the public ops): parameter grads (dgamma, dbeta) +=,
 * activation grads =. One block per row / group / channel, reductions in
 * double in a fixed tree order (ap_cu_reduce_threads threads), so results
 * are deterministic run to run; they differ from the CPU's order only by
 * rounding (tolerances: tests/cuda/test_cuda_backend_ops.c, docs/cuda.md).
 */
#include "cuda_common.h"
#include "cuda_ops.h"

static int present(const ap_tensor *t) { return t && t->data; }

/* Sum of v over the block (blockDim.x a power of two <= 512); every thread
 * gets the total. sh: 512 doubles of shared memory. */
__device__ static double block_sum(double v, double *sh) {
    const int t = threadIdx.x;
    __syncthreads(); /* sh may still be read by a previous call */
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    return sh[0];
}

__device__ static float block_max(float v, float *sh) {
    const int t = threadIdx.x;
    __syncthreads();
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] = fmaxf(sh[t], sh[t + s]);
        __syncthreads();
    }
    return sh[0];
}

/* ---- GroupNorm -------------------------------------------------------- */

/* Block (b, g): its cpg channels of S positions, contiguous. */
__global__ void gn_fwd_kernel(float *out, float *mean, float *rstd, const float *in,
                              const float *gamma, const float *beta, int64_t C, int64_t S,
                              int G, float eps) {
    __shared__ double sh[512];
    const int64_t bg = blockIdx.x, cpg = C / G, n = cpg * S, g = bg % G;
    const float *x = in + bg * n;
    float *y = out + bg * n;
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    const double m = block_sum(s, sh) / (double)n;
    double v = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        double d = x[i] - m;
        v += d * d;
    }
    const double var = block_sum(v, sh) / (double)n;
    const float mf = (float)m, rf = (float)(1.0 / sqrt(var + (double)eps));
    if (threadIdx.x == 0) {
        mean[bg] = mf;
        rstd[bg] = rf;
    }
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t c = g * cpg + i / S;
        float h = (x[i] - mf) * rf;
        if (gamma) h = h * gamma[c];
        if (beta) h = h + beta[c];
        y[i] = h;
    }
}

/* din for block (b, g): rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)). */
__global__ void gn_bwd_din_kernel(float *din, const float *dout, const float *in, const float *mean,
                                  const float *rstd, const float *gamma, int64_t C, int64_t S,
                                  int G) {
    __shared__ double sh[512];
    const int64_t bg = blockIdx.x, cpg = C / G, n = cpg * S, g = bg % G;
    const float *x = in + bg * n, *dy = dout + bg * n;
    const float m = mean[bg], r = rstd[bg];
    double s1 = 0, s2 = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t c = g * cpg + i / S;
        double dyg = (double)dy[i] * (gamma ? gamma[c] : 1.0f);
        s1 += dyg;
        s2 += dyg * (double)((x[i] - m) * r);
    }
    const double a = block_sum(s1, sh) / (double)n;
    const double b = block_sum(s2, sh) / (double)n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t c = g * cpg + i / S;
        double dyg = (double)dy[i] * (gamma ? gamma[c] : 1.0f);
        double xh = (double)((x[i] - m) * r);
        din[bg * n + i] = (float)((double)r * (dyg - a - xh * b));
    }
}

/* dgamma[c] += sum_{b, s} dy * xhat, dbeta[c] += sum_{b, s} dy: block c. */
__global__ void gn_bwd_param_kernel(float *dgamma, float *dbeta, const float *dout, const float *in,
                                    const float *mean, const float *rstd, int64_t B, int64_t C,
                                    int64_t S, int G) {
    __shared__ double sh[512];
    const int64_t c = blockIdx.x, cpg = C / G;
    double sg = 0, sb = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t bg = b * G + c / cpg;
        const float m = mean[bg], r = rstd[bg];
        const float *x = in + (b * C + c) * S, *dy = dout + (b * C + c) * S;
        for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
            sb += dy[i];
            sg += (double)dy[i] * (double)((x[i] - m) * r);
        }
    }
    const double tg = block_sum(sg, sh), tb = block_sum(sb, sh);
    if (threadIdx.x == 0) {
        if (dgamma) dgamma[c] += (float)tg;
        if (dbeta) dbeta[c] += (float)tb;
    }
}

static int64_t spatial(const ap_tensor *t) {
    int64_t s = 1;
    for (int i = 2; i < t->ndim; i++) s *= t->shape[i];
    return s;
}

extern "C" int ap_cu_group_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                                        const ap_tensor *rstd, const ap_tensor *in,
                                        const ap_tensor *gamma, const ap_tensor *beta, int groups,
                                        float eps) {
    const int64_t B = in->shape[0], C = in->shape[1], S = spatial(in);
    const int th = ap_cu_reduce_threads(C / groups * S);
    char what[96];
    snprintf(what, sizeof what, "B %lld, C %lld, S %lld, groups %d", (long long)B, (long long)C,
             (long long)S, groups);
    AP_LAUNCH_GRID(ctx, gn_fwd_kernel, (unsigned)(B * groups), th, what, out->data, mean->data,
                   rstd->data, in->data, present(gamma) ? gamma->data : NULL,
                   present(beta) ? beta->data : NULL, C, S, groups, eps);
    return AP_OK;
}

extern "C" int ap_cu_group_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                                         const ap_tensor *dbeta, const ap_tensor *dout,
                                         const ap_tensor *in, const ap_tensor *mean,
                                         const ap_tensor *rstd, const ap_tensor *gamma,
                                         int groups) {
    const int64_t B = in->shape[0], C = in->shape[1], S = spatial(in);
    char what[96];
    snprintf(what, sizeof what, "B %lld, C %lld, S %lld, groups %d", (long long)B, (long long)C,
             (long long)S, groups);
    /* parameters first: din may alias dout */
    if (present(dgamma) || present(dbeta))
        AP_LAUNCH_GRID(ctx, gn_bwd_param_kernel, (unsigned)C, ap_cu_reduce_threads(B * S), what,
                       present(dgamma) ? dgamma->data : NULL, present(dbeta) ? dbeta->data : NULL,
                       dout->data, in->data, mean->data, rstd->data, B, C, S, groups);
    if (present(din))
        AP_LAUNCH_GRID(ctx, gn_bwd_din_kernel, (unsigned)(B * groups),
                       ap_cu_reduce_threads(C / groups * S), what, din->data, dout->data, in->data,
                       mean->data, rstd->data, present(gamma) ? gamma->data : NULL, C, S, groups);
    return AP_OK;
}

/* ---- LayerNorm: GroupNorm's kernels with one group per row, and per-channel
 * parameters along the row ------------------------------------------------- */

__global__ void ln_fwd_kernel(float *out, float *mean, float *rstd, const float *in,
                              const float *gamma, const float *beta, int64_t C, float eps) {
    __shared__ double sh[512];
    const int64_t r = blockIdx.x;
    const float *x = in + r * C;
    double s = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += x[i];
    const double m = block_sum(s, sh) / (double)C;
    double v = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        double d = x[i] - m;
        v += d * d;
    }
    const double var = block_sum(v, sh) / (double)C;
    const float mf = (float)m, rf = (float)(1.0 / sqrt(var + (double)eps));
    if (threadIdx.x == 0) {
        mean[r] = mf;
        rstd[r] = rf;
    }
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float h = (x[i] - mf) * rf;
        if (gamma) h = h * gamma[i];
        if (beta) h = h + beta[i];
        out[r * C + i] = h;
    }
}

__global__ void ln_bwd_din_kernel(float *din, const float *dout, const float *in, const float *mean,
                                  const float *rstd, const float *gamma, int64_t C) {
    __shared__ double sh[512];
    const int64_t r = blockIdx.x;
    const float *x = in + r * C, *dy = dout + r * C;
    const float m = mean[r], rs = rstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        double dyg = (double)dy[i] * (gamma ? gamma[i] : 1.0f);
        s1 += dyg;
        s2 += dyg * (double)((x[i] - m) * rs);
    }
    const double a = block_sum(s1, sh) / (double)C, b = block_sum(s2, sh) / (double)C;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        double dyg = (double)dy[i] * (gamma ? gamma[i] : 1.0f);
        double xh = (double)((x[i] - m) * rs);
        din[r * C + i] = (float)((double)rs * (dyg - a - xh * b));
    }
}

/* dgamma[c] += sum_r dy * xhat, dbeta[c] += sum_r dy: one thread per channel,
 * rows in order (coalesced across threads). */
__global__ void ln_bwd_param_kernel(float *dgamma, float *dbeta, const float *dout, const float *in,
                                    const float *mean, const float *rstd, int64_t R, int64_t C) {
    AP_GRID_LOOP(c, C) {
        double sg = 0, sb = 0;
        for (int64_t r = 0; r < R; r++) {
            float dy = dout[r * C + c];
            sb += dy;
            sg += (double)dy * (double)((in[r * C + c] - mean[r]) * rstd[r]);
        }
        if (dgamma) dgamma[c] += (float)sg;
        if (dbeta) dbeta[c] += (float)sb;
    }
}

extern "C" int ap_cu_layer_norm_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *mean,
                                        const ap_tensor *rstd, const ap_tensor *in,
                                        const ap_tensor *gamma, const ap_tensor *beta, float eps) {
    const int64_t C = in->shape[in->ndim - 1], R = ap_numel(in) / C;
    char what[64];
    snprintf(what, sizeof what, "rows %lld, C %lld", (long long)R, (long long)C);
    AP_LAUNCH_GRID(ctx, ln_fwd_kernel, (unsigned)R, ap_cu_reduce_threads(C), what, out->data,
                   mean->data, rstd->data, in->data, present(gamma) ? gamma->data : NULL,
                   present(beta) ? beta->data : NULL, C, eps);
    return AP_OK;
}

extern "C" int ap_cu_layer_norm_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dgamma,
                                         const ap_tensor *dbeta, const ap_tensor *dout,
                                         const ap_tensor *in, const ap_tensor *mean,
                                         const ap_tensor *rstd, const ap_tensor *gamma) {
    const int64_t C = in->shape[in->ndim - 1], R = ap_numel(in) / C;
    char what[64];
    snprintf(what, sizeof what, "rows %lld, C %lld", (long long)R, (long long)C);
    /* parameters first: din may alias dout */
    if (present(dgamma) || present(dbeta))
        AP_LAUNCH(ctx, ln_bwd_param_kernel, C, present(dgamma) ? dgamma->data : NULL,
                  present(dbeta) ? dbeta->data : NULL, dout->data, in->data, mean->data,
                  rstd->data, R, C);
    if (present(din))
        AP_LAUNCH_GRID(ctx, ln_bwd_din_kernel, (unsigned)R, ap_cu_reduce_threads(C), what,
                       din->data, dout->data, in->data, mean->data, rstd->data,
                       present(gamma) ? gamma->data : NULL, C);
    return AP_OK;
}

/* ---- softmax ------------------------------------------------------------- */

__global__ void softmax_fwd_kernel(float *out, const float *in, int64_t N) {
    __shared__ double sh[512];
    const int64_t r = blockIdx.x;
    const float *x = in + r * N;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, (float *)sh);
    double s = 0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) s += expf(x[i] - mx);
    const float inv = (float)(1.0 / block_sum(s, sh));
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) out[r * N + i] = expf(x[i] - mx) * inv;
}

__global__ void softmax_bwd_kernel(float *din, const float *dout, const float *out, int64_t N) {
    __shared__ double sh[512];
    const int64_t r = blockIdx.x;
    double s = 0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) s += (double)dout[r * N + i] * out[r * N + i];
    const float dot = (float)block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
        din[r * N + i] = out[r * N + i] * (dout[r * N + i] - dot);
}

extern "C" int ap_cu_softmax_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const int64_t N = in->shape[in->ndim - 1], R = ap_numel(in) / N;
    AP_LAUNCH_GRID(ctx, softmax_fwd_kernel, (unsigned)R, ap_cu_reduce_threads(N), "rows",
                   out->data, in->data, N);
    return AP_OK;
}
extern "C" int ap_cu_softmax_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                      const ap_tensor *out) {
    const int64_t N = out->shape[out->ndim - 1], R = ap_numel(out) / N;
    AP_LAUNCH_GRID(ctx, softmax_bwd_kernel, (unsigned)R, ap_cu_reduce_threads(N), "rows",
                   din->data, dout->data, out->data, N);
    return AP_OK;
}

/* ---- channel bias gradient, row sums --------------------------------------- */

/* dbias[bc] = sum over the plane of dout (double): block bc. */
__global__ void plane_sum_kernel(float *dbias, const float *dout, int64_t P) {
    __shared__ double sh[512];
    double s = 0;
    for (int64_t i = threadIdx.x; i < P; i += blockDim.x) s += dout[blockIdx.x * P + i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) dbias[blockIdx.x] = (float)s;
}

extern "C" int ap_cu_add_channel_bias_backward(ap_ctx *ctx, const ap_tensor *din,
                                               const ap_tensor *dbias, const ap_tensor *dout) {
    const int64_t P = dout->shape[2] * dout->shape[3], BC = dout->shape[0] * dout->shape[1];
    if (present(dbias))
        AP_LAUNCH_GRID(ctx, plane_sum_kernel, (unsigned)BC, ap_cu_reduce_threads(P), "planes",
                       dbias->data, dout->data, P);
    if (present(din) && din->data != dout->data)
        CUDA_CHECK(cudaMemcpyAsync(din->data, dout->data, ap_nbytes(dout), cudaMemcpyDeviceToDevice,
                                   AP_STREAM(ctx)));
    return AP_OK;
}

__global__ void sum_rows_kernel(float *out, const float *in, int64_t R, int64_t r, int acc) {
    AP_GRID_LOOP(e, r) {
        float s = in[e];
        for (int64_t k = 1; k < R; k++) s = __fadd_rn(s, in[k * r + e]);
        out[e] = acc ? __fadd_rn(out[e], s) : s;
    }
}

extern "C" int ap_cu_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                              int accumulate) {
    const int64_t R = in->shape[0], r = ap_numel(in) / R;
    AP_LAUNCH(ctx, sum_rows_kernel, r, out->data, in->data, R, r, accumulate);
    return AP_OK;
}

/* ---- gathers --------------------------------------------------------------- */

extern "C" int ap_cu_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                 const int *idx, int m) {
    const int64_t r = ap_numel(in) / in->shape[0];
    for (int j = 0; j < m; j++)
        CUDA_CHECK(cudaMemcpyAsync(out->data + (int64_t)j * r, in->data + (int64_t)idx[j] * r,
                                   (size_t)r * sizeof(float), cudaMemcpyDeviceToDevice,
                                   AP_STREAM(ctx)));
    return AP_OK;
}

__global__ void add_row_kernel(float *d, const float *g, int64_t n) {
    AP_GRID_LOOP(e, n) d[e] = __fadd_rn(d[e], g[e]);
}

extern "C" int ap_cu_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                          const int *idx, int m) {
    const int64_t r = ap_numel(din) / din->shape[0];
    CUDA_CHECK(cudaMemsetAsync(din->data, 0, ap_nbytes(din), AP_STREAM(ctx)));
    for (int j = 0; j < m; j++) {
        float *d = din->data + (int64_t)idx[j] * r;
        const float *g = dout->data + (int64_t)j * r;
        int seen = 0; /* a first visit copies (keeps -0), later ones add */
        for (int q = 0; q < j && !seen; q++) seen = idx[q] == idx[j];
        if (!seen)
            CUDA_CHECK(cudaMemcpyAsync(d, g, (size_t)r * sizeof(float), cudaMemcpyDeviceToDevice,
                                       AP_STREAM(ctx)));
        else
            AP_LAUNCH(ctx, add_row_kernel, r, d, g, r);
    }
    return AP_OK;
}

/* ---- non-finite count ------------------------------------------------------- */

__global__ void nonfinite_kernel(unsigned long long *count, const float *x, int64_t n) {
    unsigned long long c = 0;
    AP_GRID_LOOP(i, n) c += !isfinite(x[i]);
    if (c) atomicAdd(count, c);
}
__global__ void count_out_kernel(float *out, const unsigned long long *count) {
    out[0] = (float)*count;
}

extern "C" size_t ap_cu_count_nonfinite_scratch(ap_ctx *ctx, const ap_tensor *out,
                                                const ap_tensor *in) {
    return 64;
}

extern "C" int ap_cu_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    unsigned long long *cnt = (unsigned long long *)ap_cu_scratch(ctx, 64, "count_nonfinite");
    if (!cnt) return AP_ERR;
    CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof *cnt, AP_STREAM(ctx)));
    AP_LAUNCH(ctx, nonfinite_kernel, ap_numel(in), cnt, in->data, ap_numel(in));
    AP_LAUNCH_GRID(ctx, count_out_kernel, 1, 1, "one value", out->data, cnt);
    return AP_OK;
}

/* ---- l2 normalisation, row dot ----------------------------------------------- */

__global__ void l2norm_fwd_kernel(float *u, float *norm, const float *v, int64_t D, float eps) {
    __shared__ double sh[512];
    const int64_t b = blockIdx.x;
    double s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += (double)v[b * D + i] * v[b * D + i];
    s = block_sum(s, sh);
    const float n = (float)sqrt(s), d = n > eps ? n : eps;
    __syncthreads(); /* every thread read v before u (may alias) is written */
    if (threadIdx.x == 0) norm[b] = n;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) u[b * D + i] = v[b * D + i] / d;
}

__global__ void l2norm_bwd_kernel(float *dv, const float *du, const float *u, const float *norm,
                                  int64_t D, float eps) {
    __shared__ double sh[512];
    const int64_t b = blockIdx.x;
    const float n = norm[b];
    if (!(n > eps)) {
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) dv[b * D + i] = du[b * D + i] / eps;
        return;
    }
    double s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += (double)u[b * D + i] * du[b * D + i];
    const double dot = block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        dv[b * D + i] = (float)((du[b * D + i] - u[b * D + i] * dot) / n);
}

__global__ void row_dot_kernel(float *out, const float *a, const float *b, int64_t D) {
    __shared__ double sh[512];
    const int64_t k = blockIdx.x;
    double s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += (double)a[k * D + i] * b[k * D + i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[k] = (float)s;
}

__global__ void row_dot_bwd_kernel(float *da, float *db, const float *dout, const float *a,
                                   const float *b, int64_t D, int64_t n) {
    AP_GRID_LOOP(i, n) {
        const float g = dout[i / D], av = a[i], bv = b[i];
        if (da) da[i] = g * bv;
        if (db) db[i] = g * av;
    }
}

extern "C" int ap_cu_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm,
                                    const ap_tensor *v, float eps) {
    const int64_t B = v->shape[0], D = v->shape[1];
    AP_LAUNCH_GRID(ctx, l2norm_fwd_kernel, (unsigned)B, ap_cu_reduce_threads(D), "rows", u->data,
                   norm->data, v->data, D, eps);
    return AP_OK;
}
extern "C" int ap_cu_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du,
                                     const ap_tensor *u, const ap_tensor *norm, float eps) {
    const int64_t B = u->shape[0], D = u->shape[1];
    AP_LAUNCH_GRID(ctx, l2norm_bwd_kernel, (unsigned)B, ap_cu_reduce_threads(D), "rows", dv->data,
                   du->data, u->data, norm->data, D, eps);
    return AP_OK;
}
extern "C" int ap_cu_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                     const ap_tensor *b) {
    const int64_t B = a->shape[0], D = a->shape[1];
    AP_LAUNCH_GRID(ctx, row_dot_kernel, (unsigned)B, ap_cu_reduce_threads(D), "rows", out->data,
                   a->data, b->data, D);
    return AP_OK;
}
extern "C" int ap_cu_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                      const ap_tensor *dout, const ap_tensor *a,
                                      const ap_tensor *b) {
    const int64_t D = a->shape[1], n = ap_numel(a);
    AP_LAUNCH(ctx, row_dot_bwd_kernel, n, present(da) ? da->data : NULL,
              present(db) ? db->data : NULL, dout->data, a->data, b->data, D, n);
    return AP_OK;
}

/* ---- colourfulness (cpu/image.c's statistics, in double) ------------------------ */

/* Statistics of image b (3, HW): st = m_rg, m_yb, v_rg, v_yb, s, m. */
__device__ static void colour_stats(const float *img, int64_t HW, double *st, double *sh) {
    const float *R = img, *G = img + HW, *Bc = img + 2 * HW;
    double s_rg = 0, s_yb = 0;
    for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        s_rg += r - g;
        s_yb += 0.5 * (r + g) - b;
    }
    const double m_rg = block_sum(s_rg, sh) / HW, m_yb = block_sum(s_yb, sh) / HW;
    double v_rg = 0, v_yb = 0;
    for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
        double r = R[p] * 0.5 + 0.5, g = G[p] * 0.5 + 0.5, b = Bc[p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        v_rg += a * a;
        v_yb += c * c;
    }
    const double vr = block_sum(v_rg, sh) / HW, vy = block_sum(v_yb, sh) / HW;
    st[0] = m_rg, st[1] = m_yb, st[2] = vr, st[3] = vy;
    st[4] = sqrt(vr + vy), st[5] = sqrt(m_rg * m_rg + m_yb * m_yb);
}

__global__ void colour_fwd_kernel(float *out, const float *image, int64_t HW) {
    __shared__ double sh[512];
    double st[6];
    colour_stats(image + blockIdx.x * 3 * HW, HW, st, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)(st[4] + 0.3 * st[5]);
}

__global__ void colour_bwd_kernel(float *dimage, const float *dout, const float *image, int64_t HW) {
    __shared__ double sh[512];
    double st[6];
    const float *img = image + blockIdx.x * 3 * HW;
    float *dimg = dimage + blockIdx.x * 3 * HW;
    colour_stats(img, HW, st, sh);
    const double dC = dout[blockIdx.x], m_rg = st[0], m_yb = st[1], s = st[4], m = st[5];
    const double ds = s > 0 ? dC / (2.0 * s) : 0.0;
    const double dm_rg = m > 0 ? dC * 0.3 * m_rg / m : 0.0, dm_yb = m > 0 ? dC * 0.3 * m_yb / m : 0.0;
    for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
        double r = img[p] * 0.5 + 0.5, g = img[HW + p] * 0.5 + 0.5, b = img[2 * HW + p] * 0.5 + 0.5;
        double a = r - g - m_rg, c = 0.5 * (r + g) - b - m_yb;
        double d_rg = ds * 2.0 * a / HW + dm_rg / HW;
        double d_yb = ds * 2.0 * c / HW + dm_yb / HW;
        dimg[p] = (float)(0.5 * (d_rg + 0.5 * d_yb));
        dimg[HW + p] = (float)(0.5 * (-d_rg + 0.5 * d_yb));
        dimg[2 * HW + p] = (float)(0.5 * (-d_yb));
    }
}

extern "C" int ap_cu_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out,
                                           const ap_tensor *image) {
    const int64_t B = image->shape[0], HW = image->shape[2] * image->shape[3];
    AP_LAUNCH_GRID(ctx, colour_fwd_kernel, (unsigned)B, 256, "images", out->data, image->data, HW);
    return AP_OK;
}
extern "C" int ap_cu_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage,
                                            const ap_tensor *dout, const ap_tensor *image) {
    const int64_t B = image->shape[0], HW = image->shape[2] * image->shape[3];
    AP_LAUNCH_GRID(ctx, colour_bwd_kernel, (unsigned)B, 256, "images", dimage->data, dout->data,
                   image->data, HW);
    return AP_OK;
}

/* ---- timestep embedding backward ---------------------------------------------- */

extern "C" int ap_cu_timestep_plan(const char *op, int64_t dim, float shift, int max_period,
                                   int *half, float *c, float *denom);

__global__ void timestep_bwd_kernel(float *dt, const float *dout, const float *t, int64_t dim,
                                    int half, float c, float denom, int sin_off, int cos_off,
                                    float scale) {
    __shared__ double sh[512];
    const int64_t b = blockIdx.x;
    const float *g = dout + b * dim;
    const float tb = t[b];
    double acc = 0;
    for (int k = threadIdx.x; k < half; k += blockDim.x) {
        float f = ap_cu_timestep_freq(c, denom, k);
        double a = (double)((tb * f) * scale);
        acc += (double)scale * f * ((double)g[sin_off + k] * cos(a) - (double)g[cos_off + k] * sin(a));
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) dt[b] = (float)acc;
}

extern "C" int ap_cu_timestep_embedding_backward(ap_ctx *ctx, const ap_tensor *dt,
                                                 const ap_tensor *dout, const ap_tensor *t,
                                                 int flip_sin_to_cos, float downscale_freq_shift,
                                                 float scale, int max_period) {
    const int64_t B = t->shape[0], dim = dout->shape[1];
    int half;
    float c, denom;
    AP_TRY(ap_cu_timestep_plan("timestep_embedding_backward", dim, downscale_freq_shift,
                               max_period, &half, &c, &denom));
    AP_LAUNCH_GRID(ctx, timestep_bwd_kernel, (unsigned)B, ap_cu_reduce_threads(half), "batch",
                   dt->data, dout->data, t->data, dim, half, c, denom, flip_sin_to_cos ? half : 0,
                   flip_sin_to_cos ? 0 : half, scale);
    return AP_OK;
}
