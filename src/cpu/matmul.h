/* cpu/matmul.h: CPU bodies of the tensor matmul ops (ops/matmul.h).
 * They trust their arguments (the public ops checked them). */
#ifndef AP_CPU_MATMUL_H
#define AP_CPU_MATMUL_H

#include "core/ctx.h"
#include "core/tensor.h"

int ap_cpu_matmul(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a, const ap_tensor *b,
                  int ta, int tb, float alpha, float beta);
int ap_cpu_matmul_items(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                        const ap_tensor *b, int tb, float alpha, float beta);

size_t ap_cpu_matmul_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                             const ap_tensor *b, int ta, int tb, float alpha, float beta);
size_t ap_cpu_matmul_items_scratch(ap_ctx *ctx, const ap_tensor *out, const ap_tensor *a,
                                   const ap_tensor *b, int tb, float alpha, float beta);

#endif
