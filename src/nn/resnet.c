/* resnet.c: ResnetBlock2D forward/backward over the CPU ops. */
#include "resnet.h"

#include <string.h>

#include "core/err.h"
#include "ops/activation.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rows.h"

int ap_resnet_declare(ap_resnet *r, ap_params *p, const char *pre, int cin, int cout,
                      int temb_dim, int groups, float eps) {
    memset(r, 0, sizeof *r);
    r->cin = cin, r->cout = cout, r->temb_dim = temb_dim, r->groups = groups, r->eps = eps;
    int ok = 1;
    ok &= ap_params_add(p, &r->norm1_w, 1, (int64_t[]){cin}, "%s.norm1.weight", pre) >= 0;
    ok &= ap_params_add(p, &r->norm1_b, 1, (int64_t[]){cin}, "%s.norm1.bias", pre) >= 0;
    ok &= ap_params_add(p, &r->conv1_w, 4, (int64_t[]){cout, cin, 3, 3}, "%s.conv1.weight", pre) >= 0;
    ok &= ap_params_add(p, &r->conv1_b, 1, (int64_t[]){cout}, "%s.conv1.bias", pre) >= 0;
    if (temb_dim > 0) {
        ok &= ap_params_add(p, &r->temb_w, 2, (int64_t[]){cout, temb_dim},
                            "%s.time_emb_proj.weight", pre) >= 0;
        ok &= ap_params_add(p, &r->temb_b, 1, (int64_t[]){cout}, "%s.time_emb_proj.bias", pre) >= 0;
    }
    ok &= ap_params_add(p, &r->norm2_w, 1, (int64_t[]){cout}, "%s.norm2.weight", pre) >= 0;
    ok &= ap_params_add(p, &r->norm2_b, 1, (int64_t[]){cout}, "%s.norm2.bias", pre) >= 0;
    ok &= ap_params_add(p, &r->conv2_w, 4, (int64_t[]){cout, cout, 3, 3}, "%s.conv2.weight", pre) >= 0;
    ok &= ap_params_add(p, &r->conv2_b, 1, (int64_t[]){cout}, "%s.conv2.bias", pre) >= 0;
    if (cin != cout) {
        ok &= ap_params_add(p, &r->short_w, 4, (int64_t[]){cout, cin, 1, 1},
                            "%s.conv_shortcut.weight", pre) >= 0;
        ok &= ap_params_add(p, &r->short_b, 1, (int64_t[]){cout}, "%s.conv_shortcut.bias", pre) >= 0;
    }
    return ok ? AP_OK : AP_ERR;
}

static float *take(ap_arena *a, int64_t n, const char *what) {
    return ap_arena_floats(a, (size_t)n, what);
}

int ap_resnet_forward(ap_ctx *ctx, ap_tape *tape, const ap_resnet *r, ap_resnet_saved *sv,
                      const ap_tensor *out, const ap_tensor *x, const ap_tensor *temb_act) {
    const char *op = "resnet_forward";
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    AP_TRY(ap_expect(op, "x", x, 4, (int64_t[]){-1, r->cin, -1, -1}));
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3], G = r->groups;
    AP_TRY(ap_expect4(op, "out", out, B, r->cout, H, W));
    if (r->temb_dim > 0) AP_TRY(ap_expect2(op, "temb_act", temb_act, B, r->temb_dim));
    ap_arena *keep = tape ? tape->mem : tmp;
    size_t tmark = tmp->used;
    ap_resnet_saved local, *s = sv ? sv : &local;
    ap_tape_record(&s->rec, tape, r);
    s->x = *x;
    float *n1 = take(keep, B * r->cin * H * W, "resnet norm1 output"),
          *h1 = take(keep, B * r->cout * H * W, "resnet conv1 output"),
          *n2 = take(keep, B * r->cout * H * W, "resnet norm2 output"),
          *st = take(keep, 4 * B * G, "resnet group statistics");
    float *a = take(tmp, B * (r->cin > r->cout ? r->cin : r->cout) * H * W, "resnet SiLU output");
    if (!n1 || !h1 || !n2 || !st || !a) return AP_ERR;
    s->n1 = ap_t4(n1, B, r->cin, H, W);
    s->h1 = ap_t4(h1, B, r->cout, H, W);
    s->n2 = ap_t4(n2, B, r->cout, H, W);
    s->mean1 = ap_t2(st, B, G), s->rstd1 = ap_t2(st + B * G, B, G);
    s->mean2 = ap_t2(st + 2 * B * G, B, G), s->rstd2 = ap_t2(st + 3 * B * G, B, G);
    ap_tensor a_in = ap_t4(a, B, r->cin, H, W), a_out = ap_t4(a, B, r->cout, H, W);
    AP_TRY(ap_group_norm_forward(ctx, &s->n1, &s->mean1, &s->rstd1, x, &r->norm1_w, &r->norm1_b,
                                 (int)G, r->eps));
    AP_TRY(ap_silu_forward(ctx, &a_in, &s->n1));
    AP_TRY(ap_conv2d_forward(ctx, &s->h1, &a_in, &r->conv1_w, &r->conv1_b, 1, 1));
    if (r->temb_dim > 0) {
        float *tp = take(tmp, B * r->cout, "resnet time projection");
        if (!tp) return AP_ERR;
        ap_tensor ttp = ap_t2(tp, B, r->cout);
        /* (B, 1, C) views: each sample's projection is its own GEMM (batch-independent) */
        ap_tensor vin = ap_reshape(temb_act, 3, (int64_t[]){B, 1, r->temb_dim}), vtp = ap_t3(tp, B, 1, r->cout);
        AP_TRY(ap_linear_forward(ctx, &vtp, &vin, &r->temb_w, &r->temb_b));
        AP_TRY(ap_add_channel_bias_forward(ctx, &s->h1, &s->h1, &ttp));
    }
    AP_TRY(ap_group_norm_forward(ctx, &s->n2, &s->mean2, &s->rstd2, &s->h1, &r->norm2_w,
                                 &r->norm2_b, (int)G, r->eps));
    AP_TRY(ap_silu_forward(ctx, &a_out, &s->n2));
    if (ap_present(&r->short_w)) {
        AP_TRY(ap_conv2d_forward(ctx, out, x, &r->short_w, &r->short_b, 1, 0));
        /* out += conv2(a): conv2 into n1's place would clobber the tape, so
         * go through a tmp buffer. */
        float *h2 = take(tmp, B * r->cout * H * W, "resnet conv2 output");
        if (!h2) return AP_ERR;
        ap_tensor th2 = ap_t4(h2, B, r->cout, H, W);
        AP_TRY(ap_conv2d_forward(ctx, &th2, &a_out, &r->conv2_w, &r->conv2_b, 1, 1));
        AP_TRY(ap_axpy(ctx, out, 1.0f, &th2));
    } else {
        AP_TRY(ap_conv2d_forward(ctx, out, &a_out, &r->conv2_w, &r->conv2_b, 1, 1));
        AP_TRY(ap_axpy(ctx, out, 1.0f, x));
    }
    tmp->used = tmark; /* releases tmp (and, for inference, the saved tensors) */
    return AP_OK;
}

int ap_resnet_backward(ap_ctx *ctx, ap_tape *tape, const ap_resnet *r,
                       const ap_resnet_saved *s, const ap_tensor *dx, const ap_tensor *dout) {
    const char *op = "resnet_backward";
    AP_TRY(ap_tape_check(op, &s->rec, tape, r));
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
    int64_t B = s->x.shape[0], H = s->x.shape[2], W = s->x.shape[3], G = r->groups;
    AP_TRY(ap_expect4(op, "dout", dout, B, r->cout, H, W));
    AP_TRY(ap_expect_same(op, "x", &s->x, "dx", dx));
    size_t mark = tmp->used;
    int64_t c = r->cin > r->cout ? r->cin : r->cout;
    float *b1 = take(tmp, B * c * H * W, "resnet backward buffer 1"),
          *b2 = take(tmp, B * c * H * W, "resnet backward buffer 2");
    if (!b1 || !b2) return AP_ERR;
    int rc = AP_ERR;
    ap_tensor d_out = ap_t4(b1, B, r->cout, H, W), d_h1 = ap_t4(b2, B, r->cout, H, W);
    ap_tensor d_in = ap_t4(b1, B, r->cin, H, W), d_x2 = ap_t4(b2, B, r->cin, H, W);
    ap_tensor a_out_shape = ap_t4(NULL, B, r->cout, H, W), a_in_shape = ap_t4(NULL, B, r->cin, H, W);
    /* shortcut path: dx = shortcut^T(dout) (=) */
    if (ap_present(&r->short_w)) {
        if (ap_conv2d_backward(ctx, dx, NULL, NULL, dout, &s->x, &r->short_w, 1, 0)) goto out;
    } else if (ap_copy(ctx, dx, dout)) {
        goto out;
    }
    /* main path */
    if (ap_conv2d_backward(ctx, &d_out, NULL, NULL, dout, &a_out_shape, &r->conv2_w, 1, 1)) goto out;
    if (ap_silu_backward(ctx, &d_out, &d_out, &s->n2)) goto out;
    if (ap_group_norm_backward(ctx, &d_h1, NULL, NULL, &d_out, &s->h1, &s->mean2, &s->rstd2,
                               &r->norm2_w, (int)G)) goto out;
    if (ap_conv2d_backward(ctx, &d_in, NULL, NULL, &d_h1, &a_in_shape, &r->conv1_w, 1, 1)) goto out;
    if (ap_silu_backward(ctx, &d_in, &d_in, &s->n1)) goto out;
    if (ap_group_norm_backward(ctx, &d_x2, NULL, NULL, &d_in, &s->x, &s->mean1, &s->rstd1,
                               &r->norm1_w, (int)G)) goto out;
    if (ap_axpy(ctx, dx, 1.0f, &d_x2)) goto out;
    rc = AP_OK;
out:
    tmp->used = mark;
    return rc;
}
