/* cuda_attention.cu: fused multi-head attention forward and backward
 * (ops/attention.h) on the GPU, FlashAttention-2's algorithm without a
 * stored score matrix: the forward keeps an online softmax per query row
 * and saves lse = m + log(l); the backward recomputes P = exp(S - lse).
 *
 * Accumulation rule: dq, dk, dv are written (=).
 *
 * First version, written to be right before it is fast (docs/cuda.md):
 * one warp per row, lane l holding elements d = l + 32 p (p < ceil(D/32),
 * a template parameter: D = 40, 64, 80 take 2-3 registers, 160 takes 5),
 * q.k and dout.v as warp-shuffle sums, keys and values read from global
 * memory (through L1/L2) rather than staged tiles in shared memory. The
 * tiling arithmetic (rows per block, lanes, causal ranges, offsets) is in
 * cuda_index.h and tested on the CPU.
 *
 *   forward:   per query row i: for keys j < ap_cu_attn_keys(i):
 *              s = scale q_i.k_j, online max / sum, acc += p v_j
 *   backward:  Drow_i = dout_i . out_i                 (scratch, B*H*Lq floats)
 *              dq_i = scale sum_j p_ij (dout_i.v_j - Drow_i) k_j     (per query row)
 *              dv_j = sum_i p_ij dout_i,
 *              dk_j = scale sum_i p_ij (dout_i.v_j - Drow_i) q_i     (per key row)
 */
#include "cuda_common.h"
#include "cuda_ops.h"

static int present(const ap_tensor *t) { return t && t->data; }

typedef struct attn_dims {
    int B, H, Lq, Lk, D, causal;
    float scale;
} attn_dims;

__device__ static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Loads row (b, l, h) of x (B, L, H*D) into r[PL] (zeros past D). */
template <int PL>
__device__ static inline void load_row(float *r, const float *x, int64_t b, int64_t l, int64_t h,
                                       int64_t L, const attn_dims &a) {
    const float *row = x + ap_cu_attn_off(b, l, h, 0, L, a.H, a.D);
#pragma unroll
    for (int p = 0; p < PL; p++) {
        const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
        r[p] = d < a.D ? row[d] : 0.0f;
    }
}

template <int PL>
__device__ static inline float dot_row(const float *r, const float *x, int64_t b, int64_t l,
                                       int64_t h, int64_t L, const attn_dims &a) {
    const float *row = x + ap_cu_attn_off(b, l, h, 0, L, a.H, a.D);
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < PL; p++) {
        const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
        if (d < a.D) s += r[p] * row[d];
    }
    return warp_sum(s);
}

template <int PL>
__device__ static inline void store_row(float *x, const float *r, float mul, int64_t b, int64_t l,
                                        int64_t h, int64_t L, const attn_dims &a) {
    float *row = x + ap_cu_attn_off(b, l, h, 0, L, a.H, a.D);
#pragma unroll
    for (int p = 0; p < PL; p++) {
        const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
        if (d < a.D) row[d] = r[p] * mul;
    }
}

/* grid (ap_cu_attn_row_blocks(Lq), B*H), block (32, AP_CU_ATTN_ROWS). */
template <int PL>
__global__ void attn_fwd_kernel(float *out, float *lse, const float *q, const float *k,
                                const float *v, attn_dims a) {
    const int64_t i = (int64_t)blockIdx.x * AP_CU_ATTN_ROWS + threadIdx.y;
    const int64_t b = blockIdx.y / a.H, h = blockIdx.y % a.H;
    if (i >= a.Lq) return; /* the whole warp leaves together */
    float qr[PL], acc[PL];
    load_row<PL>(qr, q, b, i, h, a.Lq, a);
#pragma unroll
    for (int p = 0; p < PL; p++) acc[p] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t nk = ap_cu_attn_keys(i, a.Lk, a.causal);
    for (int64_t j = 0; j < nk; j++) {
        const float s = a.scale * dot_row<PL>(qr, k, b, j, h, a.Lk, a);
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn); /* 0 on the first key (m = -inf) */
        const float e = expf(s - mn);
        l = l * corr + e;
        const float *vr = v + ap_cu_attn_off(b, j, h, 0, a.Lk, a.H, a.D);
#pragma unroll
        for (int p = 0; p < PL; p++) {
            const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
            acc[p] = acc[p] * corr + (d < a.D ? e * vr[d] : 0.0f);
        }
        m = mn;
    }
    store_row<PL>(out, acc, 1.0f / l, b, i, h, a.Lq, a);
    if (lse && threadIdx.x == 0) lse[(b * a.H + h) * a.Lq + i] = m + logf(l);
}

/* Drow[(b, h), i] = dout_i . out_i. */
template <int PL>
__global__ void attn_drow_kernel(float *drow, const float *dout, const float *out, attn_dims a) {
    const int64_t i = (int64_t)blockIdx.x * AP_CU_ATTN_ROWS + threadIdx.y;
    const int64_t b = blockIdx.y / a.H, h = blockIdx.y % a.H;
    if (i >= a.Lq) return;
    float g[PL];
    load_row<PL>(g, dout, b, i, h, a.Lq, a);
    const float s = dot_row<PL>(g, out, b, i, h, a.Lq, a);
    if (threadIdx.x == 0) drow[(b * a.H + h) * a.Lq + i] = s;
}

template <int PL>
__global__ void attn_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                               const float *v, const float *lse, const float *drow, attn_dims a) {
    const int64_t i = (int64_t)blockIdx.x * AP_CU_ATTN_ROWS + threadIdx.y;
    const int64_t b = blockIdx.y / a.H, h = blockIdx.y % a.H;
    if (i >= a.Lq) return;
    float qr[PL], g[PL], acc[PL];
    load_row<PL>(qr, q, b, i, h, a.Lq, a);
    load_row<PL>(g, dout, b, i, h, a.Lq, a);
#pragma unroll
    for (int p = 0; p < PL; p++) acc[p] = 0.0f;
    const int64_t r = (b * a.H + h) * a.Lq + i;
    const float li = lse[r], di = drow[r];
    const int64_t nk = ap_cu_attn_keys(i, a.Lk, a.causal);
    for (int64_t j = 0; j < nk; j++) {
        const float pij = expf(a.scale * dot_row<PL>(qr, k, b, j, h, a.Lk, a) - li);
        const float ds = pij * (dot_row<PL>(g, v, b, j, h, a.Lk, a) - di);
        const float *kr = k + ap_cu_attn_off(b, j, h, 0, a.Lk, a.H, a.D);
#pragma unroll
        for (int p = 0; p < PL; p++) {
            const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
            if (d < a.D) acc[p] += ds * kr[d];
        }
    }
    store_row<PL>(dq, acc, a.scale, b, i, h, a.Lq, a);
}

/* grid (ap_cu_attn_row_blocks(Lk), B*H): one warp per key row j. */
template <int PL>
__global__ void attn_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *lse,
                                const float *drow, attn_dims a) {
    const int64_t j = (int64_t)blockIdx.x * AP_CU_ATTN_ROWS + threadIdx.y;
    const int64_t b = blockIdx.y / a.H, h = blockIdx.y % a.H;
    if (j >= a.Lk) return;
    float kr[PL], vr[PL], ak[PL], av[PL];
    load_row<PL>(kr, k, b, j, h, a.Lk, a);
    load_row<PL>(vr, v, b, j, h, a.Lk, a);
#pragma unroll
    for (int p = 0; p < PL; p++) ak[p] = av[p] = 0.0f;
    for (int64_t i = ap_cu_attn_first_query(j, a.causal); i < a.Lq; i++) {
        const int64_t r = (b * a.H + h) * a.Lq + i;
        const float pij = expf(a.scale * dot_row<PL>(kr, q, b, i, h, a.Lq, a) - lse[r]);
        const float ds = pij * (dot_row<PL>(vr, dout, b, i, h, a.Lq, a) - drow[r]);
        const float *qi = q + ap_cu_attn_off(b, i, h, 0, a.Lq, a.H, a.D);
        const float *gi = dout + ap_cu_attn_off(b, i, h, 0, a.Lq, a.H, a.D);
#pragma unroll
        for (int p = 0; p < PL; p++) {
            const int d = (int)threadIdx.x + AP_CU_ATTN_LANES * p;
            if (d < a.D) {
                av[p] += pij * gi[d];
                ak[p] += ds * qi[d];
            }
        }
    }
    if (dk) store_row<PL>(dk, ak, a.scale, b, j, h, a.Lk, a);
    if (dv) store_row<PL>(dv, av, 1.0f, b, j, h, a.Lk, a);
}

static attn_dims dims_of(const ap_tensor *q, const ap_tensor *k, int n_heads, float scale,
                         int causal) {
    attn_dims a;
    a.B = (int)q->shape[0];
    a.Lq = (int)q->shape[1];
    a.Lk = (int)k->shape[1];
    a.H = n_heads;
    a.D = (int)(q->shape[2] / n_heads);
    a.scale = scale;
    a.causal = causal;
    return a;
}

static int check_d(const char *op, const attn_dims *a) {
    if (a->D < 1 || a->D > AP_CU_ATTN_MAX_D)
        return ap_fail("%s: head size %d: the CUDA kernels take 1 .. %d", op, a->D,
                       AP_CU_ATTN_MAX_D);
    return AP_OK;
}

#define ATTN_DISPATCH(PLV, KERNEL, GRID, ...)                                                  \
    switch (PLV) {                                                                             \
    case 1: AP_LAUNCH_GRID(ctx, KERNEL<1>, GRID, blk, what, __VA_ARGS__); break;               \
    case 2: AP_LAUNCH_GRID(ctx, KERNEL<2>, GRID, blk, what, __VA_ARGS__); break;               \
    case 3: AP_LAUNCH_GRID(ctx, KERNEL<3>, GRID, blk, what, __VA_ARGS__); break;               \
    case 4: AP_LAUNCH_GRID(ctx, KERNEL<4>, GRID, blk, what, __VA_ARGS__); break;               \
    default: AP_LAUNCH_GRID(ctx, KERNEL<5>, GRID, blk, what, __VA_ARGS__); break;              \
    }

static void what_of(char *what, size_t len, const attn_dims *a) {
    snprintf(what, len, "B %d, Lq %d, Lk %d, heads %d, D %d%s", a->B, a->Lq, a->Lk, a->H, a->D,
             a->causal ? ", causal" : "");
}

extern "C" int ap_cu_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse,
                                       const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                                       int n_heads, float scale, int causal) {
    const attn_dims a = dims_of(q, k, n_heads, scale, causal);
    AP_TRY(check_d("attention_forward", &a));
    char what[128];
    what_of(what, sizeof what, &a);
    const dim3 grid(ap_cu_attn_row_blocks(a.Lq), a.B * a.H), blk(AP_CU_ATTN_LANES, AP_CU_ATTN_ROWS);
    ATTN_DISPATCH(ap_cu_attn_per_lane(a.D), attn_fwd_kernel, grid, out->data,
                  present(lse) ? lse->data : (float *)NULL, q->data, k->data, v->data, a);
    return AP_OK;
}

extern "C" size_t ap_cu_attention_backward_scratch(ap_ctx *ctx, const ap_tensor *dq,
                                                   const ap_tensor *dk, const ap_tensor *dv,
                                                   const ap_tensor *dout, const ap_tensor *q,
                                                   const ap_tensor *k, const ap_tensor *v,
                                                   const ap_tensor *out, const ap_tensor *lse,
                                                   int n_heads, float scale, int causal) {
    return ap_align64((size_t)q->shape[0] * (size_t)n_heads * (size_t)q->shape[1] * sizeof(float));
}

extern "C" int ap_cu_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk,
                                        const ap_tensor *dv, const ap_tensor *dout,
                                        const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                                        const ap_tensor *out, const ap_tensor *lse, int n_heads,
                                        float scale, int causal) {
    const attn_dims a = dims_of(q, k, n_heads, scale, causal);
    AP_TRY(check_d("attention_backward", &a));
    char what[128];
    what_of(what, sizeof what, &a);
    float *drow = (float *)ap_cu_scratch(
        ctx, ap_cu_attention_backward_scratch(ctx, dq, dk, dv, dout, q, k, v, out, lse, n_heads,
                                              scale, causal),
        "attention_backward rows dout.out");
    if (!drow) return AP_ERR;
    const int pl = ap_cu_attn_per_lane(a.D);
    const dim3 blk(AP_CU_ATTN_LANES, AP_CU_ATTN_ROWS);
    const dim3 gq(ap_cu_attn_row_blocks(a.Lq), a.B * a.H), gk(ap_cu_attn_row_blocks(a.Lk), a.B * a.H);
    ATTN_DISPATCH(pl, attn_drow_kernel, gq, drow, dout->data, out->data, a);
    if (present(dq))
        ATTN_DISPATCH(pl, attn_dq_kernel, gq, dq->data, dout->data, q->data, k->data, v->data,
                      lse->data, drow, a);
    if (present(dk) || present(dv))
        ATTN_DISPATCH(pl, attn_dkv_kernel, gk, present(dk) ? dk->data : (float *)NULL,
                      present(dv) ? dv->data : (float *)NULL, dout->data, q->data, k->data,
                      v->data, lse->data, drow, a);
    return AP_OK;
}
