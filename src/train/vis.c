/* vis.c: sample PNGs and their grid (vis.h). */
#include "vis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/path.h"
#include "io/png.h"

void ap_vis_image_name(char *out, size_t cap, const char *dir, int i, const char *prompt) {
    char p[128];
    size_t k = 0;
    for (const char *s = prompt; *s && k < sizeof p - 1 && k < 120; s++)
        p[k++] = (*s == '/' || (unsigned char)*s < 0x20) ? '_' : *s;
    p[k] = '\0';
    snprintf(out, cap, "%s/%03d_%s.png", dir, i, p);
}

uint8_t *ap_vis_grid(const float *images, int E, int H, int W, int *gh_out, int *gw_out) {
    int cols = (int)ceil(sqrt((double)E)), rows = (E + cols - 1) / cols;
    size_t gw = (size_t)cols * W, gh = (size_t)rows * H;
    uint8_t *grid = calloc(gw * gh * 3, 1), *cell = malloc((size_t)H * W * 3);
    if (!grid || !cell) {
        free(grid), free(cell);
        ap_fail("out of memory: a %zu x %zu image grid", gh, gw);
        return NULL;
    }
    for (int i = 0; i < E; i++) {
        ap_png_to_rgb8(cell, images + (size_t)i * 3 * H * W, H, W, AP_PNG_TRUNC);
        size_t r0 = (size_t)(i / cols) * H, c0 = (size_t)(i % cols) * W;
        for (int y = 0; y < H; y++)
            memcpy(grid + ((r0 + y) * gw + c0) * 3, cell + (size_t)y * W * 3, (size_t)W * 3);
    }
    free(cell);
    *gh_out = (int)gh, *gw_out = (int)gw;
    return grid;
}

int ap_vis_write(const char *dir, const float *images, int E, int H, int W,
                 const char *const *prompts) {
    AP_TRY(ap_mkdirs(dir));
    const size_t img = (size_t)3 * H * W;
    uint8_t *hwc = ap_malloc(img, "a sample image's bytes");
    int rc = hwc ? AP_OK : AP_ERR;
    for (int k = 0; k < E && !rc; k++) {
        char path[4400];
        ap_vis_image_name(path, sizeof path, dir, k, prompts[k]);
        ap_png_to_rgb8(hwc, images + (size_t)k * img, H, W, AP_PNG_TRUNC);
        rc = ap_png_write_rgb8(path, hwc, H, W);
    }
    free(hwc);
    int gh = 0, gw = 0;
    uint8_t *grid = rc ? NULL : ap_vis_grid(images, E, H, W, &gh, &gw);
    if (!rc && !grid) rc = AP_ERR;
    if (!rc) {
        char gp[4400];
        snprintf(gp, sizeof gp, "%s/grid.png", dir);
        rc = ap_png_write_rgb8(gp, grid, gh, gw);
    }
    free(grid);
    return rc;
}
