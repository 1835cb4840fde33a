/* tensor.h: the tensor descriptor ops take, and shape validation.
 *
 * A tensor is a buffer plus a shape in PyTorch order, row-major (C order),
 * contiguous, with an element type (dtype) and the device whose memory holds
 * it. Descriptors do not own memory: parameters, gradients and activations
 * are carved out of caller-planned buffers. A zero-initialised descriptor is
 * float32 on the CPU, so the ap_t* constructors and `(ap_tensor){0}` stay
 * what they always were. The checks below name shape, dtype and device.
 */
#ifndef AP_TENSOR_H
#define AP_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define AP_MAX_DIMS 6

/* Element types. Activations, gradients, LoRA and optimizer state are F32;
 * frozen weights may be BF16/F16 where an op says so. */
typedef enum { AP_F32 = 0, AP_F16 = 1, AP_BF16 = 2, AP_DTYPE_COUNT } ap_dtype;
/* Where a tensor's memory lives. */
typedef enum { AP_CPU = 0, AP_CUDA = 1, AP_DEVICE_COUNT } ap_device;

typedef struct ap_tensor {
    float *data; /* the buffer; for dtype != AP_F32 it holds 2-byte elements */
    int ndim;
    int64_t shape[AP_MAX_DIMS];
    ap_dtype dtype;   /* AP_F32 when zero-initialised */
    ap_device device; /* AP_CPU when zero-initialised */
} ap_tensor;

/* "f32", "f16", "bf16". */
const char *ap_dtype_name(ap_dtype dt);
/* "cpu", "cuda". */
const char *ap_device_name(ap_device dev);
/* Bytes of one element. */
size_t ap_dtype_size(ap_dtype dt);
/* numel * element size. */
size_t ap_nbytes(const ap_tensor *t);
/* A descriptor of dtype dt on device dev (data untyped). */
ap_tensor ap_tensor_of(void *data, ap_dtype dt, ap_device dev, int ndim, const int64_t *shape);

ap_tensor ap_t1(float *data, int64_t n0);
ap_tensor ap_t2(float *data, int64_t n0, int64_t n1);
ap_tensor ap_t3(float *data, int64_t n0, int64_t n1, int64_t n2);
ap_tensor ap_t4(float *data, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
ap_tensor ap_tn(float *data, int ndim, const int64_t *shape);

int64_t ap_numel(const ap_tensor *t);

/* Writes "(2, 320, 64, 64)" into buf and returns buf. */
const char *ap_shape_str(const ap_tensor *t, char *buf, size_t len);
/* Writes "(2, 320, 64, 64) f32 cpu" into buf and returns buf. */
const char *ap_tensor_str(const ap_tensor *t, char *buf, size_t len);

/* Fail unless t is non-NULL with data, is float32, and has exactly ndim dims
 * equal to dims[] (an entry < 0 matches anything). Message:
 * "conv2d: weight: expected (320, 4, 3, 3) f32, found (320, 3, 3, 3) f32 cpu".
 * The device is checked against the context by ap_expect_device (ops/). */
int ap_expect(const char *op, const char *arg, const ap_tensor *t, int ndim,
              const int64_t *dims);
/* The same for a tensor whose dtype may be any in the bit mask dtypes
 * (1 << AP_F32 | 1 << AP_BF16, ...): weights an op widens on the fly. */
int ap_expect_dt(const char *op, const char *arg, const ap_tensor *t, unsigned dtypes,
                 int ndim, const int64_t *dims);
/* Fail unless a and b have identical shapes, dtypes and devices; names both. */
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
