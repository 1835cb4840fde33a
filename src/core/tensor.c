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

int ap_expect(const char *op, const char *arg, const ap_tensor *t, int ndim,
              const int64_t *dims) {
    char want[160], got[160];
    dims_str(ndim, dims, want, sizeof want);
    if (!t || !t->data)
        return ap_fail("%s: %s: expected a tensor of shape %s, found none", op,
                       arg, want);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (dims[i] >= 0 && t->shape[i] != dims[i]) ok = 0;
    for (int i = 0; ok && i < ndim; i++)
        if (t->shape[i] <= 0) ok = 0;
    if (ok) return AP_OK;
    return ap_fail("%s: %s: expected shape %s, found %s", op, arg, want,
                   ap_shape_str(t, got, sizeof got));
}

int ap_expect_same(const char *op, const char *arg_a, const ap_tensor *a,
                   const char *arg_b, const ap_tensor *b) {
    char sa[160], sb[160];
    if (!a || !a->data) return ap_fail("%s: %s: expected a tensor, found none", op, arg_a);
    if (!b || !b->data) return ap_fail("%s: %s: expected a tensor, found none", op, arg_b);
    int ok = a->ndim == b->ndim;
    for (int i = 0; ok && i < a->ndim; i++) ok = a->shape[i] == b->shape[i];
    if (ok) return AP_OK;
    return ap_fail("%s: %s has shape %s but %s has shape %s (expected equal)", op,
                   arg_b, ap_shape_str(b, sb, sizeof sb), arg_a,
                   ap_shape_str(a, sa, sizeof sa));
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
