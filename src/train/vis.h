/* vis.h: sample images on disk, as AlignProp's main.py saves them: one PNG
 * per image named "<index:03d>_<prompt>.png" and a grid.png of all of them
 * (ceil(sqrt(E)) columns, row-major), bytes from io/png.h's AP_PNG_TRUNC
 * conversion (main.py's astype(np.uint8)). Used by the evaluation
 * (eval_vis/) and by visualize_train (train_vis/); docs/logging.md §4.
 */
#ifndef AP_TRAIN_VIS_H
#define AP_TRAIN_VIS_H

#include <stddef.h>
#include <stdint.h>

/* dir/"<i:03d>_<prompt>.png": '/' and control characters in the prompt
 * become '_', the prompt is cut at 120 bytes. */
void ap_vis_image_name(char *out, size_t cap, const char *dir, int i, const char *prompt);
/* The grid of E images (E, 3, H, W) floats in [-1, 1] as (gh, gw, 3) bytes
 * (malloc'ed; NULL with ap_fail on out of memory). */
uint8_t *ap_vis_grid(const float *images, int E, int H, int W, int *gh, int *gw);
/* Create dir, write every image's PNG and dir/grid.png (atomically each). */
int ap_vis_write(const char *dir, const float *images, int E, int H, int W,
                 const char *const *prompts);

#endif
