/* clip_common.c: config readers, weight-file choice and AlignProp's reward
 * preprocessing (on the pixel, resize and row ops) for the CLIP-family
 * models. */
#include "clip_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/tape.h"
#include "ops/image.h"
#include "ops/resize.h"
#include "ops/rows.h"

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

int ap_clip_preprocess_forward(ap_ctx *ctx, const ap_tensor *p, const ap_tensor *image) {
    const char *op = "clip_preprocess_forward";
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
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
    ap_tensor ta = ap_t4(a, B, 3, H, W);
    int rc = ap_to_unit_range_forward(ctx, &ta, image);
    if (!rc && H == S && W == S) /* torchvision returns the image unchanged */
        rc = ap_copy(ctx, p, &ta);
    else if (!rc)
        rc = ap_resize_bilinear_forward(ctx, p, &ta);
    tmp->used = mark;
    AP_TRY(rc);
    return ap_channel_normalize_forward(ctx, p, p, ap_clip_mean, ap_clip_std);
}

int ap_clip_preprocess_backward(ap_ctx *ctx, const ap_tensor *dimage,
                                const ap_tensor *dp, const ap_tensor *image) {
    const char *op = "clip_preprocess_backward";
    ap_arena *tmp = ap_ctx_tmp(ctx, op);
    if (!tmp) return AP_ERR;
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
    ap_tensor tg = ap_t4(g, B, 3, S, S);
    int rc = ap_channel_normalize_backward(ctx, &tg, dp, ap_clip_std);
    if (!rc && H == S && W == S)
        rc = ap_copy(ctx, dimage, &tg);
    else if (!rc)
        rc = ap_resize_bilinear_backward(ctx, dimage, &tg);
    tmp->used = mark;
    AP_TRY(rc);
    return ap_to_unit_range_backward(ctx, dimage, dimage, image);
}
