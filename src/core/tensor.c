/* tensor.c: tensor descriptors and shape checks with readable errors. */
#include "tensor.h"

#include <stdio.h>
#include <string.h>

#include "err.h"

ap_tensor ap_tn(float *data, int ndim, const int64_t *shape) {
    ap_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < AP_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

ap_tensor ap_t1(float *d, int64_t n0) { return ap_tn(d, 1, (int64_t[]){n0}); }
ap_tensor ap_t2(float *d, int64_t n0, int64_t n1) {
    return ap_tn(d, 2, (int64_t[]){n0, n1});
}
ap_tensor ap_t3(float *d, int64_t n0, int64_t n1, int64_t n2) {
    return ap_tn(d, 3, (int64_t[]){n0, n1, n2});
}
ap_tensor ap_t4(float *d, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    return ap_tn(d, 4, (int64_t[]){n0, n1, n2, n3});
}

const char *ap_dtype_name(ap_dtype dt) {
    switch (dt) {
    case AP_F32: return "f32";
    case AP_F16: return "f16";
    case AP_BF16: return "bf16";
    default: return "?dtype";
    }
}

const char *ap_device_name(ap_device dev) {
    switch (dev) {
    case AP_CPU: return "cpu";
    case AP_CUDA: return "cuda";
    default: return "?device";
    }
}

size_t ap_dtype_size(ap_dtype dt) { return dt == AP_F32 ? 4 : 2; }

size_t ap_nbytes(const ap_tensor *t) { return (size_t)ap_numel(t) * ap_dtype_size(t->dtype); }

ap_tensor ap_tensor_of(void *data, ap_dtype dt, ap_device dev, int ndim, const int64_t *shape) {
    ap_tensor t = ap_tn(data, ndim, shape);
    t.dtype = dt;
    t.device = dev;
    return t;
}

int64_t ap_numel(const ap_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *ap_shape_str(const ap_tensor *t, char *buf, size_t len) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "(");
    for (int i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %lld" : "%lld",
                                (long long)t->shape[i]);
    if (off < len) snprintf(buf + off, len - off, ")");
    return buf;
}

const char *ap_tensor_str(const ap_tensor *t, char *buf, size_t len) {
    char sh[160];
    snprintf(buf, len, "%s %s %s", ap_shape_str(t, sh, sizeof sh), ap_dtype_name(t->dtype),
             ap_device_name(t->device));
    return buf;
}

static void dtypes_str(unsigned dtypes, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = 0;
    for (int d = 0; d < AP_DTYPE_COUNT && off < len; d++)
        if (dtypes & (1u << d))
            off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "|" : "",
                                    ap_dtype_name((ap_dtype)d));
}

static void dims_str(int ndim, const int64_t *dims, char *buf, size_t len) {
    size_t off = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && off < len; i++) {
        const char *sep = i ? ", " : "";
        if (dims[i] < 0)
            off += (size_t)snprintf(buf + off, len - off, "%s*", sep);
        else
            off += (size_t)snprintf(buf + off, len - off, "%s%lld", sep,
                                    (long long)dims[i]);
    }
    if (off < len) snprintf(buf + off, len - off, ")");
}

int ap_expect_dt(const char *op, const char *arg, const ap_tensor *t, unsigned dtypes,
                 int ndim, const int64_t *dims) {
    char want[160], dts[40], got[200];
    dims_str(ndim, dims, want, sizeof want);
    dtypes_str(dtypes, dts, sizeof dts);
    if (!t || !t->data)
        return ap_fail("%s: %s: expected a tensor of shape %s %s, found none", op, arg, want,
                       dts);
    int ok = t->ndim == ndim && t->dtype >= 0 && t->dtype < AP_DTYPE_COUNT &&
             (dtypes & (1u << t->dtype));
    for (int i = 0; ok && i < ndim; i++)
        if (dims[i] >= 0 && t->shape[i] != dims[i]) ok = 0;
    for (int i = 0; ok && i < ndim; i++)
        if (t->shape[i] <= 0) ok = 0;
    if (ok) return AP_OK;
    return ap_fail("%s: %s: expected shape %s %s, found %s", op, arg, want, dts,
                   ap_tensor_str(t, got, sizeof got));
}

int ap_expect(const char *op, const char *arg, const ap_tensor *t, int ndim,
              const int64_t *dims) {
    return ap_expect_dt(op, arg, t, 1u << AP_F32, ndim, dims);
}

int ap_expect_same(const char *op, const char *arg_a, const ap_tensor *a,
                   const char *arg_b, const ap_tensor *b) {
    char sa[200], sb[200];
    if (!a || !a->data) return ap_fail("%s: %s: expected a tensor, found none", op, arg_a);
    if (!b || !b->data) return ap_fail("%s: %s: expected a tensor, found none", op, arg_b);
    int ok = a->ndim == b->ndim && a->dtype == b->dtype && a->device == b->device;
    for (int i = 0; ok && i < a->ndim; i++) ok = a->shape[i] == b->shape[i];
    if (ok) return AP_OK;
    return ap_fail("%s: %s is %s but %s is %s (expected the same shape, dtype and device)",
                   op, arg_b, ap_tensor_str(b, sb, sizeof sb), arg_a,
                   ap_tensor_str(a, sa, sizeof sa));
}

int ap_expect1(const char *op, const char *arg, const ap_tensor *t, int64_t n0) {
    return ap_expect(op, arg, t, 1, (int64_t[]){n0});
}
int ap_expect2(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1) {
    return ap_expect(op, arg, t, 2, (int64_t[]){n0, n1});
}
int ap_expect3(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1, int64_t n2) {
    return ap_expect(op, arg, t, 3, (int64_t[]){n0, n1, n2});
}
int ap_expect4(const char *op, const char *arg, const ap_tensor *t, int64_t n0,
               int64_t n1, int64_t n2, int64_t n3) {
    return ap_expect(op, arg, t, 4, (int64_t[]){n0, n1, n2, n3});
}
