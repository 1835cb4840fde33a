/* tensor.h: the tensor descriptor ops take, and shape validation.
 *
 * A tensor is a float32 buffer plus a shape in PyTorch order, row-major
 * (C order), contiguous. Descriptors do not own memory: parameters,
 * gradients and activations are carved out of caller-planned buffers.
 */
#ifndef AP_TENSOR_H
#define AP_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define AP_MAX_DIMS 6

typedef struct ap_tensor {
    float *data;
    int ndim;
    int64_t shape[AP_MAX_DIMS];
} ap_tensor;

ap_tensor ap_t1(float *data, int64_t n0);
ap_tensor ap_t2(float *data, int64_t n0, int64_t n1);
ap_tensor ap_t3(float *data, int64_t n0, int64_t n1, int64_t n2);
ap_tensor ap_t4(float *data, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
ap_tensor ap_tn(float *data, int ndim, const int64_t *shape);

int64_t ap_numel(const ap_tensor *t);

/* Writes "(2, 320, 64, 64)" into buf and returns buf. */
const char *ap_shape_str(const ap_tensor *t, char *buf, size_t len);

/* Fail unless t is non-NULL with data and has exactly ndim dims equal to
 * dims[] (an entry < 0 matches anything). Message:
 * "conv2d: weight: expected shape (320, 4, 3, 3), found (320, 3, 3, 3)". */
int ap_expect(const char *op, const char *arg, const ap_tensor *t, int ndim,
              const int64_t *dims);
/* Fail unless a and b have identical shapes; names both arguments. */
int ap_expect_same(const char *op, const char *arg_a, const ap_tensor *a,
                   const char *arg_b, const ap_tensor *b);

/* Convenience wrappers of ap_expect for fixed ranks. */
int ap_expect1(const char *op, const char *arg, const ap_tensor *t, int64_t n0);
int ap_expect2(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1);
int ap_expect3(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1, int64_t n2);
int ap_expect4(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1, int64_t n2, int64_t n3);

/* True when an optional tensor argument is present (non-NULL with data). */
static inline int ap_present(const ap_tensor *t) { return t && t->data; }

#endif
