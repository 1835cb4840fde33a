/* png.c: float image -> 8-bit RGB PNG, written atomically (libpng).
 *
 * Conversion (float32, one rounding per torch/numpy op, no contraction):
 *   v = x / 2 + 0.5; v = clamp(v, 0, 1); v = v * 255; byte = rint(v) or trunc.
 * Writing: create PATH.tmp.<pid>.<n> with O_EXCL next to PATH, write the PNG
 * through libpng (its errors longjmp back here with their message), fflush,
 * fsync, close, rename to PATH, then fsync the directory (best effort). On
 * any failure the temporary file is removed and PATH is left untouched.
 */
#include "png.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

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

/* The libpng part: 0, or AP_ERR with err->msg set. No locals change after
 * setjmp, so none need to be volatile. */
static int png_stream(FILE *f, const uint8_t *hwc, int H, int W, png_err_ctx *err) {
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
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, hwc + (size_t)y * W * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static void fsync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int ap_png_write_rgb8(const char *path, const uint8_t *hwc, int H, int W) {
    if (H <= 0 || W <= 0 || (int64_t)W * 3 > 0x7fffffff || H > 0x7fffffff / 3)
        return ap_fail("PNG %s: size (H, W): expected positive and below 2^31 / 3, found (%d, "
                       "%d)",
                       path, H, W);
    static atomic_uint counter;
    size_t len = strlen(path) + 64;
    char *tmp = ap_malloc(len, "PNG temporary file name");
    if (!tmp) return AP_ERR;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        snprintf(tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        ap_fail("PNG %s: cannot create the temporary file %s: %s", path, tmp, strerror(e));
        free(tmp);
        return AP_ERR;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        ap_fail("PNG %s: fdopen %s: %s", path, tmp, strerror(e));
        free(tmp);
        return AP_ERR;
    }
    png_err_ctx err = {{0}};
    int rc = png_stream(f, hwc, H, W, &err);
    const char *what = rc ? err.msg : NULL;
    int e = 0;
    if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0)) e = errno, what = "flush/fsync";
    if (fclose(f) != 0 && !what) e = errno, what = "close";
    if (!what && rename(tmp, path) != 0) e = errno, what = "rename";
    if (what) {
        unlink(tmp);
        if (e) ap_fail("PNG %s: %s (temporary %s): %s", path, what, tmp, strerror(e));
        else ap_fail("PNG %s: %s (temporary %s)", path, what, tmp);
        free(tmp);
        return AP_ERR;
    }
    free(tmp);
    fsync_parent(path);
    return 0;
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
