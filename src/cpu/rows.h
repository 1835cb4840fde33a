/* cpu/rows.h: CPU bodies of the row ops (ops/rows.h). They trust their
 * arguments (the public ops checked them). */
#ifndef AP_CPU_ROWS_H
#define AP_CPU_ROWS_H

#include "ops/rows.h"

int ap_cpu_tensor_read(ap_ctx *ctx, float *host, const ap_tensor *t);
int ap_cpu_tensor_write(ap_ctx *ctx, const ap_tensor *t, const float *host);
int ap_cpu_gather_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, const int *idx,
                       int m);
int ap_cpu_gather_rows_backward(ap_ctx *ctx, const ap_tensor *din, const ap_tensor *dout,
                                const int *idx, int m);
int ap_cpu_sum_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in, int accumulate);
int ap_cpu_count_nonfinite(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *in);
int ap_cpu_add_broadcast_rows(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                              const ap_tensor *b);
int ap_cpu_l2norm_forward(ap_ctx *ctx, const ap_tensor *u, const ap_tensor *norm,
                          const ap_tensor *v, float eps);
int ap_cpu_l2norm_backward(ap_ctx *ctx, const ap_tensor *dv, const ap_tensor *du,
                           const ap_tensor *u, const ap_tensor *norm, float eps);
int ap_cpu_row_dot_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                           const ap_tensor *b);
int ap_cpu_row_dot_backward(ap_ctx *ctx, const ap_tensor *da, const ap_tensor *db,
                            const ap_tensor *dout, const ap_tensor *a, const ap_tensor *b);
int ap_cpu_abs_diff_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float target);
int ap_cpu_abs_diff_backward(ap_ctx *ctx, const ap_tensor *dx, const ap_tensor *dout,
                             const ap_tensor *x, float target);
int ap_cpu_affine_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float a,
                          float b);
int ap_cpu_divide_forward(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *x, float s);

#endif
