/* attention.c: fused multi-head attention (CPU reference), FlashAttention-2
 * style.
 *
 * Accumulation rule: no parameters; dq, dk, dv are written with "=".
 *
 * Forward: one work item per (batch, head, block of AP_ATTN_BQ queries). It
 * walks the keys in blocks of AP_ATTN_BK: S = scale * Q K^T (one GEMM into a
 * per-thread tile), an online softmax update of the running row max m and
 * row sum l (rescaling the output rows already accumulated), then O += P V
 * (a second GEMM straight into out's strided rows). At the end O /= l and
 * lse = m + log(l) is saved.
 *
 * Backward: one work item per (batch, head) (or per (batch, head, key chunk)
 * when there are fewer heads than threads). For each query block
 * Di = rowsum(dO * O); for each key block it recomputes P = exp(S - lse) and
 *   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - Di),
 *   dQ += scale dS K,  dK += scale dS^T Q.
 * dK and dV rows of a head (or key chunk) are touched by one work item only,
 * so no locks are needed; with key chunks each item accumulates dQ in a
 * private buffer, summed afterwards.
 *
 * Causal masking never forms -inf: row i of a tile only processes its first
 * min(nk, i + 1 - k0) keys and zeroes the rest of P, and key tiles entirely
 * above the diagonal are skipped.
 */
#include "cpu.h"
#include "ops/attention.h"

#include <math.h>
#include <string.h>

#include "blas.h"
#include "core/err.h"
#include "core/isa.h"
#include "vexp.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Row kernels are compiled for AVX-512, AVX2 and baseline x86-64 and the
 * variant in use is picked per call (core/isa.h: AP_CPU_ISA); exp is the hot
 * spot. */
AP_ISA_INLINE float row_max_body(const float *s, int n) {
    float m = s[0];
#pragma omp simd reduction(max : m)
    for (int j = 1; j < n; j++) m = s[j] > m ? s[j] : m;
    return m;
}

/* s[j] = exp(s[j] - shift) for j < n; returns the sum. */
AP_ISA_INLINE float row_exp_body(float *s, int n, float shift) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = ap_vexp(s[j] - shift);
        s[j] = e;
        sum += e;
    }
    return sum;
}

/* ds[j] = p[j] * (ds[j] - di) (ds holds dP on entry). */
AP_ISA_INLINE void row_dsoftmax_body(float *ds, const float *p, int n, float di) {
#pragma omp simd
    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - di);
}
AP_ISA_KERNEL_RET(float, row_max, (const float *s, int n), (s, n));
AP_ISA_KERNEL_RET(float, row_exp, (float *s, int n, float shift), (s, n, shift));
AP_ISA_KERNEL(row_dsoftmax, (float *ds, const float *p, int n, float di), (ds, p, n, di));

static void zero_rows(float *x, int rows, int cols, int64_t ld) {
    for (int i = 0; i < rows; i++) memset(x + i * ld, 0, (size_t)cols * sizeof(float));
}

/* ---- shapes ------------------------------------------------------------ */

typedef struct {
    int64_t B, Lq, Lk, H, D, C; /* C = H * D = row stride of every tensor */
    ap_isa isa;                 /* the context's kernel variant */
} attn_dims;

/* The dims of q (B, Lq, H*D) and k (B, Lk, H*D) (ops/attention.c validated
 * them, the int range of BLAS included). */
static attn_dims dims_of(const ap_ctx *ctx, const ap_tensor *q, const ap_tensor *k, int n_heads) {
    attn_dims d = {q->shape[0], q->shape[1], k->shape[1], n_heads, q->shape[2] / n_heads,
                   q->shape[2], ctx->isa};
    return d;
}

/* ---- scratch ----------------------------------------------------------- */

/* Per thread: two score tiles (S/P and dP) and three row vectors. */
static size_t per_thread_bytes(void) {
    return 2 * ap_align64((size_t)AP_ATTN_BQ * AP_ATTN_BK * sizeof(float)) +
           3 * ap_align64((size_t)AP_ATTN_BQ * sizeof(float));
}

/* Key chunks per (batch, head) in backward: more than one only when there
 * are fewer heads than threads. */
static int64_t bwd_splits(int64_t B, int64_t H, int64_t Lk, int n_threads) {
    int64_t bh = B * H, nkb = (Lk + AP_ATTN_BK - 1) / AP_ATTN_BK;
    if (bh >= n_threads) return 1;
    int64_t s = (n_threads + bh - 1) / bh;
    return s < nkb ? s : nkb;
}

static size_t dq_private_bytes(int64_t B, int64_t Lq, int64_t Lk, int64_t H, int64_t D,
                               int n_threads) {
    int64_t s = bwd_splits(B, H, Lk, n_threads);
    if (s <= 1) return 0;
    return ap_align64((size_t)(B * H * s) * (size_t)(Lq * D) * sizeof(float));
}

size_t ap_attention_scratch_bytes(int64_t B, int64_t Lq, int64_t Lk, int64_t H,
                                  int64_t D, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    return (size_t)n_threads * per_thread_bytes() +
           dq_private_bytes(B, Lq, Lk, H, D, n_threads);
}

typedef struct {
    float *s, *dp, *m, *l, *di;
} tile_ws;

static tile_ws thread_ws(char *base, int tid) {
    size_t tile = ap_align64((size_t)AP_ATTN_BQ * AP_ATTN_BK * sizeof(float));
    size_t vec = ap_align64((size_t)AP_ATTN_BQ * sizeof(float));
    char *p = base + (size_t)tid * per_thread_bytes();
    tile_ws w;
    w.s = (float *)p;
    w.dp = (float *)(p + tile);
    w.m = (float *)(p + 2 * tile);
    w.l = (float *)(p + 2 * tile + vec);
    w.di = (float *)(p + 2 * tile + 2 * vec);
    return w;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Below about 2 MFLOP (tiny test shapes, one CLIP head) thread start-up and
 * barriers cost more than the work: run on the calling thread. */
static int worth_threads(const attn_dims *d) {
    return 4.0 * (double)(d->B * d->H) * (double)d->Lq * (double)d->Lk * (double)d->D > 2e6;
}

/* ---- forward ----------------------------------------------------------- */

/* Queries [q0, q0 + mq) of head h of batch b. */
static void forward_block(const attn_dims *d, tile_ws w, float *out, float *lse,
                          const float *q, const float *k, const float *v, int64_t b,
                          int64_t h, int64_t q0, int mq, float scale, int causal) {
    const int64_t C = d->C;
    const int D = (int)d->D, ld = (int)C;
    const float *Q = q + (b * d->Lq + q0) * C + h * d->D;
    const float *K = k + b * d->Lk * C + h * d->D;
    const float *V = v + b * d->Lk * C + h * d->D;
    float *O = out + (b * d->Lq + q0) * C + h * d->D;
    float *S = w.s, *m = w.m, *l = w.l;

    for (int i = 0; i < mq; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    zero_rows(O, mq, D, C);
    int64_t kend = causal ? (q0 + mq < d->Lk ? q0 + mq : d->Lk) : d->Lk;
    for (int64_t k0 = 0; k0 < kend; k0 += AP_ATTN_BK) {
        int nk = (int)(kend - k0 < AP_ATTN_BK ? kend - k0 : AP_ATTN_BK);
        ap_gemm_serial(0, 1, mq, nk, D, scale, Q, ld, K + k0 * C, ld, 0.0f, S,
                       AP_ATTN_BK);
        for (int i = 0; i < mq; i++) {
            float *row = S + (size_t)i * AP_ATTN_BK;
            int64_t nv = causal ? q0 + i + 1 - k0 : nk;
            if (nv > nk) nv = nk;
            if (nv <= 0) {
                memset(row, 0, (size_t)nk * sizeof(float));
                continue;
            }
            float mnew = ap_isa_pick(d, row_max)(row, (int)nv);
            if (m[i] > mnew) mnew = m[i];
            float sum = ap_isa_pick(d, row_exp)(row, (int)nv, mnew);
            if (nv < nk) memset(row + nv, 0, (size_t)(nk - nv) * sizeof(float));
            float a = expf(m[i] - mnew); /* 0 on the first block (m = -inf) */
            if (a != 1.0f) {
                float *o = O + i * C;
                for (int j = 0; j < D; j++) o[j] *= a;
            }
            l[i] = l[i] * a + sum;
            m[i] = mnew;
        }
        ap_gemm_serial(0, 0, mq, D, nk, 1.0f, S, AP_ATTN_BK, V + k0 * C, ld, 1.0f, O,
                       ld);
    }
    for (int i = 0; i < mq; i++) {
        float inv = 1.0f / l[i], *o = O + i * C;
        for (int j = 0; j < D; j++) o[j] *= inv;
        if (lse) lse[(b * d->H + h) * d->Lq + q0 + i] = m[i] + logf(l[i]);
    }
}

size_t ap_cpu_attention_forward_scratch(ap_ctx *ctx, const ap_tensor *out,
                                        const ap_tensor *lse, const ap_tensor *q,
                                        const ap_tensor *k, const ap_tensor *v, int n_heads,
                                        float scale, int causal) {
    const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    return (size_t)nt * per_thread_bytes();
}

int ap_cpu_attention_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *lse,
                         const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                         int n_heads, float scale, int causal) {
    const attn_dims d = dims_of(ctx, q, k, n_heads);
    int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    char *ws = ap_scratch(ctx, (size_t)nt * per_thread_bytes(), "attention_forward tiles");
    if (!ws) return AP_ERR;
    int64_t nqb = (d.Lq + AP_ATTN_BQ - 1) / AP_ATTN_BQ, items = d.B * d.H * nqb;
    float *lse_data = ap_present(lse) ? lse->data : NULL;
    int par = worth_threads(&d);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par)
    for (int64_t it = 0; it < items; it++) {
        int64_t bh = it / nqb, q0 = (it % nqb) * AP_ATTN_BQ;
        int mq = (int)(d.Lq - q0 < AP_ATTN_BQ ? d.Lq - q0 : AP_ATTN_BQ);
        forward_block(&d, thread_ws(ws, thread_id()), out->data, lse_data, q->data,
                      k->data, v->data, bh / d.H, bh % d.H, q0, mq, scale, causal);
    }
    return AP_OK;
}

/* ---- backward ---------------------------------------------------------- */

typedef struct {
    const float *q, *k, *v, *o, *dout, *lse;
    float *dq, *dk, *dv;
    float *dq_private; /* (B*H*splits, Lq, D) when splits > 1 */
    int64_t splits;
    float scale;
    int causal;
} bwd_args;

/* Head h of batch b, keys [ka, kb) (multiples of AP_ATTN_BK except the end). */
static void backward_item(const attn_dims *d, const bwd_args *a, tile_ws w, int64_t b,
                          int64_t h, int64_t split, int64_t ka, int64_t kb) {
    const int64_t C = d->C, hoff = h * d->D;
    const int D = (int)d->D, ld = (int)C;
    const float *Qh = a->q + b * d->Lq * C + hoff;
    const float *Oh = a->o + b * d->Lq * C + hoff;
    const float *dOh = a->dout + b * d->Lq * C + hoff;
    const float *K = a->k + b * d->Lk * C + hoff;
    const float *V = a->v + b * d->Lk * C + hoff;
    const float *lse = a->lse + (b * d->H + h) * d->Lq;
    float *dK = a->dk ? a->dk + b * d->Lk * C + hoff : NULL;
    float *dV = a->dv ? a->dv + b * d->Lk * C + hoff : NULL;
    float *dQ = NULL;
    int64_t ldq = C;
    if (a->dq && a->splits > 1) {
        dQ = a->dq_private + ((b * d->H + h) * a->splits + split) * d->Lq * d->D;
        ldq = d->D;
    } else if (a->dq) {
        dQ = a->dq + b * d->Lq * C + hoff;
    }
    if (dK) zero_rows(dK + ka * C, (int)(kb - ka), D, C);
    if (dV) zero_rows(dV + ka * C, (int)(kb - ka), D, C);
    if (dQ) zero_rows(dQ, (int)d->Lq, D, ldq);
    float *P = w.s, *dS = w.dp, *Di = w.di;

    for (int64_t q0 = 0; q0 < d->Lq; q0 += AP_ATTN_BQ) {
        int mq = (int)(d->Lq - q0 < AP_ATTN_BQ ? d->Lq - q0 : AP_ATTN_BQ);
        int64_t kend = a->causal ? (q0 + mq < kb ? q0 + mq : kb) : kb;
        if (kend <= ka) continue; /* every key of the chunk is in the future */
        const float *Q = Qh + q0 * C, *dO = dOh + q0 * C;
        for (int i = 0; i < mq; i++) {
            const float *o = Oh + (q0 + i) * C, *g = dO + i * C;
            float s = 0.0f;
            for (int j = 0; j < D; j++) s += o[j] * g[j];
            Di[i] = s;
        }
        for (int64_t k0 = ka; k0 < kend; k0 += AP_ATTN_BK) {
            int nk = (int)(kend - k0 < AP_ATTN_BK ? kend - k0 : AP_ATTN_BK);
            ap_gemm_serial(0, 1, mq, nk, D, a->scale, Q, ld, K + k0 * C, ld, 0.0f, P,
                           AP_ATTN_BK);
            for (int i = 0; i < mq; i++) {
                float *row = P + (size_t)i * AP_ATTN_BK;
                int64_t nv = a->causal ? q0 + i + 1 - k0 : nk;
                if (nv > nk) nv = nk;
                if (nv < 0) nv = 0;
                ap_isa_pick(d, row_exp)(row, (int)nv, lse[q0 + i]);
                if (nv < nk) memset(row + nv, 0, (size_t)(nk - nv) * sizeof(float));
            }
            if (dV)
                ap_gemm_serial(1, 0, nk, D, mq, 1.0f, P, AP_ATTN_BK, dO, ld, 1.0f,
                               dV + k0 * C, ld);
            if (!dQ && !dK) continue;
            ap_gemm_serial(0, 1, mq, nk, D, 1.0f, dO, ld, V + k0 * C, ld, 0.0f, dS,
                           AP_ATTN_BK);
            for (int i = 0; i < mq; i++)
                ap_isa_pick(d, row_dsoftmax)(dS + (size_t)i * AP_ATTN_BK, P + (size_t)i * AP_ATTN_BK,
                             nk, Di[i]);
            if (dQ)
                ap_gemm_serial(0, 0, mq, D, nk, a->scale, dS, AP_ATTN_BK, K + k0 * C,
                               ld, 1.0f, dQ + q0 * ldq, (int)ldq);
            if (dK)
                ap_gemm_serial(1, 0, nk, D, mq, a->scale, dS, AP_ATTN_BK, Q, ld, 1.0f,
                               dK + k0 * C, ld);
        }
    }
}

size_t ap_cpu_attention_backward_scratch(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk,
                                         const ap_tensor *dv, const ap_tensor *dout,
                                         const ap_tensor *q, const ap_tensor *k,
                                         const ap_tensor *v, const ap_tensor *out,
                                         const ap_tensor *lse, int n_heads, float scale,
                                         int causal) {
    if (!ap_present(dq) && !ap_present(dk) && !ap_present(dv)) return 0;
    const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / n_heads;
    return (size_t)nt * per_thread_bytes() +
           (ap_present(dq) ? dq_private_bytes(B, Lq, Lk, n_heads, D, nt) : 0);
}

int ap_cpu_attention_backward(ap_ctx *ctx, const ap_tensor *dq, const ap_tensor *dk,
                          const ap_tensor *dv, const ap_tensor *dout,
                          const ap_tensor *q, const ap_tensor *k, const ap_tensor *v,
                          const ap_tensor *out, const ap_tensor *lse, int n_heads,
                          float scale, int causal) {
    const attn_dims d = dims_of(ctx, q, k, n_heads);
    if (!ap_present(dq) && !ap_present(dk) && !ap_present(dv)) return AP_OK;

    int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    int64_t splits = bwd_splits(d.B, d.H, d.Lk, nt);
    size_t tiles = (size_t)nt * per_thread_bytes();
    size_t priv = ap_present(dq) ? dq_private_bytes(d.B, d.Lq, d.Lk, d.H, d.D, nt) : 0;
    char *ws = ap_scratch(ctx, tiles + priv, "attention_backward tiles");
    if (!ws) return AP_ERR;
    bwd_args a = {q->data, k->data, v->data, out->data, dout->data, lse->data,
                  ap_present(dq) ? dq->data : NULL, ap_present(dk) ? dk->data : NULL,
                  ap_present(dv) ? dv->data : NULL, (float *)(ws + tiles), splits,
                  scale, causal};
    int64_t nkb = (d.Lk + AP_ATTN_BK - 1) / AP_ATTN_BK, items = d.B * d.H * splits;
    int par = worth_threads(&d);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par)
    for (int64_t it = 0; it < items; it++) {
        int64_t bh = it / splits, s = it % splits;
        int64_t ka = (nkb * s / splits) * AP_ATTN_BK;
        int64_t kb = (nkb * (s + 1) / splits) * AP_ATTN_BK;
        if (kb > d.Lk) kb = d.Lk;
        backward_item(&d, &a, thread_ws(ws, thread_id()), bh / d.H, bh % d.H, s, ka, kb);
    }
    if (a.dq && splits > 1) {
        /* dq[b, i, h*D + j] = sum over key chunks of the private buffers. */
        int64_t rows = d.B * d.Lq;
#pragma omp parallel for num_threads(nt) schedule(static) if (par)
        for (int64_t r = 0; r < rows; r++) {
            int64_t b = r / d.Lq, i = r % d.Lq;
            for (int64_t h = 0; h < d.H; h++) {
                float *dst = a.dq + r * d.C + h * d.D;
                const float *src = a.dq_private + (b * d.H + h) * splits * d.Lq * d.D +
                                   i * d.D;
                for (int64_t j = 0; j < d.D; j++) {
                    float s = 0.0f;
                    for (int64_t c = 0; c < splits; c++) s += src[c * d.Lq * d.D + j];
                    dst[j] = s;
                }
            }
        }
    }
    return AP_OK;
}
