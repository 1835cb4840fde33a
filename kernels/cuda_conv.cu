/* cuda_conv.cu: the CUDA bodies of conv2d forward and backward
 * (ops/conv2d.h) on cuDNN's legacy convolution API, NCHW f32.
 *
 * Accumulation rule (as the public op): dw, db +=, din =.
 *
 *   forward:  cudnnConvolutionForward (beta 0), then the bias per channel
 *   din:      cudnnConvolutionBackwardData (beta 0)
 *   dw:       cudnnConvolutionBackwardFilter (beta 1: +=)
 *   db:       a per-channel sum of dout in double (own kernel)
 *
 * Algorithms come from the _v7 heuristics, first one that succeeds within
 * AP_CU_CONV_WS_MAX bytes of workspace (for dw, the first deterministic
 * one), so the op and its scratch query choose the same one and the
 * workspace is part of the measured scratch (no cudaMalloc in a step).
 * Math: CUDNN_FMA_MATH (exact f32) unless the device state allows TF32
 * (CUDNN_DEFAULT_MATH). A bf16 / f16 weight (frozen) is widened to f32
 * into scratch first (4 * O*C*kh*kw bytes), then the f32 path: the result
 * is the CPU's up to summation order.
 */
#include <cudnn.h>

#include "cuda_common.h"
#include "cuda_ops.h"

/* At most this much cuDNN workspace per convolution. */
#define AP_CU_CONV_WS_MAX ((size_t)256 << 20)

static int present(const ap_tensor *t) { return t && t->data; }

typedef struct conv_descs {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_descs;

static void conv_release(conv_descs *d) {
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    memset(d, 0, sizeof *d);
}

/* x (B, C, H, W), w (O, C, kh, kw), y (B, O, Ho, Wo). */
static int conv_setup(conv_descs *d, const int64_t *x, const int64_t *w, const int64_t *y,
                      int stride, int pad) {
    memset(d, 0, sizeof *d);
    ap_cuda_state *st = ap_cuda_state_get();
    if (!st) return ap_fail("the CUDA backend has no device state (ap_cuda_ctx_init)");
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)x[0],
                                           (int)x[1], (int)x[2], (int)x[3]));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)y[0],
                                           (int)y[1], (int)y[2], (int)y[3]));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)w[0],
                                           (int)w[1], (int)w[2], (int)w[3]));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv, st->allow_tf32 ? CUDNN_DEFAULT_MATH
                                                                    : CUDNN_FMA_MATH));
    return AP_OK;
}

static cudnnHandle_t handle(void) { return (cudnnHandle_t)ap_cuda_state_get()->dnn; }

/* Whether a heuristic result may run: with TF32 off only non-tensor-op
 * math (exact f32); with it on, the descriptor takes the result's math. */
static int math_ok(const conv_descs *d, cudnnMathType_t m) {
    const int tensor_op = m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (!ap_cuda_state_get()->allow_tf32) return !tensor_op;
    return cudnnSetConvolutionMathType(d->conv, m) == CUDNN_STATUS_SUCCESS;
}

#define PERF_N 8

static int fwd_algo(const conv_descs *d, cudnnConvolutionFwdAlgo_t *algo, size_t *ws) {
    cudnnConvolutionFwdAlgoPerf_t perf[PERF_N];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle(), d->x, d->w, d->conv, d->y, PERF_N,
                                                       &n, perf));
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= AP_CU_CONV_WS_MAX &&
            math_ok(d, perf[i].mathType)) {
            *algo = perf[i].algo;
            CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle(), d->x, d->w, d->conv, d->y,
                                                                *algo, ws));
            return AP_OK;
        }
    return ap_fail("cudnnGetConvolutionForwardAlgorithm_v7: no algorithm within %zu bytes of "
                   "workspace", AP_CU_CONV_WS_MAX);
}

static int data_algo(const conv_descs *d, cudnnConvolutionBwdDataAlgo_t *algo, size_t *ws) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[PERF_N];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), d->w, d->y, d->conv, d->x,
                                                            PERF_N, &n, perf));
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= AP_CU_CONV_WS_MAX &&
            perf[i].determinism == CUDNN_DETERMINISTIC && math_ok(d, perf[i].mathType)) {
            *algo = perf[i].algo;
            CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle(), d->w, d->y, d->conv,
                                                                     d->x, *algo, ws));
            return AP_OK;
        }
    return ap_fail("cudnnGetConvolutionBackwardDataAlgorithm_v7: no deterministic algorithm "
                   "within %zu bytes of workspace", AP_CU_CONV_WS_MAX);
}

static int filter_algo(const conv_descs *d, cudnnConvolutionBwdFilterAlgo_t *algo, size_t *ws) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[PERF_N];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), d->x, d->y, d->conv, d->w,
                                                              PERF_N, &n, perf));
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= AP_CU_CONV_WS_MAX &&
            perf[i].determinism == CUDNN_DETERMINISTIC && math_ok(d, perf[i].mathType)) {
            *algo = perf[i].algo;
            CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle(), d->x, d->y,
                                                                       d->conv, d->w, *algo, ws));
            return AP_OK;
        }
    return ap_fail("cudnnGetConvolutionBackwardFilterAlgorithm_v7: no deterministic algorithm "
                   "within %zu bytes of workspace", AP_CU_CONV_WS_MAX);
}

/* "conv2d_forward: in (2, 4, 8, 8) w (8, 4, 3, 3) bf16 stride 1 pad 1: " before an error. */
static int conv_describe(const char *op, const ap_tensor *in, const ap_tensor *w, int stride,
                         int pad) {
    char a[128], b[128];
    return ap_err_prefix("%s: in %s, weight %s %s, stride %d, pad %d: ", op,
                         ap_shape_str(in, a, sizeof a), ap_shape_str(w, b, sizeof b),
                         ap_dtype_name(w->dtype), stride, pad);
}

static size_t widened_bytes(const ap_tensor *w) {
    return w->dtype == AP_F32 ? 0 : ap_align64((size_t)ap_numel(w) * 4);
}

/* The f32 weight: w itself, or w widened into the front of scratch (which
 * then holds widened_bytes(w) followed by the cuDNN workspace). */
static int weight_f32(ap_ctx *ctx, const ap_tensor *w, size_t ws, const float **wf, void **work) {
    char *s = (char *)ap_cu_scratch(ctx, widened_bytes(w) + ws, "conv2d weight and workspace");
    if (!s) return AP_ERR;
    *work = s + widened_bytes(w);
    if (w->dtype == AP_F32) {
        *wf = w->data;
        return AP_OK;
    }
    AP_TRY(ap_cu_cast(ctx, s, AP_F32, w->data, w->dtype, ap_numel(w)));
    *wf = (const float *)s;
    return AP_OK;
}

__global__ void conv_bias_kernel(float *y, const float *b, int64_t O, int64_t P, int64_t n) {
    AP_GRID_LOOP(i, n) y[i] += b[(i / P) % O];
}

/* db[o] += sum over b, pixels of dout: block o, double. */
__global__ void conv_bias_grad_kernel(float *db, const float *g, int64_t B, int64_t O, int64_t P) {
    __shared__ double sh[256];
    const int64_t o = blockIdx.x;
    double s = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = threadIdx.x; i < P; i += blockDim.x) s += g[(b * O + o) * P + i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[o] += (float)sh[0];
}

static int fwd_body(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const ap_tensor *w,
                    const ap_tensor *b, int stride, int pad, conv_descs *d) {
    AP_TRY(conv_setup(d, in->shape, w->shape, out->shape, stride, pad));
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws = 0;
    AP_TRY(fwd_algo(d, &algo, &ws));
    const float *wf;
    void *work;
    AP_TRY(weight_f32(ctx, w, ws, &wf, &work));
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionForward(handle(), &one, d->x, in->data, d->w, wf, d->conv, algo,
                                        work, ws, &zero, d->y, out->data));
    if (present(b)) {
        const int64_t n = ap_numel(out), P = out->shape[2] * out->shape[3];
        AP_LAUNCH(ctx, conv_bias_kernel, n, out->data, b->data, out->shape[1], P, n);
    }
    return AP_OK;
}

extern "C" int ap_cu_conv2d_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                    const ap_tensor *w, const ap_tensor *b, int stride, int pad) {
    conv_descs d;
    int rc = fwd_body(ctx, out, in, w, b, stride, pad, &d);
    conv_release(&d);
    return rc == AP_OK ? AP_OK : conv_describe("conv2d_forward", in, w, stride, pad);
}

extern "C" size_t ap_cu_conv2d_forward_scratch(ap_ctx *ctx, const ap_tensor *out,
                                               const ap_tensor *in, const ap_tensor *w,
                                               const ap_tensor *b, int stride, int pad) {
    conv_descs d;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws = 0;
    if (conv_setup(&d, in->shape, w->shape, out->shape, stride, pad) != AP_OK ||
        fwd_algo(&d, &algo, &ws) != AP_OK)
        ws = 0; /* the op itself then fails with the reason */
    conv_release(&d);
    return widened_bytes(w) + ws;
}

static int bwd_body(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw, const ap_tensor *db,
                    const ap_tensor *dout, const ap_tensor *in, const ap_tensor *w, int stride,
                    int pad, conv_descs *d) {
    AP_TRY(conv_setup(d, in->shape, w->shape, dout->shape, stride, pad));
    const float one = 1.0f, zero = 0.0f;
    if (present(db)) {
        const int64_t O = dout->shape[1], P = dout->shape[2] * dout->shape[3];
        AP_LAUNCH_GRID(ctx, conv_bias_grad_kernel, (unsigned)O, 256, "channels", db->data,
                       dout->data, dout->shape[0], O, P);
    }
    if (present(dw)) { /* the public op allows dw only for an f32 weight */
        cudnnConvolutionBwdFilterAlgo_t algo;
        size_t ws = 0;
        AP_TRY(filter_algo(d, &algo, &ws));
        void *work = ap_cu_scratch(ctx, ws, "conv2d dweight workspace");
        if (!work) return AP_ERR;
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle(), &one, d->x, in->data, d->y, dout->data,
                                                   d->conv, algo, work, ws, &one, d->w, dw->data));
    }
    if (present(din)) {
        cudnnConvolutionBwdDataAlgo_t algo;
        size_t ws = 0;
        AP_TRY(data_algo(d, &algo, &ws));
        const float *wf;
        void *work;
        AP_TRY(weight_f32(ctx, w, ws, &wf, &work));
        CUDNN_CHECK(cudnnConvolutionBackwardData(handle(), &one, d->w, wf, d->y, dout->data, d->conv,
                                                 algo, work, ws, &zero, d->x, din->data));
    }
    return AP_OK;
}

extern "C" int ap_cu_conv2d_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dw,
                                     const ap_tensor *db, const ap_tensor *dout,
                                     const ap_tensor *in, const ap_tensor *w, int stride,
                                     int pad) {
    conv_descs d;
    int rc = bwd_body(ctx, din, dw, db, dout, in, w, stride, pad, &d);
    conv_release(&d);
    return rc == AP_OK ? AP_OK : conv_describe("conv2d_backward", in, w, stride, pad);
}

extern "C" size_t ap_cu_conv2d_backward_scratch(ap_ctx *ctx, const ap_tensor *din,
                                                const ap_tensor *dw, const ap_tensor *db,
                                                const ap_tensor *dout, const ap_tensor *in,
                                                const ap_tensor *w, int stride, int pad) {
    conv_descs d;
    size_t need = 0, ws = 0;
    if (conv_setup(&d, in->shape, w->shape, dout->shape, stride, pad) == AP_OK) {
        if (present(dw)) {
            cudnnConvolutionBwdFilterAlgo_t a;
            if (filter_algo(&d, &a, &ws) == AP_OK && ws > need) need = ws;
        }
        if (present(din)) {
            cudnnConvolutionBwdDataAlgo_t a;
            if (data_algo(&d, &a, &ws) == AP_OK && widened_bytes(w) + ws > need)
                need = widened_bytes(w) + ws;
        }
    }
    conv_release(&d);
    return need;
}
