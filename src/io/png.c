/* png.c: float image -> 8-bit RGB PNG, written atomically (libpng).
 *
 * Conversion (float32, one rounding per torch/numpy op, no contraction):
 *   v = x / 2 + 0.5; v = clamp(v, 0, 1); v = v * 255; byte = rint(v) or trunc.
 * Writing: libpng encodes into a memory buffer (its errors longjmp back
 * here with their message), then io/atomic.h publishes the bytes (temporary
 * PATH.tmp.<pid>.<n>, fsync, rename, directory fsync). On any failure the
 * temporary file is removed and PATH is left untouched.
 */
#include "png.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/atomic.h"

void ap_png_to_rgb8(uint8_t *hwc, const float *chw, int H, int W, ap_png_rounding rounding) {
    int64_t plane = (int64_t)H * W;
    for (int64_t p = 0; p < plane; p++) {
        for (int c = 0; c < 3; c++) {
            float v = chw[c * plane + p] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            v = v * 255.0f;
            float r = rounding == AP_PNG_TRUNC ? truncf(v) : rintf(v);
            hwc[p * 3 + c] = r >= 0.0f && r <= 255.0f ? (uint8_t)r : 0; /* NaN -> 0 */
        }
    }
}

typedef struct {
    char msg[256];
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err_ctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* nothing we write can warn; stay quiet */
}

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int oom;
} png_mem;

static void on_png_write(png_structp png, png_bytep data, png_size_t n) {
    png_mem *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t nc = m->cap ? m->cap : 65536;
        while (nc < m->len + n) nc *= 2;
        unsigned char *b = realloc(m->buf, nc);
        if (!b) {
            m->oom = 1;
            png_error(png, "out of memory for the encoded image");
        }
        m->buf = b, m->cap = nc;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void on_png_flush(png_structp png) { (void)png; }

/* The libpng part: encode into m; 0, or AP_ERR with err->msg set. No locals
 * change after setjmp, so none need to be volatile. */
static int png_encode(png_mem *m, const uint8_t *hwc, int H, int W, png_err_ctx *err) {
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, err, on_png_error, on_png_warning);
    if (!png) {
        snprintf(err->msg, sizeof err->msg, "libpng: cannot create a write struct");
        return AP_ERR;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(err->msg, sizeof err->msg, "libpng: cannot create an info struct");
        return AP_ERR;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return AP_ERR;
    }
    png_set_write_fn(png, m, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, hwc + (size_t)y * W * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int ap_png_write_rgb8(const char *path, const uint8_t *hwc, int H, int W) {
    if (H <= 0 || W <= 0 || (int64_t)W * 3 > 0x7fffffff || H > 0x7fffffff / 3)
        return ap_fail("PNG %s: size (H, W): expected positive and below 2^31 / 3, found (%d, "
                       "%d)",
                       path, H, W);
    png_mem m = {0};
    png_err_ctx err = {{0}};
    int rc = png_encode(&m, hwc, H, W, &err);
    if (rc) ap_fail("PNG %s: %s", path, err.msg);
    else if (ap_write_file_atomic(path, m.buf, m.len)) rc = ap_err_prefix("PNG ");
    free(m.buf);
    return rc;
}

int ap_png_encode_rgb8(const uint8_t *hwc, int H, int W, uint8_t **out, size_t *len) {
    *out = NULL, *len = 0;
    if (H <= 0 || W <= 0 || (int64_t)W * 3 > 0x7fffffff || H > 0x7fffffff / 3)
        return ap_fail("PNG encoding: size (H, W): expected positive and below 2^31 / 3, found "
                       "(%d, %d)", H, W);
    png_mem m = {0};
    png_err_ctx err = {{0}};
    if (png_encode(&m, hwc, H, W, &err)) {
        free(m.buf);
        return ap_fail("PNG encoding: %s", err.msg);
    }
    *out = m.buf, *len = m.len;
    return AP_OK;
}

int ap_png_write_rgb(const char *path, const float *chw, int H, int W) {
    if (H <= 0 || W <= 0 || (int64_t)W * 3 > 0x7fffffff || H > 0x7fffffff / 3)
        return ap_fail("PNG %s: size (H, W): expected positive and below 2^31 / 3, found (%d, "
                       "%d)",
                       path, H, W);
    uint8_t *hwc = ap_malloc((size_t)H * W * 3, "PNG pixel buffer");
    if (!hwc) return AP_ERR;
    ap_png_to_rgb8(hwc, chw, H, W, AP_PNG_ROUND);
    int rc = ap_png_write_rgb8(path, hwc, H, W);
    free(hwc);
    return rc;
}
