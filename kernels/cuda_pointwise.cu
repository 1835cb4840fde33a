/* cuda_pointwise.cu: the CUDA bodies of the pointwise ops: activations
 * (ops/activation.h), elementwise arithmetic and permutes
 * (ops/elementwise.h), the DDIM update and guidance (ops/ddim_step.h),
 * the pointwise head ops of ops/rows.h and the pixel ops of ops/image.h.
 *
 * Accumulation rule (as the public ops): activation grads =, axpy +=.
 * Same meaning and layouts as the CPU bodies in src/cpu/; one thread per
 * element (grid-stride). Where the CPU op is one float expression in
 * PyTorch's order (DDIM, guidance, affine, division) the kernels use the
 * _rn intrinsics so nvcc contracts nothing into an FMA and the results
 * are those of the CPU bit for bit; erf/exp/tanh are CUDA's (a few ulp
 * from glibc's / PyTorch's vectorised ones: tolerances in docs/cuda.md).
 */
#include "cuda_common.h"
#include "cuda_ops.h"

static int64_t nel(const ap_tensor *t) { return ap_numel(t); }
static int present(const ap_tensor *t) { return t && t->data; }

/* ---- activations -------------------------------------------------------- */

#define GELU_SQRT1_2 0.70710678118654752f
#define GELU_INV_SQRT_2PI 0.39894228040143268f
#define GELU_K 0.79788456080286536f
#define GELU_C 0.044715f

__device__ static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * GELU_SQRT1_2)); }
__device__ static inline float gelu_erf_grad(float x) {
    return 0.5f * (1.0f + erff(x * GELU_SQRT1_2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
}
__device__ static inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
}
__device__ static inline float gelu_tanh_grad(float x) {
    float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
}

/* kind: 0 silu, 1 gelu erf, 2 gelu tanh, 3 quick gelu */
__global__ void act_fwd_kernel(float *out, const float *in, int kind, int64_t n) {
    AP_GRID_LOOP(i, n) {
        float x = in[i];
        out[i] = kind == 0 ? x * sigm(x)
                 : kind == 1 ? gelu_erf(x)
                 : kind == 2 ? gelu_tanh(x)
                             : x * sigm(1.702f * x);
    }
}

__global__ void act_bwd_kernel(float *din, const float *dout, const float *in, int kind, int64_t n) {
    AP_GRID_LOOP(i, n) {
        float x = in[i], g;
        if (kind == 0) {
            float s = sigm(x);
            g = s + x * s * (1.0f - s);
        } else if (kind == 1) g = gelu_erf_grad(x);
        else if (kind == 2) g = gelu_tanh_grad(x);
        else {
            float s = sigm(1.702f * x);
            g = s + 1.702f * x * s * (1.0f - s);
        }
        din[i] = dout[i] * g;
    }
}

static int act_fwd(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int kind) {
    AP_LAUNCH(ctx, act_fwd_kernel, nel(in), out->data, in->data, kind, nel(in));
    return AP_OK;
}
static int act_bwd(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout, const ap_tensor *in,
                   int kind) {
    AP_LAUNCH(ctx, act_bwd_kernel, nel(in), din->data, dout->data, in->data, kind, nel(in));
    return AP_OK;
}

extern "C" int ap_cu_silu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    return act_fwd(ctx, out, in, 0);
}
extern "C" int ap_cu_silu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                   const ap_tensor *in) {
    return act_bwd(ctx, din, dout, in, 0);
}
extern "C" int ap_cu_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in,
                                  int tanh_approx) {
    return act_fwd(ctx, out, in, tanh_approx ? 2 : 1);
}
extern "C" int ap_cu_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                   const ap_tensor *in, int tanh_approx) {
    return act_bwd(ctx, din, dout, in, tanh_approx ? 2 : 1);
}
extern "C" int ap_cu_quick_gelu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    return act_fwd(ctx, out, in, 3);
}
extern "C" int ap_cu_quick_gelu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                         const ap_tensor *in) {
    return act_bwd(ctx, din, dout, in, 3);
}

/* GEGLU: in (R, 2N), out (R, N); element (r, j) of out. */
__global__ void geglu_fwd_kernel(float *out, const float *in, int64_t N, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t r = i / N, j = i % N;
        const float *row = in + r * 2 * N;
        out[i] = row[j] * gelu_erf(row[N + j]);
    }
}
/* din may alias in: each thread reads (h, g) of its element before writing both. */
__global__ void geglu_bwd_kernel(float *din, const float *dout, const float *in, int64_t N,
                                 int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t r = i / N, j = i % N;
        float h = in[r * 2 * N + j], g = in[r * 2 * N + N + j], d = dout[i];
        din[r * 2 * N + j] = d * gelu_erf(g);
        din[r * 2 * N + N + j] = d * h * gelu_erf_grad(g);
    }
}

extern "C" int ap_cu_geglu_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    const int64_t N = out->shape[out->ndim - 1];
    AP_LAUNCH(ctx, geglu_fwd_kernel, nel(out), out->data, in->data, N, nel(out));
    return AP_OK;
}
extern "C" int ap_cu_geglu_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                    const ap_tensor *in) {
    const int64_t N = dout->shape[dout->ndim - 1];
    AP_LAUNCH(ctx, geglu_bwd_kernel, nel(dout), din->data, dout->data, in->data, N, nel(dout));
    return AP_OK;
}

/* ---- elementwise ---------------------------------------------------------- */

/* out = a * sa + b * sb (b may be NULL), one kernel for add / scale / axpy. */
__global__ void lincomb_kernel(float *out, const float *a, float sa, const float *b, float sb,
                               int mode, int64_t n) {
    AP_GRID_LOOP(i, n) {
        switch (mode) {
        case 0: out[i] = __fadd_rn(a[i], b[i]); break;                   /* add */
        case 1: out[i] = __fmul_rn(sa, a[i]); break;                     /* scale */
        case 2: out[i] = __fadd_rn(out[i], __fmul_rn(sb, b[i])); break;  /* axpy */
        default: out[i] = __fmul_rn(a[i], b[i]); break;                  /* mul */
        }
    }
}

__global__ void mul_bwd_kernel(float *da, float *db, const float *dout, const float *a,
                               const float *b, int64_t n) {
    AP_GRID_LOOP(i, n) {
        float g = dout[i], av = a[i], bv = b[i];
        if (da) da[i] = g * bv;
        if (db) db[i] = g * av;
    }
}

static int copy_dev(ap_ctx *ctx, const ap_tensor *dst, const ap_tensor *src) {
    if (!present(dst) || dst->data == src->data) return AP_OK;
    CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, ap_nbytes(src), cudaMemcpyDeviceToDevice,
                               AP_STREAM(ctx)));
    return AP_OK;
}

extern "C" int ap_cu_add_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                 const ap_tensor *b) {
    AP_LAUNCH(ctx, lincomb_kernel, nel(out), out->data, a->data, 1.0f, b->data, 1.0f, 0, nel(out));
    return AP_OK;
}
extern "C" int ap_cu_add_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                  const ap_tensor *dout) {
    AP_TRY(copy_dev(ctx, da, dout));
    return copy_dev(ctx, db, dout);
}
extern "C" int ap_cu_mul_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                 const ap_tensor *b) {
    AP_LAUNCH(ctx, lincomb_kernel, nel(out), out->data, a->data, 1.0f, b->data, 1.0f, 3, nel(out));
    return AP_OK;
}
extern "C" int ap_cu_mul_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                                  const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b) {
    AP_LAUNCH(ctx, mul_bwd_kernel, nel(dout), present(da) ? da->data : NULL,
              present(db) ? db->data : NULL, dout->data, a->data, b->data, nel(dout));
    return AP_OK;
}
extern "C" int ap_cu_scale_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, float s) {
    AP_LAUNCH(ctx, lincomb_kernel, nel(out), out->data, a->data, s, (const float *)NULL, 0.0f, 1,
              nel(out));
    return AP_OK;
}
extern "C" int ap_cu_scale_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *dout,
                                    float s) {
    return ap_cu_scale_forward(ctx, da, dout, s);
}
extern "C" int ap_cu_axpy(ap_ctx *ctx, const ap_tensor *y, float s, const ap_tensor *x) {
    AP_LAUNCH(ctx, lincomb_kernel, nel(y), y->data, (const float *)NULL, 0.0f, x->data, s, 2,
              nel(y));
    return AP_OK;
}

/* concat (B, C1, P) + (B, C2, P) -> (B, C1 + C2, P); backward splits. */
__global__ void concat_kernel(float *out, const float *a, const float *b, int64_t C1, int64_t C2,
                              int64_t P, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t s;
        int which = ap_cu_concat_src(i, C1, C2, P, &s);
        out[i] = which ? b[s] : a[s];
    }
}
__global__ void split_kernel(float *da, float *db, const float *dout, int64_t C1, int64_t C2,
                             int64_t P, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t s;
        int which = ap_cu_concat_src(i, C1, C2, P, &s);
        if (which && db) db[s] = dout[i];
        if (!which && da) da[s] = dout[i];
    }
}

static int64_t plane(const ap_tensor *t) { return t->shape[2] * t->shape[3]; }

extern "C" int ap_cu_concat_channels_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                             const ap_tensor *b) {
    AP_LAUNCH(ctx, concat_kernel, nel(out), out->data, a->data, b->data, a->shape[1], b->shape[1],
              plane(out), nel(out));
    return AP_OK;
}
extern "C" int ap_cu_concat_channels_backward(ap_ctx *ctx, const ap_tensor *da,
                                              const ap_tensor *db, const ap_tensor *dout) {
    /* C1, C2 from the present gradients' shapes, the other from dout's */
    int64_t C = dout->shape[1];
    int64_t C1 = present(da) ? da->shape[1] : C - db->shape[1];
    AP_LAUNCH(ctx, split_kernel, nel(dout), present(da) ? da->data : NULL,
              present(db) ? db->data : NULL, dout->data, C1, C - C1, plane(dout), nel(dout));
    return AP_OK;
}

__global__ void channel_bias_kernel(float *out, const float *in, const float *bias, int64_t P,
                                    int64_t n) {
    AP_GRID_LOOP(i, n) out[i] = in[i] + bias[i / P];
}

extern "C" int ap_cu_add_channel_bias_forward(ap_ctx *ctx, const ap_tensor *out,
                                              const ap_tensor *in, const ap_tensor *bias) {
    AP_LAUNCH(ctx, channel_bias_kernel, nel(out), out->data, in->data, bias->data, plane(out),
              nel(out));
    return AP_OK;
}
/* ap_cu_add_channel_bias_backward is in cuda_reduce.cu (a reduction). */

__global__ void permute_kernel(float *out, const float *in, int64_t C, int64_t L, int to_nlc,
                               int64_t n) {
    AP_GRID_LOOP(i, n) out[i] = in[to_nlc ? ap_cu_nlc_src(i, C, L) : ap_cu_nchw_src(i, C, L)];
}

extern "C" int ap_cu_nchw_to_nlc_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_LAUNCH(ctx, permute_kernel, nel(in), out->data, in->data, in->shape[1], plane(in), 1,
              nel(in));
    return AP_OK;
}
extern "C" int ap_cu_nchw_to_nlc_backward(ap_ctx *ctx, const ap_tensor *din,
                                          const ap_tensor *dout) {
    AP_LAUNCH(ctx, permute_kernel, nel(din), din->data, dout->data, din->shape[1], plane(din), 0,
              nel(din));
    return AP_OK;
}
extern "C" int ap_cu_nlc_to_nchw_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in) {
    AP_LAUNCH(ctx, permute_kernel, nel(out), out->data, in->data, out->shape[1], plane(out), 0,
              nel(out));
    return AP_OK;
}
extern "C" int ap_cu_nlc_to_nchw_backward(ap_ctx *ctx, const ap_tensor *din,
                                          const ap_tensor *dout) {
    AP_LAUNCH(ctx, permute_kernel, nel(dout), din->data, dout->data, dout->shape[1], plane(dout), 1,
              nel(dout));
    return AP_OK;
}

/* ---- DDIM update and guidance (cpu/ddim_step.c's expressions) -------------- */

__global__ void ddim_fwd_kernel(float *xp_, const float *xs, const float *es, const float *nz,
                                ap_ddim_scalars c, int64_t n) {
    AP_GRID_LOOP(k, n) {
        float e = es[k], x0;
        if (c.vpred) { /* e holds v (docs/ddim.md §4) */
            float v = e, xk = xs[k];
            x0 = __fsub_rn(__fmul_rn(c.sqrt_alpha_t, xk), __fmul_rn(c.sqrt_beta_t, v));
            e = __fadd_rn(__fmul_rn(c.sqrt_alpha_t, v), __fmul_rn(c.sqrt_beta_t, xk));
        } else {
            x0 = __fdiv_rn(__fsub_rn(xs[k], __fmul_rn(c.sqrt_beta_t, e)), c.sqrt_alpha_t);
        }
        const float r = c.clip_range;
        if (c.clip) x0 = x0 < -r ? -r : x0 > r ? r : x0;
        float xp = __fadd_rn(__fmul_rn(c.sqrt_alpha_prev, x0), __fmul_rn(c.sqrt_dir, e));
        if (nz) xp = __fadd_rn(xp, __fmul_rn(c.sigma, nz[k]));
        xp_[k] = xp;
    }
}

__global__ void ddim_bwd_kernel(float *ox, float *oe, const float *gs, const float *xs,
                                const float *es, ap_ddim_scalars c, int64_t n) {
    AP_GRID_LOOP(k, n) {
        float g = gs[k];
        float gx0 = __fmul_rn(g, c.sqrt_alpha_prev);
        if (c.clip) {
            float x0 = c.vpred ? __fsub_rn(__fmul_rn(c.sqrt_alpha_t, xs[k]),
                                           __fmul_rn(c.sqrt_beta_t, es[k]))
                               : __fdiv_rn(__fsub_rn(xs[k], __fmul_rn(c.sqrt_beta_t, es[k])),
                                           c.sqrt_alpha_t);
            if (!(x0 >= -c.clip_range && x0 <= c.clip_range)) gx0 = 0.0f;
        }
        if (c.vpred) {
            float ge = __fmul_rn(g, c.sqrt_dir);
            float gv = __fsub_rn(__fmul_rn(ge, c.sqrt_alpha_t), __fmul_rn(gx0, c.sqrt_beta_t));
            float gx = __fadd_rn(__fmul_rn(gx0, c.sqrt_alpha_t), __fmul_rn(ge, c.sqrt_beta_t));
            if (oe) oe[k] = gv;
            if (ox) ox[k] = gx;
            continue;
        }
        float q = __fdiv_rn(gx0, c.sqrt_alpha_t);
        if (oe) oe[k] = __fsub_rn(__fmul_rn(g, c.sqrt_dir), __fmul_rn(q, c.sqrt_beta_t));
        if (ox) ox[k] = q;
    }
}

extern "C" int ap_cu_ddim_update_forward(ap_ctx *ctx, const ap_tensor *x_prev, const ap_tensor *x,
                                         const ap_tensor *eps, const ap_tensor *noise,
                                         const ap_ddim_scalars *c) {
    AP_LAUNCH(ctx, ddim_fwd_kernel, nel(x), x_prev->data, x->data, eps->data,
              present(noise) ? noise->data : NULL, *c, nel(x));
    return AP_OK;
}
extern "C" int ap_cu_ddim_update_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *deps,
                                          const ap_tensor *dx_prev, const ap_tensor *x,
                                          const ap_tensor *eps, const ap_ddim_scalars *c) {
    AP_LAUNCH(ctx, ddim_bwd_kernel, nel(dx_prev), present(dx) ? dx->data : NULL,
              present(deps) ? deps->data : NULL, dx_prev->data, c->clip ? x->data : NULL,
              c->clip ? eps->data : NULL, *c, nel(dx_prev));
    return AP_OK;
}

__global__ void guidance_fwd_kernel(float *out, const float *us, const float *cs, float w,
                                    int64_t n) {
    AP_GRID_LOOP(k, n) {
        float u = us[k];
        out[k] = __fadd_rn(u, __fmul_rn(w, __fsub_rn(cs[k], u)));
    }
}
__global__ void guidance_bwd_kernel(float *du, float *dc, const float *gs, float w, int64_t n) {
    AP_GRID_LOOP(k, n) {
        float g = gs[k], gc = __fmul_rn(w, g);
        if (dc) dc[k] = gc;
        if (du) du[k] = __fsub_rn(g, gc);
    }
}

extern "C" int ap_cu_guidance_forward(ap_ctx *ctx, const ap_tensor *eps, const ap_tensor *eps_u,
                                      const ap_tensor *eps_c, float guidance) {
    AP_LAUNCH(ctx, guidance_fwd_kernel, nel(eps), eps->data, eps_u->data, eps_c->data, guidance,
              nel(eps));
    return AP_OK;
}
extern "C" int ap_cu_guidance_backward(ap_ctx *ctx, const ap_tensor *deps_u,
                                       const ap_tensor *deps_c, const ap_tensor *deps,
                                       float guidance) {
    AP_LAUNCH(ctx, guidance_bwd_kernel, nel(deps), present(deps_u) ? deps_u->data : NULL,
              present(deps_c) ? deps_c->data : NULL, deps->data, guidance, nel(deps));
    return AP_OK;
}

/* ---- pointwise head ops (ops/rows.h) ------------------------------------- */

__global__ void broadcast_rows_kernel(float *out, const float *a, const float *b, int64_t r,
                                      int64_t n) {
    AP_GRID_LOOP(i, n) out[i] = __fadd_rn(a[i], b[i % r]);
}

extern "C" int ap_cu_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                        const ap_tensor *b) {
    const int64_t r = nel(a) / a->shape[0];
    AP_LAUNCH(ctx, broadcast_rows_kernel, nel(a), out->data, a->data, b->data, r, nel(a));
    return AP_OK;
}

/* mode 0 |x - t|, 1 a*x + b, 2 x / s, 3 clamp(x/2 + 0.5, 0, 1) */
__global__ void unary_kernel(float *out, const float *x, float p0, float p1, int mode, int64_t n) {
    AP_GRID_LOOP(i, n) {
        float v = x[i];
        switch (mode) {
        case 0: out[i] = fabsf(__fsub_rn(v, p0)); break;
        case 1: out[i] = __fadd_rn(__fmul_rn(p0, v), p1); break;
        case 2: out[i] = __fdiv_rn(v, p0); break;
        default: {
            float u = __fadd_rn(__fdiv_rn(v, 2.0f), 0.5f);
            out[i] = u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : u);
        }
        }
    }
}

/* mode 0: dout * sign(x - t); 1: dout / 2 inside [0, 1] of x/2 + 0.5, else 0 */
__global__ void unary_bwd_kernel(float *dx, const float *dout, const float *x, float t, int mode,
                                 int64_t n) {
    AP_GRID_LOOP(i, n) {
        float v = x[i], g = dout[i];
        if (mode == 0) {
            float d = __fsub_rn(v, t);
            dx[i] = g * (d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f));
        } else {
            float u = __fadd_rn(__fdiv_rn(v, 2.0f), 0.5f);
            dx[i] = (u >= 0.0f && u <= 1.0f) ? __fdiv_rn(g, 2.0f) : 0.0f;
        }
    }
}

extern "C" int ap_cu_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                      float target) {
    AP_LAUNCH(ctx, unary_kernel, nel(x), out->data, x->data, target, 0.0f, 0, nel(x));
    return AP_OK;
}
extern "C" int ap_cu_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                       const ap_tensor *x, float target) {
    AP_LAUNCH(ctx, unary_bwd_kernel, nel(x), dx->data, dout->data, x->data, target, 0, nel(x));
    return AP_OK;
}
extern "C" int ap_cu_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a,
                                    float b) {
    AP_LAUNCH(ctx, unary_kernel, nel(x), out->data, x->data, a, b, 1, nel(x));
    return AP_OK;
}
extern "C" int ap_cu_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                    float s) {
    AP_LAUNCH(ctx, unary_kernel, nel(x), out->data, x->data, s, 0.0f, 2, nel(x));
    return AP_OK;
}

/* ---- pixel ops (ops/image.h) --------------------------------------------- */

extern "C" int ap_cu_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x) {
    AP_LAUNCH(ctx, unary_kernel, nel(x), out->data, x->data, 0.0f, 0.0f, 3, nel(x));
    return AP_OK;
}
extern "C" int ap_cu_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx,
                                            const ap_tensor *dout, const ap_tensor *x) {
    AP_LAUNCH(ctx, unary_bwd_kernel, nel(x), dx->data, dout->data, x->data, 0.0f, 1, nel(x));
    return AP_OK;
}

/* Per-channel constants by value (images have at most this many channels). */
#define AP_CU_MAX_NORM_CH 8
typedef struct {
    float mean[AP_CU_MAX_NORM_CH], std[AP_CU_MAX_NORM_CH];
} chan_consts;

__global__ void chan_norm_kernel(float *out, const float *x, chan_consts k, int64_t C, int64_t P,
                                 int with_mean, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t c = (i / P) % C;
        out[i] = with_mean ? __fdiv_rn(__fsub_rn(x[i], k.mean[c]), k.std[c]) : __fdiv_rn(x[i], k.std[c]);
    }
}

static int consts(const char *op, chan_consts *k, int64_t C, const float *mean, const float *std) {
    if (C > AP_CU_MAX_NORM_CH)
        return ap_fail("%s: %lld channels; the CUDA kernel takes at most %d", op, (long long)C,
                       AP_CU_MAX_NORM_CH);
    memset(k, 0, sizeof *k);
    for (int64_t c = 0; c < C; c++) {
        k->mean[c] = mean ? mean[c] : 0.0f;
        k->std[c] = std[c];
    }
    return AP_OK;
}

extern "C" int ap_cu_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out,
                                               const ap_tensor *x, const float *mean,
                                               const float *std) {
    chan_consts k;
    AP_TRY(consts("channel_normalize_forward", &k, x->shape[1], mean, std));
    AP_LAUNCH(ctx, chan_norm_kernel, nel(x), out->data, x->data, k, x->shape[1], plane(x), 1,
              nel(x));
    return AP_OK;
}
extern "C" int ap_cu_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx,
                                                const ap_tensor *dout, const float *std) {
    chan_consts k;
    AP_TRY(consts("channel_normalize_backward", &k, dout->shape[1], NULL, std));
    AP_LAUNCH(ctx, chan_norm_kernel, nel(dout), dx->data, dout->data, k, dout->shape[1],
              plane(dout), 0, nel(dout));
    return AP_OK;
}

/* ---- resize: nearest 2x ------------------------------------------------- */

__global__ void up2_kernel(float *out, const float *in, int64_t H, int64_t W, int64_t n) {
    AP_GRID_LOOP(i, n) out[i] = in[ap_cu_up2_src(i, H, W)];
}
/* din[i] = sum of its 4 children, in (row, column) order as the CPU. */
__global__ void up2_bwd_kernel(float *din, const float *dout, int64_t H, int64_t W, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t x = i % W, y = (i / W) % H, p = i / (W * H);
        const float *g = dout + (p * 2 * H + 2 * y) * 2 * W + 2 * x;
        din[i] = (g[0] + g[1]) + (g[2 * W] + g[2 * W + 1]);
    }
}

extern "C" int ap_cu_upsample_nearest2x_forward(ap_ctx *ctx, const ap_tensor *out,
                                                const ap_tensor *in) {
    AP_LAUNCH(ctx, up2_kernel, nel(out), out->data, in->data, in->shape[2], in->shape[3], nel(out));
    return AP_OK;
}
extern "C" int ap_cu_upsample_nearest2x_backward(ap_ctx *ctx, const ap_tensor *din,
                                                 const ap_tensor *dout) {
    AP_LAUNCH(ctx, up2_bwd_kernel, nel(din), din->data, dout->data, din->shape[2], din->shape[3],
              nel(din));
    return AP_OK;
}

/* ---- resize: bilinear (cpu/resize.c's arithmetic) -------------------------- */

__global__ void bilinear_fwd_kernel(float *out, const float *in, int64_t H, int64_t W, int64_t Ho,
                                    int64_t Wo, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t ox = i % Wo, oy = (i / Wo) % Ho, p = i / (Wo * Ho);
        ap_cu_tap th = ap_cu_bilinear_tap(oy, H, Ho), tw = ap_cu_bilinear_tap(ox, W, Wo);
        const float *s = in + p * H * W;
        float x00 = s[th.i0 * W + tw.i0], x01 = s[th.i0 * W + tw.i1];
        float x10 = s[th.i1 * W + tw.i0], x11 = s[th.i1 * W + tw.i1];
        float t0 = fmaf(x00, tw.l0, __fmul_rn(x01, tw.l1));
        float t1 = fmaf(x10, tw.l0, __fmul_rn(x11, tw.l1));
        out[i] = fmaf(t0, th.l0, __fmul_rn(t1, th.l1));
    }
}

/* Adjoint as a gather: each input pixel sums the outputs whose taps reach
 * it (ap_cu_bilinear_range bounds them). Per input pixel this is the CPU's
 * scatter sequence (output pixels row-major, taps 00, 01, 10, 11, each
 * fmaf(lh * lw, g, acc) from 0), so the result should equal the CPU's bit
 * for bit; deterministic either way. */
__global__ void bilinear_bwd_kernel(float *din, const float *dout, int64_t H, int64_t W,
                                    int64_t Ho, int64_t Wo, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t x = i % W, y = (i / W) % H, p = i / (W * H);
        int64_t y0, y1, x0, x1;
        ap_cu_bilinear_range(y, H, Ho, &y0, &y1);
        ap_cu_bilinear_range(x, W, Wo, &x0, &x1);
        const float *g = dout + p * Ho * Wo;
        float acc = 0.0f;
        for (int64_t oy = y0; oy <= y1; oy++) {
            ap_cu_tap th = ap_cu_bilinear_tap(oy, H, Ho);
            float wy = (th.i0 == y ? th.l0 : 0.0f) + (th.i1 == y ? th.l1 : 0.0f);
            if (wy == 0.0f && th.i0 != y && th.i1 != y) continue;
            for (int64_t ox = x0; ox <= x1; ox++) {
                ap_cu_tap tw = ap_cu_bilinear_tap(ox, W, Wo);
                if (tw.i0 != x && tw.i1 != x) continue;
                if (th.i0 == y) {
                    if (tw.i0 == x) acc = fmaf(th.l0 * tw.l0, g[oy * Wo + ox], acc);
                    if (tw.i1 == x) acc = fmaf(th.l0 * tw.l1, g[oy * Wo + ox], acc);
                }
                if (th.i1 == y) {
                    if (tw.i0 == x) acc = fmaf(th.l1 * tw.l0, g[oy * Wo + ox], acc);
                    if (tw.i1 == x) acc = fmaf(th.l1 * tw.l1, g[oy * Wo + ox], acc);
                }
            }
        }
        din[i] = acc;
    }
}

extern "C" int ap_cu_resize_bilinear_forward(ap_ctx *ctx, const ap_tensor *out,
                                             const ap_tensor *in) {
    AP_LAUNCH(ctx, bilinear_fwd_kernel, nel(out), out->data, in->data, in->shape[2], in->shape[3],
              out->shape[2], out->shape[3], nel(out));
    return AP_OK;
}
extern "C" int ap_cu_resize_bilinear_backward(ap_ctx *ctx, const ap_tensor *din,
                                              const ap_tensor *dout) {
    AP_LAUNCH(ctx, bilinear_bwd_kernel, nel(din), din->data, dout->data, din->shape[2],
              din->shape[3], dout->shape[2], dout->shape[3], nel(din));
    return AP_OK;
}

/* ---- timestep embedding forward (backward: cuda_reduce.cu) ------------------ */

__global__ void timestep_fwd_kernel(float *out, const float *t, int64_t dim, int half, float c,
                                    float denom, int sin_off, int cos_off, float scale, int64_t n) {
    AP_GRID_LOOP(i, n) {
        int64_t b = i / dim, k = i % dim;
        float *e = out + b * dim;
        if (k >= 2 * half) {
            e[k] = 0.0f; /* the odd dim's zero column */
            continue;
        }
        if (k >= half) continue; /* one thread writes both halves of frequency k */
        float a = (t[b] * ap_cu_timestep_freq(c, denom, (int)k)) * scale;
        e[sin_off + k] = (float)sin((double)a);
        e[cos_off + k] = (float)cos((double)a);
    }
}

extern "C" int ap_cu_timestep_plan(const char *op, int64_t dim, float shift, int max_period,
                                   int *half, float *c, float *denom) {
    if (max_period <= 0) return ap_fail("%s: max_period must be > 0, found %d", op, max_period);
    *half = (int)(dim / 2);
    *c = (float)(-log((double)max_period));
    *denom = (float)((double)*half - (double)shift);
    if (*half > 0 && *denom == 0.0f)
        return ap_fail("%s: half_dim %d - downscale_freq_shift %g is 0 (division by zero)", op,
                       *half, (double)shift);
    return AP_OK;
}

extern "C" int ap_cu_timestep_embedding_forward(ap_ctx *ctx, const ap_tensor *out,
                                                const ap_tensor *t, int flip_sin_to_cos,
                                                float downscale_freq_shift, float scale,
                                                int max_period) {
    const int64_t dim = out->shape[1];
    int half;
    float c, denom;
    AP_TRY(ap_cu_timestep_plan("timestep_embedding_forward", dim, downscale_freq_shift,
                               max_period, &half, &c, &denom));
    AP_LAUNCH(ctx, timestep_fwd_kernel, nel(out), out->data, t->data, dim, half, c, denom,
              flip_sin_to_cos ? half : 0, flip_sin_to_cos ? 0 : half, scale, nel(out));
    return AP_OK;
}
