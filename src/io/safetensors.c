/* safetensors.c: strict, validating safetensors reader over mmap. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "io/json.h"

#define MAX_HEADER (100u << 20) /* as the reference implementation: 100 MB */

struct ap_st_file {
    char *path;
    unsigned char *map;
    size_t size;
    ap_st_tensor *tensors;
    int count;
    ap_json *header;
    const ap_json *meta;
};

static int by_offset(const void *a, const void *b) {
    const ap_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_entry(ap_st_file *f, const char *name, const ap_json *e,
                       const unsigned char *data, size_t data_size, ap_st_tensor *t) {
    const char *dt;
    if (e->type != AP_JSON_OBJ)
        return ap_fail("tensor %s: expected an object, found %s", name,
                       ap_json_type_name(e->type));
    AP_TRY(ap_json_get_str(e, "dtype", name, &dt));
    int d = ap_file_dtype_parse(dt);
    if (d < 0)
        return ap_fail("tensor %s: dtype: expected one of F32 F16 BF16 F64 I64 I32 I16 "
                       "I8 U8 BOOL, found \"%s\"", name, dt);
    t->dtype = (ap_file_dtype)d;
    const ap_json *shape = ap_json_get(e, "shape");
    if (!shape || shape->type != AP_JSON_ARR)
        return ap_fail("tensor %s: shape: expected an array", name);
    if (shape->len > AP_MAX_DIMS)
        return ap_fail("tensor %s: shape: expected at most %d dims, found %zu", name,
                       AP_MAX_DIMS, shape->len);
    t->ndim = (int)shape->len;
    t->numel = 1;
    for (size_t i = 0; i < shape->len; i++) {
        const ap_json *s = &shape->items[i];
        if (s->type != AP_JSON_NUM || s->num < 0 || s->num > 1e15 ||
            s->num != (double)(int64_t)s->num)
            return ap_fail("tensor %s: shape[%zu]: expected a non-negative integer", name, i);
        t->shape[i] = (int64_t)s->num;
        if (t->shape[i] && t->numel > INT64_MAX / 16 / t->shape[i])
            return ap_fail("tensor %s: shape too large", name);
        t->numel *= t->shape[i];
    }
    const ap_json *off = ap_json_get(e, "data_offsets");
    if (!off || off->type != AP_JSON_ARR || off->len != 2 ||
        off->items[0].type != AP_JSON_NUM || off->items[1].type != AP_JSON_NUM)
        return ap_fail("tensor %s: data_offsets: expected [begin, end]", name);
    double b = off->items[0].num, en = off->items[1].num;
    if (b < 0 || en < b || en > (double)data_size || b != (double)(size_t)b ||
        en != (double)(size_t)en)
        return ap_fail("tensor %s: data_offsets [%.0f, %.0f] outside the data block "
                       "of %zu bytes (file truncated?)", name, b, en, data_size);
    t->nbytes = (size_t)en - (size_t)b;
    size_t want = (size_t)t->numel * ap_file_dtype_size(t->dtype);
    if (t->nbytes != want)
        return ap_fail("tensor %s: expected %zu bytes for %s x %lld, found %zu", name,
                       want, dt, (long long)t->numel, t->nbytes);
    t->data = data + (size_t)b;
    t->name = strdup(name);
    if (!t->name) return ap_fail("out of memory for a tensor name");
    (void)f;
    return AP_OK;
}

static int open_inner(ap_st_file *f) {
    if (f->size < 8)
        return ap_fail("expected at least 8 bytes (header length), found %zu", f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n > MAX_HEADER || n > f->size - 8)
        return ap_fail("header length %llu exceeds the file size %zu or 100 MB "
                       "(truncated or not a safetensors file)",
                       (unsigned long long)n, f->size);
    if (n < 2 || f->map[8] != '{')
        return ap_fail("header: expected a JSON object starting with '{'");
    AP_TRY(ap_json_parse(&f->header, (const char *)f->map + 8, (size_t)n, "header"));
    if (f->header->type != AP_JSON_OBJ) return ap_fail("header: expected a JSON object");
    const unsigned char *data = f->map + 8 + n;
    size_t data_size = f->size - 8 - (size_t)n;
    f->tensors = calloc(f->header->len ? f->header->len : 1, sizeof *f->tensors);
    if (!f->tensors) return ap_fail("out of memory for %zu tensors", f->header->len);
    for (size_t i = 0; i < f->header->len; i++) {
        const char *key = f->header->keys[i];
        if (strcmp(key, "__metadata__") == 0) {
            f->meta = &f->header->items[i];
            if (f->meta->type != AP_JSON_OBJ)
                return ap_fail("__metadata__: expected an object of strings");
            continue;
        }
        AP_TRY(parse_entry(f, key, &f->header->items[i], data, data_size,
                           &f->tensors[f->count]));
        f->count++;
    }
    /* No two tensors may share bytes. */
    ap_st_tensor *sorted = malloc((size_t)(f->count ? f->count : 1) * sizeof *sorted);
    if (!sorted) return ap_fail("out of memory");
    memcpy(sorted, f->tensors, (size_t)f->count * sizeof *sorted);
    qsort(sorted, (size_t)f->count, sizeof *sorted, by_offset);
    for (int i = 1; i < f->count; i++)
        if (sorted[i].data < sorted[i - 1].data + sorted[i - 1].nbytes) {
            ap_fail("tensors %s and %s overlap", sorted[i - 1].name, sorted[i].name);
            free(sorted);
            return AP_ERR;
        }
    free(sorted);
    return AP_OK;
}

int ap_st_open(ap_st_file **out, const char *path) {
    *out = NULL;
    ap_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ap_fail("%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        ap_st_close(f);
        return ap_fail("%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ap_st_close(f);
        return ap_fail("%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->size = 0;
            ap_st_close(f);
            return ap_fail("%s: mmap of %zu bytes failed: %s", path, (size_t)st.st_size,
                           strerror(e));
        }
        f->map = m;
    }
    close(fd);
    if (open_inner(f) != 0) {
        ap_err_prefix("%s: ", path);
        ap_st_close(f);
        return AP_ERR;
    }
    *out = f;
    return AP_OK;
}

void ap_st_close(ap_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    free(f->tensors);
    ap_json_free(f->header);
    free(f->path);
    free(f);
}

const char *ap_st_path(const ap_st_file *f) { return f->path; }
int ap_st_count(const ap_st_file *f) { return f->count; }
const ap_st_tensor *ap_st_at(const ap_st_file *f, int i) {
    return i >= 0 && i < f->count ? &f->tensors[i] : NULL;
}

const ap_st_tensor *ap_st_find(const ap_st_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *ap_st_meta(const ap_st_file *f, const char *key) {
    const ap_json *v = ap_json_get(f->meta, key);
    return v && v->type == AP_JSON_STR ? v->str : NULL;
}

static int check(const ap_st_file *f, const char *name, int ndim, const int64_t *shape,
                 const ap_st_tensor **out) {
    const ap_st_tensor *t = ap_st_find(f, name);
    if (!t) return ap_fail("%s: tensor %s: missing", f->path, name);
    if (!ap_file_dtype_is_float(t->dtype))
        return ap_fail("%s: tensor %s: expected a floating dtype (F32, F16, BF16, F64), "
                       "found %s", f->path, name, ap_file_dtype_name(t->dtype));
    if (ndim > 0) {
        ap_tensor want = ap_tn((float *)1, ndim, shape);
        ap_tensor got = ap_tn((float *)1, t->ndim, t->shape);
        int same = ndim == t->ndim;
        for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
        if (!same) {
            char a[160], b[160];
            return ap_fail("%s: tensor %s: expected shape %s, found %s", f->path, name,
                           ap_shape_str(&want, a, sizeof a), ap_shape_str(&got, b, sizeof b));
        }
    }
    *out = t;
    return AP_OK;
}

/* After a tensor's bytes were converted out of the mapping, drop its whole
 * pages from this process's resident set (the mapping is read-only and
 * file-backed: a later read fetches them again). Loading a model then holds
 * the model plus one tensor of the file, not the model plus the whole file:
 * SD v1.5's UNet peaked at 6.6 GB resident for 3.4 GB of weights. */
static void release(const ap_st_file *f, const ap_st_tensor *t) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t b = ((uintptr_t)t->data + (uintptr_t)(t->numel * (int64_t)ap_file_dtype_size(t->dtype))) &
                  ~(page - 1);
    if (f->map && b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

int ap_st_read_f32(const ap_st_file *f, const char *name, int ndim,
                   const int64_t *shape, float *dst) {
    const ap_st_tensor *t;
    AP_TRY(check(f, name, ndim, shape, &t));
    ap_convert_to_f32(dst, t->data, t->dtype, (size_t)t->numel);
    release(f, t);
    return AP_OK;
}

int ap_st_load_f32(const ap_st_file *f, const char *name, int ndim,
                   const int64_t *shape, ap_tensor *out) {
    const ap_st_tensor *t;
    AP_TRY(check(f, name, ndim, shape, &t));
    float *d = ap_malloc((size_t)t->numel * sizeof(float), name);
    if (!d) return AP_ERR;
    ap_convert_to_f32(d, t->data, t->dtype, (size_t)t->numel);
    release(f, t);
    *out = ap_tn(d, t->ndim, t->shape);
    return AP_OK;
}
