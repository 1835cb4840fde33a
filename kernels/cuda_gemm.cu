/* cuda_gemm.cu: the CUDA bodies of the GEMM ops, on cuBLASLt: matmul and
 * matmul_items (ops/matmul.h), linear forward and backward (ops/linear.h).
 *
 * Accumulation rule (as the public ops): matmul as beta says; linear: dw,
 * db +=, din =.
 *
 * Items (matmul_items, linear over (B, ..., I)): one GEMM per item with
 * the same descriptors and algorithm, in a loop (B is small), so an item's
 * rows never depend on the batch, as on the CPU.
 *
 * Precision (docs/cuda.md): f32 x f32 runs CUBLAS_COMPUTE_32F, or
 * CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores, 10-bit mantissa inputs) when
 * the context's device state allows TF32. A bf16 / f16 weight (frozen,
 * mixed precision) takes the tensor-core path: the f32 activation operand
 * is rounded to the weight's dtype into device scratch (ap_cu_cast, round
 * to nearest even) and the product runs with 16-bit inputs, f32 output and
 * f32 accumulation. The CPU instead widens the weight and keeps the
 * activation in f32, so these differ from the CPU by the activation's
 * rounding (~2^-9 relative for bf16): the harness's bf16 cases state it.
 *
 * Row-major to cuBLASLt's column-major: out (M, N) row-major is out^T
 * column-major, and out^T = op(b)^T op(a)^T, so cuBLASLt's "A" is our b and
 * its "B" our a, with m = N, n = M (cuda_index.h's ap_cu_lt_dims, tested on
 * the CPU).
 */
#include <cublasLt.h>

#include "cuda_common.h"
#include "cuda_ops.h"

static int present(const ap_tensor *t) { return t && t->data; }
static int last(const ap_tensor *t) { return (int)t->shape[t->ndim - 1]; }
static int rows(const ap_tensor *t) { return (int)(ap_numel(t) / t->shape[t->ndim - 1]); }

static cudaDataType_t lt_type(ap_dtype dt) {
    return dt == AP_BF16 ? CUDA_R_16BF : dt == AP_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* One GEMM per item: for each of `batch` items (item i at A + i sA, B + i sB,
 * C + i sC elements),
 * C (M, N) = alpha * op(A) op(B) + beta * C, row-major, A f32 (converted to
 * bdt in scratch when bdt is 16-bit), B of dtype bdt (stride 0: shared). */
typedef struct gemm_args {
    const char *op;
    int ta, tb, M, N, K;
    float alpha, beta;
    const float *A;
    int lda;
    long long sA;
    const void *B;
    ap_dtype bdt;
    int ldb;
    long long sB;
    float *C;
    int ldc;
    long long sC;
    int batch;
} gemm_args;

/* Elements of A the GEMM reads (the scratch of its 16-bit copy). */
static size_t a_elems(const gemm_args *g) {
    const size_t one = (size_t)(g->ta ? g->K : g->M) * (size_t)g->lda;
    return g->batch > 1 ? (size_t)g->sA * (size_t)(g->batch - 1) + one : one;
}

static size_t gemm_scratch(const gemm_args *g) {
    return g->bdt == AP_F32 ? 0 : ap_align64(a_elems(g) * 2);
}

static int describe(const gemm_args *g) {
    return ap_err_prefix("%s: cuBLASLt GEMM M %d N %d K %d ta %d tb %d batch %d, weight %s: ",
                         g->op, g->M, g->N, g->K, g->ta, g->tb, g->batch, ap_dtype_name(g->bdt));
}

typedef struct lt_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulPreference_t pref;
} lt_descs;

static void lt_release(lt_descs *d) {
    if (d->pref) cublasLtMatmulPreferenceDestroy(d->pref);
    if (d->c) cublasLtMatrixLayoutDestroy(d->c);
    if (d->b) cublasLtMatrixLayoutDestroy(d->b);
    if (d->a) cublasLtMatrixLayoutDestroy(d->a);
    if (d->op) cublasLtMatmulDescDestroy(d->op);
}

/* The alignment in bytes (1 .. 16, a power of two) of every item's start:
 * the heuristic otherwise assumes 16 and cublasLtMatmul then refuses a
 * view that starts mid-row (ap_rows of an odd width). */
static uint32_t align_of(const void *p, long long stride_bytes, int batch) {
    uint64_t a = (uint64_t)(uintptr_t)p | 16u;
    if (batch > 1) a |= (uint64_t)stride_bytes | 16u;
    return (uint32_t)(a & (~a + 1u));
}

static int lt_setup(const gemm_args *g, const void *A, const ap_cuda_state *st, lt_descs *d) {
    const int f32 = g->bdt == AP_F32;
    const cublasComputeType_t ct =
        f32 && st->allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&d->op, ct, CUDA_R_32F));
    /* cuBLASLt's A is our B, its B our A (column-major view, top of file) */
    const cublasOperation_t opa = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    ap_cu_lt_layout la = ap_cu_lt_a(g->tb, g->N, g->K, g->ldb);
    ap_cu_lt_layout lb = ap_cu_lt_b(g->ta, g->M, g->K, g->lda);
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->a, lt_type(g->bdt), la.rows, la.cols, la.ld));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->b, lt_type(g->bdt), lb.rows, lb.cols, lb.ld));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->c, CUDA_R_32F, g->N, g->M, g->ldc));
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d->pref));
    uint64_t ws = AP_CU_LT_WS_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const size_t es = ap_dtype_size(g->bdt);
    /* cuBLASLt's A is our B, its B our A (which may be the 16-bit copy) */
    const uint32_t al[4] = {align_of(g->B, g->sB * (long long)es, g->batch),
                            align_of(A, g->sA * (long long)es, g->batch),
                            align_of(g->C, g->sC * 4, g->batch),
                            align_of(g->C, g->sC * 4, g->batch)};
    static const cublasLtMatmulPreferenceAttributes_t which[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d->pref, which[i], &al[i], sizeof al[i]));
    return AP_OK;
}

static int gemm_run(ap_ctx *ctx, const gemm_args *g) {
    ap_cuda_state *st = ap_cuda_state_get();
    if (!st) return ap_fail("%s: the CUDA backend has no device state (ap_cuda_ctx_init)", g->op);
    if (g->M == 0 || g->N == 0) return AP_OK;
    const void *A = g->A;
    if (g->bdt != AP_F32) { /* the activation in the weight's 16-bit dtype */
        void *a16 = ap_cu_scratch(ctx, gemm_scratch(g), "GEMM operand in 16 bits");
        if (!a16) return describe(g);
        if (ap_cu_cast(ctx, a16, g->bdt, g->A, AP_F32, (int64_t)a_elems(g)) != AP_OK)
            return describe(g);
        A = a16;
    }
    lt_descs d = {0};
    int rc = lt_setup(g, A, st, &d);
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    if (rc == AP_OK) {
        cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)st->lt, d.op, d.a, d.b,
                                                          d.c, d.c, d.pref, 1, &res, &n);
        if (s != CUBLAS_STATUS_SUCCESS)
            rc = ap_cublas_fail((int)s, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
        else if (n == 0)
            rc = ap_fail("cublasLtMatmulAlgoGetHeuristic: no algorithm for these shapes");
    }
    /* items one after another with the same descriptors and algorithm, so
     * an item's result never depends on how many items there are */
    const size_t ea = g->bdt == AP_F32 ? 4 : 2, eb = ap_dtype_size(g->bdt);
    for (int it = 0; rc == AP_OK && it < g->batch; it++) {
        const char *Ai = (const char *)A + (size_t)it * (size_t)g->sA * ea;
        const char *Bi = (const char *)g->B + (size_t)it * (size_t)g->sB * eb;
        float *Ci = g->C + (size_t)it * (size_t)g->sC;
        cublasStatus_t s = cublasLtMatmul((cublasLtHandle_t)st->lt, d.op, &g->alpha, Bi, d.a, Ai,
                                          d.b, &g->beta, Ci, d.c, Ci, d.c, &res.algo, st->lt_ws,
                                          AP_CU_LT_WS_BYTES, AP_STREAM(ctx));
        if (s != CUBLAS_STATUS_SUCCESS)
            rc = ap_cublas_fail((int)s, "cublasLtMatmul", __FILE__, __LINE__);
    }
    lt_release(&d);
    return rc == AP_OK ? AP_OK : describe(g);
}

/* ---- matmul ----------------------------------------------------------------- */

static gemm_args matmul_args(const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int ta,
                             int tb, float alpha, float beta) {
    gemm_args g = {"matmul", ta, tb, rows(out), last(out), ta ? rows(a) : last(a), alpha, beta,
                   a->data, last(a), 0, b->data, b->dtype, last(b), 0, out->data, last(out), 0, 1};
    return g;
}

static gemm_args items_args(const ap_tensor *out, const ap_tensor *a, const ap_tensor *b, int tb,
                            float alpha, float beta) {
    const int items = a->ndim >= 3 ? (int)a->shape[0] : 1;
    const int M = rows(a) / items, K = last(a), N = last(out);
    gemm_args g = {"matmul_items", 0, tb, M, N, K, alpha, beta, a->data, K, (long long)M * K,
                   b->data, b->dtype, last(b), 0, out->data, N, (long long)M * N, items};
    return g;
}

extern "C" int ap_cu_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                            const ap_tensor *b, int ta, int tb, float alpha, float beta) {
    gemm_args g = matmul_args(out, a, b, ta, tb, alpha, beta);
    return gemm_run(ctx, &g);
}
extern "C" size_t ap_cu_matmul_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                       const ap_tensor *b, int ta, int tb, float alpha,
                                       float beta) {
    gemm_args g = matmul_args(out, a, b, ta, tb, alpha, beta);
    return gemm_scratch(&g);
}
extern "C" int ap_cu_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                  const ap_tensor *b, int tb, float alpha, float beta) {
    gemm_args g = items_args(out, a, b, tb, alpha, beta);
    return gemm_run(ctx, &g);
}
extern "C" size_t ap_cu_matmul_items_scratch(ap_ctx *ctx, const ap_tensor *out,
                                             const ap_tensor *a, const ap_tensor *b, int tb,
                                             float alpha, float beta) {
    gemm_args g = items_args(out, a, b, tb, alpha, beta);
    return gemm_scratch(&g);
}

/* ---- linear ----------------------------------------------------------------- */

__global__ void bias_rows_kernel(float *y, const float *b, int64_t O, int64_t n) {
    AP_GRID_LOOP(i, n) y[i] = b[i % O];
}

/* db[o] += sum_r g[r, o] in double, rows in order (as cpu/linear.c). */
__global__ void bias_grad_kernel(float *db, const float *g, int64_t R, int64_t O) {
    AP_GRID_LOOP(o, O) {
        double acc = 0;
        for (int64_t r = 0; r < R; r++) acc += g[r * O + o];
        db[o] += (float)acc;
    }
}

static gemm_args linear_fwd_args(const ap_tensor *out, const ap_tensor *in, const ap_tensor *w,
                                 const ap_tensor *b) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], R = (int)(ap_numel(in) / I);
    const int items = in->ndim >= 3 ? (int)in->shape[0] : 1, M = R / items;
    gemm_args g = {"linear_forward", 0, 1, M, O, I, 1.0f, present(b) ? 1.0f : 0.0f, in->data, I,
                   (long long)M * I, w->data, w->dtype, I, 0, out->data, O, (long long)M * O, items};
    return g;
}

/* din (R, I) = dout (R, O) . w (O, I) */
static gemm_args linear_din_args(const ap_tensor *din, const ap_tensor *dout, const ap_tensor *w) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], R = (int)(ap_numel(dout) / O);
    gemm_args g = {"linear_backward (din)", 0, 0, R, I, O, 1.0f, 0.0f, dout->data, O, 0, w->data,
                   w->dtype, I, 0, din->data, I, 0, 1};
    return g;
}

extern "C" int ap_cu_linear_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                    const ap_tensor *w, const ap_tensor *b) {
    const int64_t O = w->shape[0];
    if (present(b)) AP_LAUNCH(ctx, bias_rows_kernel, ap_numel(out), out->data, b->data, O, ap_numel(out));
    gemm_args g = linear_fwd_args(out, in, w, b);
    return gemm_run(ctx, &g);
}
extern "C" size_t ap_cu_linear_forward_scratch(ap_ctx *ctx, const ap_tensor *out,
                                               const ap_tensor *in, const ap_tensor *w,
                                               const ap_tensor *b) {
    gemm_args g = linear_fwd_args(out, in, w, b);
    return gemm_scratch(&g);
}

extern "C" int ap_cu_linear_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                                     const ap_tensor *db, const ap_tensor *dout,
                                     const ap_tensor *in, const ap_tensor *w) {
    const int I = (int)w->shape[1], O = (int)w->shape[0], R = (int)(ap_numel(dout) / O);
    if (present(db)) AP_LAUNCH(ctx, bias_grad_kernel, O, db->data, dout->data, R, O);
    if (present(dw)) { /* dw (O, I) += dout^T (O, R) . in (R, I) */
        gemm_args g = {"linear_backward (dw)", 1, 0, O, I, R, 1.0f, 1.0f, dout->data, O, 0,
                       in->data, AP_F32, I, 0, dw->data, I, 0, 1};
        AP_TRY(gemm_run(ctx, &g));
    }
    if (present(din)) {
        gemm_args g = linear_din_args(din, dout, w);
        AP_TRY(gemm_run(ctx, &g));
    }
    return AP_OK;
}
extern "C" size_t ap_cu_linear_backward_scratch(ap_ctx *ctx, const ap_tensor *din,
                                                const ap_tensor *dw, const ap_tensor *db,
                                                const ap_tensor *dout, const ap_tensor *in,
                                                const ap_tensor *w) {
    if (!present(din)) return 0;
    gemm_args g = linear_din_args(din, dout, w);
    return gemm_scratch(&g);
}
