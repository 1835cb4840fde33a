/* pth.c: PyTorch zip checkpoints: mmap, ZIP index, restricted unpickle,
 * flatten the object tree into named tensors, load as float32.
 *
 * Archive layout (docs/formats.md §4): one top folder <prefix>/ holding
 * data.pkl (the pickle), data/<key> (raw little-endian storage bytes),
 * version, and optionally byteorder. A tensor is a view of a storage:
 * element (i0..ik) is storage[offset + sum(ij * stride_j)].
 */
#include "pth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "io/dtype.h"
#include "io/pickle.h"
#include "io/zip.h"

#define MAX_DEPTH 64

typedef struct pth_entry {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[AP_MAX_DIMS];  /* (ndim) */
    int64_t stride[AP_MAX_DIMS]; /* (ndim), elements */
    int64_t offset;              /* elements */
    const ap_zip_entry *rec;     /* <prefix>/data/<key> */
} pth_entry;

typedef struct name_index {
    const char *name;
    int i; /* index into e[] */
} name_index;

struct ap_pth_file {
    char *path;
    uint8_t *map;
    uint64_t size;
    ap_zip zip;
    int n, cap;
    pth_entry *e;       /* (n) pickle order */
    name_index *sorted; /* (n) sorted by name, for lookups */
};

/* Walk state while flattening the pickle tree. */
typedef struct flat {
    ap_pth_file *f;
    const char *prefix; /* zip folder, e.g. "archive" */
    int64_t budget;     /* nodes still allowed to visit */
} flat;

const char *ap_pth_path(const ap_pth_file *f) { return f->path; }
int ap_pth_count(const ap_pth_file *f) { return f->n; }
const char *ap_pth_name(const ap_pth_file *f, int i) {
    return i >= 0 && i < f->n ? f->e[i].name : NULL;
}

const char *ap_pth_strip_prefix(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 ? name + n : NULL;
}

static int add_tensor(flat *fl, const char *name, const ap_pk_value *t) {
    ap_pth_file *f = fl->f;
    const ap_pk_value *s = t->u.tensor.storage;
    char rec[160];
    snprintf(rec, sizeof rec, "%s/data/%.*s", fl->prefix, (int)s->u.storage.key_len,
             s->u.storage.key);
    const ap_zip_entry *ze = ap_zip_find(&f->zip, rec);
    if (!ze)
        return ap_fail("%s: tensor '%s': storage record '%s' is missing from the "
                       "archive", f->path, name, rec);
    int64_t bytes;
    if (__builtin_mul_overflow(s->u.storage.numel, (int64_t)ap_file_dtype_size(s->u.storage.dtype),
                               &bytes) ||
        (uint64_t)bytes != ze->size)
        return ap_fail("%s: tensor '%s': storage '%s' should hold %lld %s elements "
                       "of %zu bytes, the record has %llu bytes",
                       f->path, name, rec, (long long)s->u.storage.numel,
                       ap_file_dtype_name(s->u.storage.dtype),
                       ap_file_dtype_size(s->u.storage.dtype), (unsigned long long)ze->size);
    if (f->n == f->cap) {
        int nc = f->cap ? f->cap * 2 : 64;
        pth_entry *ne = realloc(f->e, (size_t)nc * sizeof *ne);
        if (!ne) return ap_fail("out of memory: %d tensor entries", nc);
        f->e = ne;
        f->cap = nc;
    }
    pth_entry *e = &f->e[f->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return ap_fail("out of memory: tensor name");
    f->n++;
    e->dtype = s->u.storage.dtype;
    e->ndim = t->u.tensor.ndim;
    memcpy(e->shape, t->u.tensor.shape, sizeof e->shape);
    memcpy(e->stride, t->u.tensor.stride, sizeof e->stride);
    e->offset = t->u.tensor.offset;
    e->rec = ze;
    return 0;
}

/* Join prefix and key into a fresh string ("a" + "b" -> "a.b"). */
static char *join(const char *prefix, const char *key, size_t klen) {
    size_t pl = strlen(prefix);
    char *s = ap_malloc(pl + 1 + klen + 1, "tensor name");
    if (!s) return NULL;
    size_t o = 0;
    if (pl) {
        memcpy(s, prefix, pl);
        s[pl] = '.';
        o = pl + 1;
    }
    memcpy(s + o, key, klen);
    s[o + klen] = '\0';
    return s;
}

static int holds_tensors(ap_pk_kind k) {
    return k == AP_PK_TENSOR || k == AP_PK_DICT || k == AP_PK_LIST || k == AP_PK_TUPLE;
}

static int walk(flat *fl, const char *name, const ap_pk_value *v, int depth);

/* Visit child `v` of a container under key `key`. */
static int walk_child(flat *fl, const char *name, const ap_pk_value *key,
                      int64_t index, const ap_pk_value *v, int depth) {
    if (!holds_tensors(v->kind)) return 0; /* scalars, strings: not listed */
    char num[32];
    const char *k;
    size_t kl;
    if (!key || key->kind == AP_PK_INT) {
        kl = (size_t)snprintf(num, sizeof num, "%lld", (long long)(key ? key->u.i : index));
        k = num;
    } else if (key->kind == AP_PK_STR) {
        k = key->u.str.s;
        kl = key->u.str.len;
        if (memchr(k, 0, kl))
            return ap_fail("%s: a key under '%s' contains a NUL byte", fl->f->path, name);
    } else {
        return ap_fail("%s: a dict under '%s' holds tensors under a key that is neither "
                       "a string nor an int", fl->f->path, name[0] ? name : "(top)");
    }
    char *child = join(name, k, kl);
    if (!child) return AP_ERR;
    int rc = walk(fl, child, v, depth + 1);
    free(child);
    return rc;
}

static int walk(flat *fl, const char *name, const ap_pk_value *v, int depth) {
    if (--fl->budget < 0)
        return ap_fail("%s: object graph too large to flatten (shared sub-objects "
                       "repeated many times?)", fl->f->path);
    if (depth > MAX_DEPTH)
        return ap_fail("%s: containers nested deeper than %d at '%.200s' (cyclic?)",
                       fl->f->path, MAX_DEPTH, name);
    switch (v->kind) {
    case AP_PK_TENSOR:
        return add_tensor(fl, name, v);
    case AP_PK_DICT:
        for (int64_t i = 0; i + 1 < v->u.seq.n; i += 2)
            AP_TRY(walk_child(fl, name, v->u.seq.items[i], 0, v->u.seq.items[i + 1],
                              depth));
        return 0;
    case AP_PK_LIST:
    case AP_PK_TUPLE:
        for (int64_t i = 0; i < v->u.seq.n; i++)
            AP_TRY(walk_child(fl, name, NULL, i, v->u.seq.items[i], depth));
        return 0;
    default:
        return 0;
    }
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

static int index_names(ap_pth_file *f) {
    f->sorted = ap_malloc((size_t)(f->n ? f->n : 1) * sizeof *f->sorted, "name index");
    if (!f->sorted) return AP_ERR;
    for (int i = 0; i < f->n; i++) f->sorted[i] = (name_index){f->e[i].name, i};
    qsort(f->sorted, (size_t)f->n, sizeof *f->sorted, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->sorted[i].name, f->sorted[i - 1].name) == 0)
            return ap_fail("%s: tensor name '%s' occurs twice after flattening", f->path,
                           f->sorted[i].name);
    return 0;
}

int ap_pth_find(const ap_pth_file *f, const char *name) {
    if (!f->sorted) return -1;
    name_index key = {name, -1};
    const name_index *hit =
        bsearch(&key, f->sorted, (size_t)f->n, sizeof key, cmp_name);
    return hit ? hit->i : -1;
}

/* Find "<prefix>/data.pkl" (prefix without '/'); copy prefix into out. */
static int find_pickle(ap_pth_file *f, const ap_zip_entry **pkl, char *prefix,
                       size_t cap) {
    *pkl = NULL;
    for (int i = 0; i < f->zip.n; i++) {
        const char *nm = f->zip.e[i].name, *slash = strchr(nm, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (*pkl)
            return ap_fail("%s: two pickles ('%s' and '%s') in one archive", f->path,
                           (*pkl)->name, nm);
        if ((size_t)(slash - nm) >= cap || slash == nm)
            return ap_fail("%s: archive folder name of '%s' is empty or too long",
                           f->path, nm);
        *pkl = &f->zip.e[i];
        memcpy(prefix, nm, (size_t)(slash - nm));
        prefix[slash - nm] = '\0';
    }
    if (!*pkl)
        return ap_fail("%s: ZIP archive without '<folder>/data.pkl': not a torch.save "
                       "checkpoint", f->path);
    return 0;
}

static int check_byteorder(ap_pth_file *f, const char *prefix) {
    char nm[160];
    snprintf(nm, sizeof nm, "%s/byteorder", prefix);
    const ap_zip_entry *e = ap_zip_find(&f->zip, nm);
    if (!e) return 0; /* absent: little-endian (docs/formats.md §4.1) */
    const uint8_t *d;
    uint8_t *owned;
    AP_TRY(ap_zip_read(&f->zip, e, &d, &owned));
    int little = e->size == 6 && memcmp(d, "little", 6) == 0;
    free(owned);
    if (!little)
        return ap_fail("%s: byteorder record is not \"little\": big-endian checkpoints "
                       "are not supported", f->path);
    return 0;
}

static int map_file(ap_pth_file *f) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return ap_fail("%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ap_fail("%s: not a regular file", f->path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ap_fail("%s: empty file (0 bytes)", f->path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return ap_fail("%s: mmap failed: %s", f->path, strerror(errno));
    f->map = p;
    f->size = (uint64_t)st.st_size;
    return 0;
}

static int open_impl(ap_pth_file *f) {
    AP_TRY(map_file(f));
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46};
    if (f->size >= 8 && memcmp(f->map, legacy, 8) == 0)
        return ap_fail("%s: legacy (pre-1.6, non-zip) torch.save format is not "
                       "supported; re-save it with torch.save in PyTorch >= 1.6",
                       f->path);
    if (f->size < 4 || memcmp(f->map, "PK\x03\x04", 4) != 0)
        return ap_fail("%s: not a ZIP archive (does not start with PK\\x03\\x04): not "
                       "a zip torch.save checkpoint", f->path);
    AP_TRY(ap_zip_open(&f->zip, f->map, f->size, f->path));
    const ap_zip_entry *pkl;
    char prefix[128];
    AP_TRY(find_pickle(f, &pkl, prefix, sizeof prefix));
    AP_TRY(check_byteorder(f, prefix));
    const uint8_t *data;
    uint8_t *owned;
    AP_TRY(ap_zip_read(&f->zip, pkl, &data, &owned));
    char what[600];
    snprintf(what, sizeof what, "%s: %s", f->path, pkl->name);
    ap_pk_doc doc;
    int rc = ap_pk_load(&doc, data, (size_t)pkl->size, what);
    if (rc == 0) {
        if (doc.root->kind != AP_PK_DICT)
            rc = ap_fail("%s: top-level object is not a dict (a state dict or "
                         "{'state_dict': ...} expected)", f->path);
        else {
            flat fl = {f, prefix, 16 * doc.n_values + 1024};
            rc = walk(&fl, "", doc.root, 0);
        }
        ap_pk_free(&doc);
    }
    free(owned);
    AP_TRY(rc);
    return index_names(f);
}

int ap_pth_open(ap_pth_file **out, const char *path) {
    *out = NULL;
    ap_pth_file *f = ap_calloc(1, sizeof *f, "pth file");
    if (!f) return AP_ERR;
    f->path = strdup(path);
    if (!f->path || open_impl(f) != 0) {
        if (!f->path) ap_fail("out of memory: path");
        ap_pth_close(f);
        return AP_ERR;
    }
    *out = f;
    return 0;
}

void ap_pth_close(ap_pth_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->e[i].name);
    free(f->e);
    free(f->sorted);
    ap_zip_free(&f->zip);
    if (f->map) munmap(f->map, (size_t)f->size);
    free(f->path);
    free(f);
}

static const pth_entry *lookup(const ap_pth_file *f, const char *name) {
    int i = ap_pth_find(f, name);
    if (i < 0) {
        ap_fail("%s: no tensor named '%s' (the file has %d tensors%s%s)", f->path, name,
                f->n, f->n ? ", e.g. " : "", f->n ? f->e[0].name : "");
        return NULL;
    }
    return &f->e[i];
}

int ap_pth_info(const ap_pth_file *f, const char *name, int *dtype, int *ndim,
                int64_t *shape) {
    const pth_entry *e = lookup(f, name);
    if (!e) return AP_ERR;
    if (dtype) *dtype = e->dtype;
    if (ndim) *ndim = e->ndim;
    if (shape) memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return 0;
}

int ap_pth_layout(const ap_pth_file *f, const char *name, int64_t *stride,
                  int64_t *offset) {
    const pth_entry *e = lookup(f, name);
    if (!e) return AP_ERR;
    if (stride) memcpy(stride, e->stride, (size_t)e->ndim * sizeof *stride);
    if (offset) *offset = e->offset;
    return 0;
}

/* Element at byte pointer p of dtype dt, as float. */
static float elem_f32(const uint8_t *p, int dt) {
    union {
        float f;
        double d;
        uint16_t u16;
        int64_t i64;
        int32_t i32;
        int16_t i16;
    } u;
    switch (dt) {
    case AP_DT_F32: memcpy(&u.f, p, 4); return u.f;
    case AP_DT_F16: memcpy(&u.u16, p, 2); return ap_f16_to_f32(u.u16);
    case AP_DT_BF16: memcpy(&u.u16, p, 2); return ap_bf16_to_f32(u.u16);
    case AP_DT_F64: memcpy(&u.d, p, 8); return (float)u.d;
    case AP_DT_I64: memcpy(&u.i64, p, 8); return (float)u.i64;
    case AP_DT_I32: memcpy(&u.i32, p, 4); return (float)u.i32;
    case AP_DT_I16: memcpy(&u.i16, p, 2); return (float)u.i16;
    case AP_DT_I8: return (float)(int8_t)p[0];
    case AP_DT_U8: return (float)p[0];
    case AP_DT_BOOL: return p[0] ? 1.0f : 0.0f;
    }
    return 0.0f;
}

/* Gather the strided view into dst (row-major), converting each element. */
static void gather(float *dst, const uint8_t *base, const pth_entry *e, int64_t numel) {
    int64_t es = (int64_t)ap_file_dtype_size(e->dtype);
    int contiguous = 1;
    int64_t want = 1;
    for (int i = e->ndim - 1; i >= 0; i--) {
        if (e->shape[i] != 1 && e->stride[i] != want) contiguous = 0;
        want *= e->shape[i];
    }
    const uint8_t *src = base + e->offset * es;
    if (contiguous) {
        if (ap_file_dtype_is_float(e->dtype)) {
            ap_convert_to_f32(dst, src, e->dtype, (size_t)numel);
        } else {
            for (int64_t k = 0; k < numel; k++) dst[k] = elem_f32(src + k * es, e->dtype);
        }
        return;
    }
    int64_t idx[AP_MAX_DIMS] = {0}, off = 0;
    for (int64_t k = 0; k < numel; k++) {
        dst[k] = elem_f32(src + off * es, e->dtype);
        for (int d = e->ndim - 1; d >= 0; d--) { /* odometer increment */
            off += e->stride[d];
            if (++idx[d] < e->shape[d]) break;
            off -= e->stride[d] * e->shape[d];
            idx[d] = 0;
        }
    }
}

int ap_pth_load_f32(const ap_pth_file *f, const char *name, int ndim,
                    const int64_t *shape, ap_tensor *t) {
    memset(t, 0, sizeof *t);
    const pth_entry *e = lookup(f, name);
    if (!e) return AP_ERR;
    ap_tensor found = ap_tn(NULL, e->ndim, e->shape);
    if (ndim > 0) {
        ap_tensor want = ap_tn(NULL, ndim > AP_MAX_DIMS ? AP_MAX_DIMS : ndim, shape);
        int same = ndim == e->ndim;
        for (int i = 0; same && i < ndim; i++) same = shape[i] == e->shape[i];
        if (!same) {
            char a[128], b[128];
            return ap_fail("%s: tensor '%s': expected shape %s, found %s", f->path, name,
                           ap_shape_str(&want, a, sizeof a),
                           ap_shape_str(&found, b, sizeof b));
        }
    }
    int64_t numel = ap_numel(&found);
    const uint8_t *data;
    uint8_t *owned;
    if (ap_zip_read(&f->zip, e->rec, &data, &owned) != 0)
        return ap_err_prefix("tensor '%s': ", name);
    float *dst = ap_malloc((size_t)numel * sizeof(float), name);
    if (!dst) {
        free(owned);
        return ap_err_prefix("%s: ", f->path);
    }
    gather(dst, data, e, numel);
    free(owned);
    *t = found;
    t->data = dst;
    return 0;
}
