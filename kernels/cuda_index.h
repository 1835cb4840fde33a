/* cuda_index.h: the host-testable arithmetic of the CUDA backend: launch
 * shapes, tile counts, index maps, dtype-cast rules and device selection.
 *
 * Everything here is a `static inline` function marked AP_HD
 * (__host__ __device__ under nvcc, plain C otherwise), so the kernels of
 * kernels/ (the .cu files) and the CPU test tests/cuda/test_cuda_host.c run the same
 * code: the test checks these on every machine, with or without a GPU
 * (docs/cuda.md, "What is tested where").
 */
#ifndef AP_CUDA_INDEX_H
#define AP_CUDA_INDEX_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define AP_HD __host__ __device__
#else
#define AP_HD
#endif

/* ---- launch shapes ---------------------------------------------------- */

/* Threads of a block of the elementwise (grid-stride) kernels. */
#define AP_CU_THREADS 256
/* At most this many blocks; grid-stride loops cover the rest. */
#define AP_CU_MAX_BLOCKS 65535

/* Blocks for n elements at AP_CU_THREADS a block: ceil(n / 256), at least
 * 1 (a launch of 0 blocks is an error), at most AP_CU_MAX_BLOCKS. */
static inline AP_HD int ap_cu_blocks(int64_t n) {
    int64_t b = (n + AP_CU_THREADS - 1) / AP_CU_THREADS;
    if (b < 1) b = 1;
    if (b > AP_CU_MAX_BLOCKS) b = AP_CU_MAX_BLOCKS;
    return (int)b;
}

/* ceil(a / b) for b > 0. */
static inline AP_HD int64_t ap_cu_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- dtype casts (the same rules as io/dtype.h, bit for bit) ---------- */

static inline AP_HD uint32_t ap_cu_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return (uint32_t)__float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

static inline AP_HD float ap_cu_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* bf16 -> f32: the 16 bits are the high half of the float. */
static inline AP_HD float ap_cu_bf16_to_f32(uint16_t h) { return ap_cu_bits_f32((uint32_t)h << 16); }

/* f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
static inline AP_HD uint16_t ap_cu_f32_to_bf16(float f) {
    uint32_t u = ap_cu_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f16 -> f32, exact (subnormals, infinities and NaN included). */
static inline AP_HD float ap_cu_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return ap_cu_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return ap_cu_bits_f32(sign);
        /* subnormal: man * 2^-24, exact in float */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return ap_cu_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* f32 -> f16, round to nearest even; overflow gives infinity, NaN a NaN. */
static inline AP_HD uint16_t ap_cu_f32_to_f16(float f) {
    uint32_t u = ap_cu_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
    if (a < 0x38800000u) { /* below 2^-14: subnormal f16 (or zero) */
        if (a < 0x33000000u) return sign; /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        int shift = (int)(126 - e); /* m * 2^(e-150) in units of 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (((r >> 13) - (112u << 10)) & 0x7fffu));
}

/* ---- index maps ------------------------------------------------------- */

/* Flat index of in (B, C, H*W) that out (B, H*W, C)'s flat index i reads
 * (nchw_to_nlc): i = (b*L + l)*C + c -> (b*C + c)*L + l. */
static inline AP_HD int64_t ap_cu_nlc_src(int64_t i, int64_t C, int64_t L) {
    int64_t c = i % C, bl = i / C, l = bl % L, b = bl / L;
    return (b * C + c) * L + l;
}

/* Flat index of in (B, H*W, C) that out (B, C, H*W)'s flat index i reads
 * (nlc_to_nchw): i = (b*C + c)*L + l -> (b*L + l)*C + c. */
static inline AP_HD int64_t ap_cu_nchw_src(int64_t i, int64_t C, int64_t L) {
    int64_t l = i % L, bc = i / L, c = bc % C, b = bc / C;
    return (b * L + l) * C + c;
}

/* concat along dim 1 of (B, C1, P) and (B, C2, P) into (B, C1 + C2, P):
 * for out's flat index i, which input (0: a, 1: b) and its flat index. */
static inline AP_HD int ap_cu_concat_src(int64_t i, int64_t C1, int64_t C2, int64_t P,
                                         int64_t *src) {
    int64_t p = i % P, bc = i / P, C = C1 + C2, c = bc % C, b = bc / C;
    if (c < C1) {
        *src = (b * C1 + c) * P + p;
        return 0;
    }
    *src = (b * C2 + (c - C1)) * P + p;
    return 1;
}

/* upsample_nearest2x: out (.., 2H, 2W)'s flat index i reads in (.., H, W). */
static inline AP_HD int64_t ap_cu_up2_src(int64_t i, int64_t H, int64_t W) {
    int64_t W2 = 2 * W, x = i % W2, y = (i / W2) % (2 * H), plane = i / (W2 * 2 * H);
    return (plane * H + y / 2) * W + x / 2;
}

/* One bilinear tap along an axis (resize.h): out index d of out_n from
 * in_n, align_corners=False, PyTorch 1.13's arithmetic (cpu/resize.c). */
typedef struct ap_cu_tap {
    int i0, i1;
    float l0, l1;
} ap_cu_tap;

static inline AP_HD ap_cu_tap ap_cu_bilinear_tap(int64_t d, int64_t in_n, int64_t out_n) {
    ap_cu_tap t;
    if (in_n == out_n) {
        t.i0 = t.i1 = (int)d;
        t.l0 = 1.0f;
        t.l1 = 0.0f;
        return t;
    }
    float s = (float)in_n / (float)out_n;
    double src = (double)s * ((double)d + 0.5) - 0.5;
    if (src < 0) src = 0;
    t.i0 = (int)src;
    t.i1 = t.i0 + (t.i0 < in_n - 1 ? 1 : 0);
    t.l1 = (float)(src - (double)t.i0);
    t.l0 = 1.0f - t.l1;
    return t;
}

/* Output indices [*lo, *hi] along an axis that can tap input index y
 * (in_n -> out_n): every d outside never has i0 == y or i1 == y in
 * ap_cu_bilinear_tap (tests/cuda/test_cuda_host.c checks this
 * exhaustively for SD and CLIP sizes). src(d) = s(d + 0.5) - 0.5 moves by
 * s per step, and d taps y only when y - 1 <= src(d) < y + 1, so the range
 * is that interval mapped back, widened by 2 for rounding and clamped. */
static inline AP_HD void ap_cu_bilinear_range(int64_t y, int64_t in_n, int64_t out_n, int64_t *lo,
                                              int64_t *hi) {
    if (in_n == out_n) {
        *lo = *hi = y;
        return;
    }
    double s = (double)((float)in_n / (float)out_n);
    int64_t a = (int64_t)floor(((double)y - 0.5) / s - 0.5) - 2;
    int64_t b = (int64_t)ceil(((double)y + 1.5) / s - 0.5) + 2;
    *lo = a < 0 ? 0 : a;
    *hi = b > out_n - 1 ? out_n - 1 : b;
}

/* ---- timestep frequencies (cpu/timestep.c, bit for bit) --------------- */

/* exp(x) as PyTorch 1.13's vectorised CPU kernel computes it (SLEEF-like:
 * Cody-Waite reduction, degree-5 polynomial with FMAs); the same algorithm
 * as cpu/timestep.c's expf_torch, so both backends use equal frequencies. */
static inline AP_HD float ap_cu_expf_torch(float x) {
    if (x < -104.0f) return 0.0f;
    if (x > 100.0f) return 1.0f / 0.0f;
    int q = (int)rintf(x * 1.442695040888963407359924681001892137f);
    float qf = (float)q;
    float s = fmaf(qf, -0.693145751953125f, x);
    s = fmaf(qf, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    float ss = s * s;
    u = 1.0f + fmaf(ss, u, s);
    return ldexpf(u, q);
}

/* f_k = exp((c * k) / denom), c = (float)-ln(max_period), denom = half - shift. */
static inline AP_HD float ap_cu_timestep_freq(float c, float denom, int k) {
    return ap_cu_expf_torch((c * (float)k) / denom);
}

/* ---- cuBLASLt layouts (kernels/cuda_gemm.cu) ----------------------------- */

/* A stored column-major matrix: rows x cols, leading dimension ld. */
typedef struct ap_cu_lt_layout {
    int rows, cols, ld;
} ap_cu_lt_layout;

/* Row-major out (M, N) = op(a) (M, K) . op(b) (K, N) is column-major
 * out^T (N, M) = op(b)^T . op(a)^T: cuBLASLt's A is our b, read through
 * its own transpose flag tb, stored column-major as (N, K) (tb = 0: b is
 * row-major (K, N), ld = N) or (K, N) (tb = 1: b is row-major (N, K),
 * ld = K); ldb is b's last dim. */
static inline AP_HD ap_cu_lt_layout ap_cu_lt_a(int tb, int N, int K, int ldb) {
    ap_cu_lt_layout l = {tb ? K : N, tb ? N : K, ldb};
    return l;
}

/* cuBLASLt's B is our a: column-major (K, M) (ta = 0: a row-major (M, K))
 * or (M, K) (ta = 1: a row-major (K, M)); lda is a's last dim. */
static inline AP_HD ap_cu_lt_layout ap_cu_lt_b(int ta, int M, int K, int lda) {
    ap_cu_lt_layout l = {ta ? M : K, ta ? K : M, lda};
    return l;
}

/* ---- attention tiling (kernels/cuda_attention.cu) --------------------- */

/* Query rows a block of the attention kernels handles: one warp-sized group
 * of threads per row, AP_CU_ATTN_ROWS rows per block. */
#define AP_CU_ATTN_ROWS 4
/* Threads per query row: 32 (one warp), each holding ceil(D / 32) of the
 * row's D accumulator elements in registers. */
#define AP_CU_ATTN_LANES 32
/* The head sizes the kernels are compiled for (SD 40/80/160, CLIP 64);
 * D must be at most AP_CU_ATTN_MAX_D. */
#define AP_CU_ATTN_MAX_D 160

/* Elements of a D-long row each lane holds: ceil(D / 32). */
static inline AP_HD int ap_cu_attn_per_lane(int D) { return (D + AP_CU_ATTN_LANES - 1) / AP_CU_ATTN_LANES; }

/* Blocks of the forward (and the dq pass of the backward): one block per
 * AP_CU_ATTN_ROWS query rows of every (batch, head): grid.x covers rows,
 * grid.y = B * H. */
static inline AP_HD int ap_cu_attn_row_blocks(int64_t L) {
    return (int)ap_cu_ceil_div(L, AP_CU_ATTN_ROWS);
}

/* Keys query row i sees: all Lk, or i + 1 when causal (Lq == Lk). */
static inline AP_HD int64_t ap_cu_attn_keys(int64_t i, int64_t Lk, int causal) {
    return causal ? (i + 1 < Lk ? i + 1 : Lk) : Lk;
}

/* First query row that sees key j: 0, or j when causal. */
static inline AP_HD int64_t ap_cu_attn_first_query(int64_t j, int causal) { return causal ? j : 0; }

/* Offset of element (b, l, h, d) of a (B, L, H*D) tensor: channel h*D + d. */
static inline AP_HD int64_t ap_cu_attn_off(int64_t b, int64_t l, int64_t h, int64_t d, int64_t L,
                                          int64_t H, int64_t D) {
    return (b * L + l) * H * D + h * D + d;
}

/* ---- row reductions (norms, softmax) ---------------------------------- */

/* Threads of a row-reduction block: one block per row / group, a power of
 * two, smaller for short rows so few threads idle. */
static inline AP_HD int ap_cu_reduce_threads(int64_t n) {
    int t = 32;
    while (t < 512 && t < n) t *= 2;
    return t;
}

/* ---- AdamW (kernels/cuda_optim.cu; train/adamw.c's arithmetic) --------- */

/* Round-to-nearest float ops that nvcc never fuses into an FMA, so the
 * device update equals train/adamw.c's (built without FP contraction). */
#ifdef __CUDA_ARCH__
#define AP_CU_MUL(a, b) __fmul_rn((a), (b))
#define AP_CU_ADD(a, b) __fadd_rn((a), (b))
#define AP_CU_SUB(a, b) __fsub_rn((a), (b))
#define AP_CU_DIV(a, b) __fdiv_rn((a), (b))
#else
#define AP_CU_MUL(a, b) ((a) * (b))
#define AP_CU_ADD(a, b) ((a) + (b))
#define AP_CU_SUB(a, b) ((a) - (b))
#define AP_CU_DIV(a, b) ((a) / (b))
#endif

/* The float scalars of AdamW step t (train/adamw.h: bias corrections and
 * the step size in double, then rounded once). */
typedef struct ap_cu_adamw_k {
    float step_size, bc2_sqrt, decay, b1, b2, a1, a2, eps;
} ap_cu_adamw_k;

static inline ap_cu_adamw_k ap_cu_adamw_scalars(double lr, double beta1, double beta2, double eps,
                                                double weight_decay, int64_t t) {
    const double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    ap_cu_adamw_k k;
    k.step_size = (float)(lr / bc1);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.decay = (float)(1.0 - lr * weight_decay);
    k.b1 = (float)beta1;
    k.b2 = (float)beta2;
    k.a1 = (float)(1.0 - beta1);
    k.a2 = (float)(1.0 - beta2);
    k.eps = (float)eps;
    return k;
}

/* One element of the AdamW step, train/adamw.c's expression order. */
static inline AP_HD void ap_cu_adamw_elem(const ap_cu_adamw_k *k, float *p, float *m, float *v,
                                          float g) {
    const float pd = AP_CU_MUL(*p, k->decay);
    *m = AP_CU_ADD(AP_CU_MUL(*m, k->b1), AP_CU_MUL(k->a1, g));
    *v = AP_CU_ADD(AP_CU_MUL(*v, k->b2), AP_CU_MUL(AP_CU_MUL(k->a2, g), g));
    const float denom = AP_CU_ADD(AP_CU_DIV(sqrtf(*v), k->bc2_sqrt), k->eps);
    *p = AP_CU_SUB(pd, AP_CU_MUL(k->step_size, AP_CU_DIV(*m, denom)));
}

/* Blocks of the first pass of the gradient norm (fixed, so the reduction
 * order never depends on the device). */
#define AP_CU_NORM_BLOCKS 256

/* ---- device selection ------------------------------------------------- */

/* The node-local rank of this process from the launcher's environment
 * values (OMPI_COMM_WORLD_LOCAL_RANK, else SLURM_LOCALID, else
 * MPI_LOCALRANKID; NULL or empty strings skipped): -1 when none is set or a
 * value is not a non-negative integer. */
static inline int ap_cu_local_rank(const char *ompi, const char *slurm, const char *mpich) {
    const char *v[3] = {ompi, slurm, mpich};
    for (int i = 0; i < 3; i++) {
        const char *s = v[i];
        if (!s || !*s) continue;
        long r = 0;
        for (; *s; s++) {
            if (*s < '0' || *s > '9' || r > 1000000) return -1;
            r = r * 10 + (*s - '0');
        }
        return (int)r;
    }
    return -1;
}

/* The device a process with node-local rank local_rank (-1: unknown, taken
 * as 0) uses among n_devices: its local rank. -1 when there is no device or
 * the rank has none (ranks outnumber the node's GPUs): the caller refuses. */
static inline int ap_cu_pick_device(int local_rank, int n_devices) {
    if (n_devices <= 0) return -1;
    if (local_rank < 0) local_rank = 0;
    return local_rank < n_devices ? local_rank : -1;
}

#endif
