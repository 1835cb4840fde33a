/* png.h: writing decoded images as 8-bit RGB PNG files (libpng).
 *
 * The float -> byte conversion is diffusers 0.17.1's pipeline postprocess:
 * VaeImageProcessor.denormalize (x / 2 + 0.5).clamp(0, 1) in float32, then
 * numpy_to_pil (x * 255).round().astype("uint8") (round half to even).
 * AlignProp's own image dumps (main.py) skip the round: astype truncates;
 * AP_PNG_TRUNC reproduces that. Files are written atomically: a temporary
 * file in the same directory, fsync, rename over the final name.
 */
#ifndef AP_IO_PNG_H
#define AP_IO_PNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AP_PNG_ROUND = 0, /* diffusers numpy_to_pil: round half to even */
    AP_PNG_TRUNC = 1  /* AlignProp main.py: astype(np.uint8) truncates */
} ap_png_rounding;

/* chw (3, H, W) floats in [-1, 1] (the VAE's output, not clamped) ->
 * hwc (H, W, 3) bytes. Out-of-range values clamp; NaN gives 0. */
void ap_png_to_rgb8(uint8_t *hwc, const float *chw, int H, int W, ap_png_rounding rounding);

/* Write hwc (H, W, 3) bytes as an 8-bit RGB PNG at path, atomically. The
 * file gets mode 0666 minus the umask. Errors name the path. */
int ap_png_write_rgb8(const char *path, const uint8_t *hwc, int H, int W);

/* Encode hwc (H, W, 3) bytes as an 8-bit RGB PNG in memory: *out (malloc'ed,
 * the caller frees) of *len bytes. */
int ap_png_encode_rgb8(const uint8_t *hwc, int H, int W, uint8_t **out, size_t *len);

/* ap_png_to_rgb8 (AP_PNG_ROUND) then ap_png_write_rgb8: chw (3, H, W). */
int ap_png_write_rgb(const char *path, const float *chw, int H, int W);

#endif
