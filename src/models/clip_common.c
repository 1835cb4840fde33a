/* clip_common.c: config readers, weight-file choice, AlignProp's reward
 * preprocessing and L2 normalisation for the CLIP-family models. */
#include "clip_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "ops/resize.h"

const float ap_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float ap_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

int ap_cfg_int(const ap_json *obj, const char *key, const char *what, int def, int lo, int hi,
               int *out) {
    const ap_json *j = ap_json_get(obj, key);
    if (!j || j->type == AP_JSON_NULL) {
        if (def < 0) return ap_fail("%s: key \"%s\": expected an integer, found nothing", what, key);
        *out = def;
        return AP_OK;
    }
    if (j->type != AP_JSON_NUM || j->num != floor(j->num) || j->num < lo || j->num > hi)
        return ap_fail("%s: key \"%s\": expected an integer in [%d, %d], found %s%g", what, key, lo,
                       hi, j->type == AP_JSON_NUM ? "" : ap_json_type_name(j->type),
                       j->type == AP_JSON_NUM ? j->num : 0.0);
    *out = (int)j->num;
    return AP_OK;
}

int ap_cfg_num(const ap_json *obj, const char *key, const char *what, double def, double *out) {
    const ap_json *j = ap_json_get(obj, key);
    if (!j || j->type == AP_JSON_NULL) {
        if (!(def > 0)) return ap_fail("%s: key \"%s\": expected a number, found nothing", what, key);
        *out = def;
        return AP_OK;
    }
    if (j->type != AP_JSON_NUM || !(j->num > 0))
        return ap_fail("%s: key \"%s\": expected a positive number, found %s", what, key,
                       j->type == AP_JSON_NUM ? "a value <= 0" : ap_json_type_name(j->type));
    *out = j->num;
    return AP_OK;
}

int ap_model_weights_path(const char *dir, char *buf, size_t len) {
    static const char *names[] = {"model.safetensors", "pytorch_model.bin"};
    for (int i = 0; i < 2; i++) {
        snprintf(buf, len, "%s/%s", dir, names[i]);
        if (access(buf, R_OK) == 0) return AP_OK;
    }
    return ap_fail("%s: expected model.safetensors or pytorch_model.bin, found neither", dir);
}

int ap_clip_preprocess_size(int64_t H, int64_t W, int S) {
    int Ho, Wo;
    ap_resize_shorter_side((int)H, (int)W, S, &Ho, &Wo);
    if (Ho != S || Wo != S)
        return ap_fail("clip_preprocess: image: expected a square image (Resize(%d) of %lld x %lld "
                       "gives %d x %d, which the %d x %d vision tower cannot take; AlignProp's "
                       "Resize does not crop, and its towers raise on such an image too)",
                       S, (long long)H, (long long)W, Ho, Wo, S, S);
    return AP_OK;
}

size_t ap_clip_preprocess_tmp_bytes(int64_t B, int64_t H, int64_t W, int S) {
    /* forward: the clamped image (B, 3, H, W); backward: d(resized) (B, 3, S, S) */
    int64_t fwd = B * 3 * H * W, bwd = B * 3 * (int64_t)S * S;
    return (size_t)(fwd > bwd ? fwd : bwd) * sizeof(float) + 64;
}

int ap_clip_preprocess_forward(ap_ctx *ctx, ap_arena *tmp, const ap_tensor *p,
                               const ap_tensor *image) {
    const char *op = "clip_preprocess_forward";
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    int64_t B = image->shape[0], H = image->shape[2], W = image->shape[3];
    AP_TRY(ap_expect(op, "p", p, 4, (int64_t[]){B, 3, -1, -1}));
    int S = (int)p->shape[2];
    AP_TRY(ap_expect4(op, "p", p, B, 3, S, S));
    AP_TRY(ap_clip_preprocess_size(H, W, S));
    size_t mark = tmp->used;
    int64_t n = B * 3 * H * W;
    float *a = ap_arena_floats(tmp, (size_t)n, "clamped image");
    if (!a) return AP_ERR;
    const float *x = image->data;
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        a[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); /* NaN stays NaN, as torch.clamp */
    }
    ap_tensor ta = ap_t4(a, B, 3, H, W);
    int rc = AP_OK;
    if (H == S && W == S) /* torchvision returns the image unchanged */
        memcpy(p->data, a, (size_t)n * sizeof(float));
    else
        rc = ap_resize_bilinear_forward(ctx, p, &ta);
    tmp->used = mark;
    AP_TRY(rc);
    int64_t plane = (int64_t)S * S;
#pragma omp parallel for collapse(2) num_threads(ctx->n_threads) if (B * 3 * plane > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            float *q = p->data + (b * 3 + c) * plane;
            for (int64_t i = 0; i < plane; i++) q[i] = (q[i] - ap_clip_mean[c]) / ap_clip_std[c];
        }
    return AP_OK;
}

int ap_clip_preprocess_backward(ap_ctx *ctx, ap_arena *tmp, const ap_tensor *dimage,
                                const ap_tensor *dp, const ap_tensor *image) {
    const char *op = "clip_preprocess_backward";
    AP_TRY(ap_expect(op, "image", image, 4, (int64_t[]){-1, 3, -1, -1}));
    AP_TRY(ap_expect_same(op, "image", image, "dimage", dimage));
    int64_t B = image->shape[0], H = image->shape[2], W = image->shape[3];
    AP_TRY(ap_expect(op, "dp", dp, 4, (int64_t[]){B, 3, -1, -1}));
    int S = (int)dp->shape[2];
    AP_TRY(ap_expect4(op, "dp", dp, B, 3, S, S));
    AP_TRY(ap_clip_preprocess_size(H, W, S));
    size_t mark = tmp->used;
    int64_t plane = (int64_t)S * S;
    float *g = ap_arena_floats(tmp, (size_t)(B * 3 * plane), "preprocess d(resized)");
    if (!g) return AP_ERR;
    for (int64_t b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            const float *s = dp->data + (b * 3 + c) * plane;
            float *d = g + (b * 3 + c) * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i] / ap_clip_std[c];
        }
    ap_tensor tg = ap_t4(g, B, 3, S, S);
    int rc = AP_OK;
    if (H == S && W == S)
        memcpy(dimage->data, g, (size_t)(B * 3 * plane) * sizeof(float));
    else
        rc = ap_resize_bilinear_backward(ctx, dimage, &tg);
    tmp->used = mark;
    AP_TRY(rc);
    int64_t n = B * 3 * H * W;
    const float *x = image->data;
    float *d = dimage->data;
#pragma omp parallel for num_threads(ctx->n_threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        d[i] = (v >= 0.0f && v <= 1.0f) ? d[i] / 2.0f : 0.0f;
    }
    return AP_OK;
}
