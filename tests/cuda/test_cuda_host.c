/* test_cuda_host.c: the host-side arithmetic of the CUDA backend
 * (kernels/cuda_index.h), on the CPU, on every machine: the dtype casts
 * against io/dtype.h bit for bit (all 65536 half / bf16 patterns, 2^20
 * float patterns), the index maps against direct loops over the CPU ops'
 * layouts, the bilinear tap ranges exhaustively, the timestep frequencies
 * against the CPU op, launch shapes, attention tiling, device choice. All
 * comparisons are exact (integers and bit patterns), except the timestep
 * embedding (sin/cos of equal arguments: 2e-7 absolute, the CPU's double
 * sin rounded to float against the same). Needs no GPU, never skips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_index.h"
#include "io/dtype.h"
#include "ops/timestep.h"
#include "testutil.h"
#include "train/adamw.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Same value, or both NaN (payloads may differ between the two rules). */
static int same_f(float a, float b) { return (isnan(a) && isnan(b)) || bits(a) == bits(b); }
static int same_h(uint16_t a, uint16_t b, int bf) {
    const uint16_t em = bf ? 0x7f80 : 0x7c00, mm = bf ? 0x007f : 0x03ff;
    int na = (a & em) == em && (a & mm), nb = (b & em) == em && (b & mm);
    return (na && nb) || a == b;
}

static void test_casts(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (!same_f(ap_cu_f16_to_f32((uint16_t)h), ap_f16_to_f32((uint16_t)h))) bad++;
        if (!same_f(ap_cu_bf16_to_f32((uint16_t)h), ap_bf16_to_f32((uint16_t)h))) bad++;
    }
    tu_check(bad == 0, "f16/bf16 -> f32 on all 65536 patterns equal io/dtype.h (%d differ)", bad);
    bad = 0;
    uint64_t st = 12345;
    for (int i = 0; i < (1 << 20); i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(st >> 32);
        /* every 4th: a float near the f16 range edges and subnormals */
        if (i % 4 == 0) u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u));
        float f = from_bits(u);
        uint16_t a = ap_cu_f32_to_f16(f), b = ap_f32_to_f16(f);
        uint16_t c = ap_cu_f32_to_bf16(f), d = ap_f32_to_bf16(f);
        if (!same_h(a, b, 0) || !same_h(c, d, 1)) {
            if (bad++ < 5)
                printf("  cast of %a (0x%08x): f16 %04x vs %04x, bf16 %04x vs %04x\n", (double)f,
                       u, a, b, c, d);
        }
    }
    static const float edges[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 6.1035156e-05f,
                                  5.9604645e-08f, 2.9802322e-08f, 2.98023259e-08f, 1e-10f,
                                  INFINITY, -INFINITY, NAN, 3.3895314e38f, 1.0f + 1.0f / 256};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        if (!same_h(ap_cu_f32_to_f16(edges[i]), ap_f32_to_f16(edges[i]), 0) ||
            !same_h(ap_cu_f32_to_bf16(edges[i]), ap_f32_to_bf16(edges[i]), 1))
            bad++, printf("  edge %g differs\n", (double)edges[i]);
    tu_check(bad == 0, "f32 -> f16/bf16 (round to nearest even) on 2^20 patterns + edges equal "
                       "io/dtype.h (%d differ)", bad);
}

static void test_index_maps(void) {
    const int64_t B = 2, C = 3, H = 4, W = 5, L = H * W;
    int bad = 0;
    /* nchw_to_nlc: out[b, l, c] = in[b, c, l] */
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t c = 0; c < C; c++) {
                int64_t o = (b * L + l) * C + c, i = (b * C + c) * L + l;
                bad += ap_cu_nlc_src(o, C, L) != i;
                bad += ap_cu_nchw_src(i, C, L) != o;
            }
    tu_check(bad == 0, "nchw <-> nlc index maps are the permutes of ops/elementwise.h (%d wrong)",
             bad);
    bad = 0;
    const int64_t C1 = 3, C2 = 2, P = 7;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C1 + C2; c++)
            for (int64_t p = 0; p < P; p++) {
                int64_t s, o = (b * (C1 + C2) + c) * P + p;
                int w = ap_cu_concat_src(o, C1, C2, P, &s);
                int64_t want = c < C1 ? (b * C1 + c) * P + p : (b * C2 + c - C1) * P + p;
                bad += w != (c >= C1) || s != want;
            }
    tu_check(bad == 0, "concat_channels index map (%d wrong)", bad);
    bad = 0;
    for (int64_t p = 0; p < 3; p++)
        for (int64_t y = 0; y < 2 * H; y++)
            for (int64_t x = 0; x < 2 * W; x++)
                bad += ap_cu_up2_src((p * 2 * H + y) * 2 * W + x, H, W) != (p * H + y / 2) * W + x / 2;
    tu_check(bad == 0, "upsample_nearest2x source index (%d wrong)", bad);
}

/* Every output index outside ap_cu_bilinear_range(y) misses input y. */
static void test_bilinear_ranges(void) {
    static const int sizes[][2] = {{512, 224}, {224, 512}, {64, 64}, {7, 3}, {3, 7}, {1, 5},
                                   {5, 1}, {256, 224}, {100, 99}, {99, 100}};
    int bad = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int in = sizes[k][0], out = sizes[k][1];
        for (int y = 0; y < in; y++) {
            int64_t lo, hi;
            ap_cu_bilinear_range(y, in, out, &lo, &hi);
            for (int d = 0; d < out; d++) {
                ap_cu_tap t = ap_cu_bilinear_tap(d, in, out);
                int hits = t.i0 == y || t.i1 == y;
                if (hits && (d < lo || d > hi) && bad++ < 5)
                    printf("  %d -> %d: output %d taps input %d outside [%lld, %lld]\n", in, out, d,
                           y, (long long)lo, (long long)hi);
                if (t.i0 < 0 || t.i1 >= in || t.i1 < t.i0 || t.i1 > t.i0 + 1) bad++;
            }
        }
    }
    /* the taps themselves: resize.h's rule at a few points of 512 -> 224 */
    ap_cu_tap t = ap_cu_bilinear_tap(0, 512, 224);
    double src = (double)(512.0f / 224.0f) * 0.5 - 0.5;
    tu_check(t.i0 == (int)src && t.l1 == (float)(src - (int)src), "tap 0 of 512 -> 224");
    t = ap_cu_bilinear_tap(223, 512, 224);
    tu_check(t.i1 <= 511 && t.i0 <= t.i1, "last tap of 512 -> 224 within the input");
    tu_check(bad == 0, "bilinear tap ranges cover every tap (10 size pairs, %d misses)", bad);
}

static void test_launch_shapes(void) {
    tu_check(ap_cu_blocks(0) == 1 && ap_cu_blocks(1) == 1 && ap_cu_blocks(256) == 1 &&
                 ap_cu_blocks(257) == 2 && ap_cu_blocks((int64_t)1 << 40) == AP_CU_MAX_BLOCKS,
             "ap_cu_blocks: ceil(n / 256) clamped to [1, 65535]");
    tu_check(ap_cu_reduce_threads(1) == 32 && ap_cu_reduce_threads(33) == 64 &&
                 ap_cu_reduce_threads(4096) == 512 && ap_cu_reduce_threads(320) == 512,
             "ap_cu_reduce_threads: power of two in [32, 512] covering n");
    int bad = 0;
    for (int64_t n = 1; n < 70000; n += 37) {
        int t = ap_cu_reduce_threads(n);
        bad += (t & (t - 1)) != 0 || t > 512;
    }
    tu_check(bad == 0, "reduce threads are powers of two <= 512 (block_sum's tree needs it)");
    /* attention: SD head sizes and CLIP's */
    static const int D[] = {40, 64, 80, 160};
    static const int per[] = {2, 2, 3, 5};
    for (int i = 0; i < 4; i++)
        tu_check(ap_cu_attn_per_lane(D[i]) == per[i] && ap_cu_attn_per_lane(D[i]) * 32 >= D[i],
                 "attention: D %d -> %d elements per lane", D[i], per[i]);
    tu_check(ap_cu_attn_row_blocks(4096) == 1024 && ap_cu_attn_row_blocks(77) == 20,
             "attention row blocks: ceil(L / %d)", AP_CU_ATTN_ROWS);
    tu_check(ap_cu_attn_keys(5, 77, 1) == 6 && ap_cu_attn_keys(5, 77, 0) == 77 &&
                 ap_cu_attn_first_query(5, 1) == 5 && ap_cu_attn_first_query(5, 0) == 0,
             "causal key / query ranges");
    tu_check(ap_cu_attn_off(1, 2, 3, 4, 77, 12, 64) == (1 * 77 + 2) * 768 + 3 * 64 + 4,
             "attention offsets: channel h*D + d of (B, L, H*D)");
}

/* The column-major view cuda_gemm.cu hands cuBLASLt: a naive column-major
 * GEMM over ap_cu_lt_a / ap_cu_lt_b layouts (cuBLASLt's definition: op(X)
 * of a stored rows x cols matrix, element (i, j) at i + j * ld) must give
 * the row-major product, for every ta, tb. */
static float colmajor(const float *x, ap_cu_lt_layout l, int trans, int i, int j) {
    return trans ? x[j + (size_t)i * l.ld] : x[i + (size_t)j * l.ld];
}

static void test_lt_layouts(void) {
    enum { M = 5, N = 7, K = 3 };
    float a[M * K], b[K * N], c[M * N], want[M * N];
    for (int i = 0; i < M * K; i++) a[i] = (float)(i % 7) - 3;
    for (int i = 0; i < K * N; i++) b[i] = (float)(i % 5) - 2;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int lda = ta ? M : K, ldb = tb ? K : N;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    float s = 0;
                    for (int k = 0; k < K; k++)
                        s += (ta ? a[k * M + m] : a[m * K + k]) * (tb ? b[n * K + k] : b[k * N + n]);
                    want[m * N + n] = s;
                }
            ap_cu_lt_layout la = ap_cu_lt_a(tb, N, K, ldb), lb = ap_cu_lt_b(ta, M, K, lda);
            int ok = la.rows * la.cols == K * N && lb.rows * lb.cols == M * K;
            ok = ok && (tb ? la.rows : la.cols) == K && (ta ? lb.cols : lb.rows) == K;
            /* column-major C (N x M, ld N): C[i + j N] = sum_k opA(i, k) opB(k, j) */
            for (int i = 0; i < N; i++)
                for (int j = 0; j < M; j++) {
                    float s = 0;
                    for (int k = 0; k < K; k++)
                        s += colmajor(b, la, tb, i, k) * colmajor(a, lb, ta, k, j);
                    c[i + j * N] = s;
                }
            tu_check(ok, "cuBLASLt layouts have the operands' sizes (ta %d tb %d)", ta, tb);
            char what[96];
            snprintf(what, sizeof what, "column-major cuBLASLt view = row-major GEMM (ta %d tb %d)", ta, tb);
            tu_compare(what, c, want, M * N, 0, 0);
        }
}

/* The device AdamW's scalars and element update, run on the host, against
 * train/adamw.c's step: three steps, bit for bit. */
static void test_adamw(void) {
    enum { N = 4099 };
    float *p = tu_alloc(N), *q = tu_alloc(N), *g = tu_alloc(N), *m = tu_alloc(N), *v = tu_alloc(N);
    tu_fill_uniform(p, N, 7, -1, 1);
    memcpy(q, p, sizeof(float) * N);
    ap_adamw a;
    ap_adamw_init(&a, N);
    const ap_adamw_hp hp = {3e-4, 0.9, 0.999, 1e-8, 1e-2};
    for (int t = 1; t <= 3; t++) {
        tu_fill_uniform(g, N, 100 + (uint64_t)t, -0.1f, 0.1f);
        ap_adamw_step(&a, &hp, p, g);
        ap_cu_adamw_k k = ap_cu_adamw_scalars(hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, t);
        for (int i = 0; i < N; i++) ap_cu_adamw_elem(&k, &q[i], &m[i], &v[i], g[i]);
    }
    tu_compare("AdamW element update (3 steps) vs train/adamw.c: params (exact)", q, p, N, 0, 0);
    tu_compare("AdamW first moments (exact)", m, a.m, N, 0, 0);
    tu_compare("AdamW second moments (exact)", v, a.v, N, 0, 0);
    ap_adamw_free(&a);
    free(p), free(q), free(g), free(m), free(v);
}

static void test_device_choice(void) {
    tu_check(ap_cu_local_rank("3", "1", NULL) == 3, "OMPI_COMM_WORLD_LOCAL_RANK first");
    tu_check(ap_cu_local_rank(NULL, "1", "2") == 1 && ap_cu_local_rank("", "", "2") == 2,
             "then SLURM_LOCALID, then MPI_LOCALRANKID");
    tu_check(ap_cu_local_rank(NULL, NULL, NULL) == -1 && ap_cu_local_rank("x1", NULL, NULL) == -1,
             "unset or malformed: -1");
    tu_check(ap_cu_pick_device(-1, 1) == 0 && ap_cu_pick_device(3, 4) == 3,
             "device = node-local rank (unknown: 0)");
    tu_check(ap_cu_pick_device(4, 4) == -1 && ap_cu_pick_device(0, 0) == -1,
             "refused when ranks outnumber the node's GPUs or there is none");
}

static void test_timestep(void) {
    /* frequencies through the shared algorithm give the CPU op's embedding */
    enum { B = 3, DIM = 320 };
    float t[B] = {0.0f, 401.0f, 999.0f}, ref[B * DIM], got[B * DIM];
    ap_ctx ctx;
    ap_ctx_init(&ctx, 1);
    ap_tensor tt = ap_t1(t, B), tr = ap_t2(ref, B, DIM);
    tu_check(ap_timestep_embedding_forward(&ctx, &tr, &tt, 1, 0.0f, 1.0f, 10000) == 0,
             "CPU timestep embedding");
    const int half = DIM / 2;
    const float c = (float)(-log(10000.0)), denom = (float)half;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < half; k++) {
            float a = (t[b] * ap_cu_timestep_freq(c, denom, k)) * 1.0f;
            got[b * DIM + half + k] = (float)sin((double)a);
            got[b * DIM + k] = (float)cos((double)a);
        }
    tu_compare("timestep embedding from ap_cu_timestep_freq vs the CPU op", got, ref, B * DIM, 0, 0);
    ap_ctx_free(&ctx);
}

int main(void) {
    printf("test_cuda_host: host-side arithmetic of the CUDA backend (kernels/cuda_index.h)\n");
    test_casts();
    test_index_maps();
    test_bilinear_ranges();
    test_launch_shapes();
    test_lt_layouts();
    test_adamw();
    test_device_choice();
    test_timestep();
    return tu_exit();
}
