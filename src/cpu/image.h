/* cpu/image.h: CPU bodies of the pixel ops (ops/image.h). They trust their
 * arguments (the public ops checked them). */
#ifndef AP_CPU_IMAGE_H
#define AP_CPU_IMAGE_H

#include "ops/image.h"

int ap_cpu_to_unit_range_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x);
int ap_cpu_to_unit_range_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                  const ap_tensor *x);
int ap_cpu_channel_normalize_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x,
                                     const float *mean, const float *std);
int ap_cpu_channel_normalize_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                                      const float *std);
int ap_cpu_colourfulness_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *image);
int ap_cpu_colourfulness_backward(ap_ctx *ctx, const ap_tensor *dimage, const ap_tensor *dout,
                                  const ap_tensor *image);

#endif
