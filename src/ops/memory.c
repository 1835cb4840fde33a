/* memory.c: device memory and sync (memory.h). */
#include "memory.h"

#include "backend.h"
#include "core/err.h"
#include "rows.h"

void *ap_dev_alloc(ap_ctx *ctx, size_t bytes, const char *what) {
    if (!ctx->be || !ctx->be->alloc) {
        ap_backend_lacks(ctx, "alloc");
        return NULL;
    }
    return ctx->be->alloc(ctx, bytes, what);
}

void ap_dev_free(ap_ctx *ctx, void *p) {
    if (p && ctx->be && ctx->be->free) ctx->be->free(ctx, p);
}

int ap_ctx_sync(ap_ctx *ctx) {
    if (!ctx->be || !ctx->be->sync) return ap_backend_lacks(ctx, "sync");
    return ctx->be->sync(ctx);
}

static size_t g_placed;

size_t ap_params_placed_bytes(void) { return g_placed; }

/* the whole block as one f32 tensor (2-byte slots travel as their bits) */
static ap_tensor block(void *data, const ap_params *p, ap_device dev) {
    ap_tensor t = ap_t1(data, (int64_t)(p->total ? p->total : 1));
    t.device = dev;
    return t;
}

/* every slot (and its bound field) at base, on device dev */
static void point(ap_params *p, float *base, ap_device dev) {
    for (int i = 0; i < p->count; i++) {
        ap_param *s = &p->items[i];
        s->t.data = base + s->offset;
        s->t.device = dev;
        if (s->dst) {
            s->dst->data = s->t.data;
            s->dst->device = dev;
        }
    }
}

int ap_params_place(ap_ctx *ctx, ap_params *p) {
    if (ctx->device == AP_CPU || p->unbacked || p->dev || !p->flat) return AP_OK;
    const size_t bytes = (p->total ? p->total : 1) * sizeof(float);
    if (!(p->dev = ap_dev_alloc(ctx, bytes, "model parameters"))) return AP_ERR;
    ap_tensor d = block(p->dev, p, ctx->device), h = block(p->flat, p, AP_CPU);
    if (ap_copy(ctx, &d, &h) || ap_ctx_sync(ctx)) {
        ap_dev_free(ctx, p->dev);
        p->dev = NULL;
        return AP_ERR;
    }
    point(p, p->dev, ctx->device);
    g_placed += bytes;
    return AP_OK;
}

int ap_params_upload(ap_ctx *ctx, const ap_params *p) {
    if (!p->dev) return AP_OK;
    ap_tensor d = block(p->dev, p, ctx->device), h = block(p->flat, p, AP_CPU);
    return ap_copy(ctx, &d, &h);
}

void ap_params_unplace(ap_ctx *ctx, ap_params *p) {
    if (!p->dev) return;
    ap_dev_free(ctx, p->dev);
    p->dev = NULL;
    point(p, p->flat, AP_CPU);
}
