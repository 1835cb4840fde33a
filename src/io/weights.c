/* weights.c: checkpoint tensor index and named-slot filling. */
#include "weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/err.h"
#include "core/finite.h"
#include "io/dtype.h"
#include "io/pth.h"
#include "io/safetensors.h"

/* ---- parameter slots ---------------------------------------------------- */

void ap_params_init(ap_params *p) { memset(p, 0, sizeof *p); }

void ap_params_free(ap_params *p) {
    for (int i = 0; i < p->count; i++) free(p->items[i].name);
    free(p->items);
    if (p->unbacked)
        ap_unbacked_free(p->flat, p->total * sizeof(float));
    else
        free(p->flat);
    memset(p, 0, sizeof *p);
}

int ap_params_add(ap_params *p, ap_tensor *dst, int ndim, const int64_t *shape,
                  const char *fmt, ...) {
    if (p->count == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        ap_param *n = realloc(p->items, (size_t)nc * sizeof *n);
        if (!n) return ap_fail("out of memory for %d parameter slots", nc), -1;
        p->items = n;
        p->cap = nc;
    }
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    ap_param *s = &p->items[p->count];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    if (!s->name) return ap_fail("out of memory"), -1;
    s->t = ap_tn(NULL, ndim, shape);
    s->offset = p->total;
    s->dst = dst;
    if (dst) *dst = s->t;
    p->total += (size_t)ap_numel(&s->t);
    return p->count++;
}

int ap_params_alloc(ap_params *p, const char *what) {
    free(p->flat);
    p->flat = ap_calloc(p->total ? p->total : 1, sizeof(float), what);
    if (!p->flat) return AP_ERR;
    for (int i = 0; i < p->count; i++) {
        p->items[i].t.data = p->flat + p->items[i].offset;
        if (p->items[i].dst) *p->items[i].dst = p->items[i].t;
    }
    return AP_OK;
}

/* ---- frozen weights in 2-byte types -------------------------------------- */

static ap_dtype frozen_dtype = AP_F32;

void ap_weights_set_frozen_dtype(ap_dtype dt) { frozen_dtype = dt; }
ap_dtype ap_weights_frozen_dtype(void) { return frozen_dtype; }

int ap_weights_precision_parse(const char *s, ap_dtype *dt) {
    if (!strcmp(s, "fp32")) *dt = AP_F32;
    else if (!strcmp(s, "bf16")) *dt = AP_BF16;
    else if (!strcmp(s, "fp16")) *dt = AP_F16;
    else return ap_fail("precision: expected fp32, bf16 or fp16, found \"%s\"", s);
    return AP_OK;
}

static size_t slot_floats(const ap_tensor *t) {
    size_t n = (size_t)ap_numel(t);
    return t->dtype == AP_F32 ? n : (n + 1) / 2;
}

void ap_params_store_frozen(ap_params *p, const char *const *keep_f32) {
    if (frozen_dtype == AP_F32) return;
    p->total = 0;
    for (int i = 0; i < p->count; i++) {
        ap_param *s = &p->items[i];
        size_t len = strlen(s->name);
        int pick = s->t.ndim >= 2 && len >= 6 && !strcmp(s->name + len - 6, "weight");
        for (int k = 0; pick && keep_f32 && keep_f32[k]; k++)
            if (strstr(s->name, keep_f32[k])) pick = 0;
        if (pick) s->t.dtype = frozen_dtype;
        s->offset = p->total;
        p->total += slot_floats(&s->t);
        if (s->dst) *s->dst = s->t;
    }
}

size_t ap_params_bytes(const ap_params *p) { return p->total * sizeof(float); }

ap_param *ap_params_find(const ap_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0) return &p->items[i];
    return NULL;
}

/* ---- tensor index ------------------------------------------------------- */

/* One checkpoint file: safetensors or a PyTorch zip-pickle (.pth/.pt/.bin/.ckpt). */
typedef struct {
    ap_st_file *st;
    ap_pth_file *pth;
} wfile;

typedef struct {
    const char *name;  /* the name slots look up: the key, or its rename */
    const char *key;   /* the key as stored in the file */
    const wfile *file; /* owning file */
    int flags;         /* AP_WSRC_* from the rename hook (0 without one) */
} entry;

struct ap_wsrc {
    wfile *files; /* pointers into it stay valid: the array is sized up front */
    int nfiles, capfiles;
    entry *entries;
    int count;
    char *file_list;
    ap_wsrc_rename_fn rename; /* NULL: names are the keys */
    void *rename_ctx;
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static const char *wfile_path(const wfile *f) {
    return f->st ? ap_st_path(f->st) : ap_pth_path(f->pth);
}

static int wfile_open(wfile *f, const char *path) {
    memset(f, 0, sizeof *f);
    unsigned char magic[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return ap_fail("%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)
        return ap_pth_open(&f->pth, path);
    return ap_st_open(&f->st, path);
}

static void wfile_close(wfile *f) {
    ap_st_close(f->st);
    ap_pth_close(f->pth);
}

static int wfile_count(const wfile *f) {
    return f->st ? ap_st_count(f->st) : ap_pth_count(f->pth);
}

static const char *wfile_name(const wfile *f, int i) {
    return f->st ? ap_st_at(f->st, i)->name : ap_pth_name(f->pth, i);
}

/* Stored shape of a tensor known to be in f. */
static ap_tensor wfile_shape(const wfile *f, const char *name) {
    if (f->st) {
        const ap_st_tensor *t = ap_st_find(f->st, name);
        return ap_tn((float *)1, t->ndim, t->shape);
    }
    int dtype, ndim = 0;
    int64_t shape[AP_MAX_DIMS] = {0};
    ap_pth_info(f->pth, name, &dtype, &ndim, shape);
    return ap_tn((float *)1, ndim, shape);
}

static int wfile_read(const wfile *f, const char *name, float *dst, size_t n) {
    if (f->st) return ap_st_read_f32(f->st, name, 0, NULL, dst);
    ap_tensor t;
    AP_TRY(ap_pth_load_f32(f->pth, name, 0, NULL, &t));
    memcpy(dst, t.data, n * sizeof(float));
    free(t.data);
    return AP_OK;
}

/* Give e its lookup name: the key, or the rename hook's name (owned). */
static int name_entry(const ap_wsrc *w, entry *e) {
    e->name = e->key;
    e->flags = 0;
    if (!w->rename) return AP_OK;
    char buf[640];
    buf[0] = '\0';
    int r = w->rename(w->rename_ctx, e->key, buf, sizeof buf);
    if (r < 0) return ap_err_prefix("%s: tensor %s: ", wfile_path(e->file), e->key);
    e->flags = r;
    if (!(r & AP_WSRC_RENAMED)) return AP_OK;
    if (strlen(buf) >= sizeof buf - 1)
        return ap_fail("%s: tensor %s: renamed key too long", wfile_path(e->file), e->key);
    char *n = strdup(buf);
    if (!n) return ap_fail("out of memory");
    e->name = n;
    return AP_OK;
}

static void free_names(entry *e, int n) {
    for (int i = 0; i < n; i++)
        if (e[i].name != e[i].key) free((char *)e[i].name);
}

/* Sort the index by name; two entries of one name are an error (which one
 * is meant?), naming both keys when a rename made them collide. */
static int sort_index(ap_wsrc *w) {
    qsort(w->entries, (size_t)w->count, sizeof *w->entries, cmp_entry);
    for (int i = 1; i < w->count; i++) {
        const entry *a = &w->entries[i - 1], *b = &w->entries[i];
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->file != b->file)
            return ap_fail("%s: tensor %s is also in %s", wfile_path(b->file), b->name,
                           wfile_path(a->file));
        if (strcmp(a->key, b->key) != 0)
            return ap_fail("%s: tensors %s and %s both map to the name %s (renaming)",
                           wfile_path(a->file), a->key, b->key, a->name);
        return ap_fail("%s: tensor %s appears twice", wfile_path(a->file), a->name);
    }
    return AP_OK;
}

int ap_wsrc_add(ap_wsrc *w, const char *path) {
    if (w->nfiles == w->capfiles) {
        /* entries point at files: grow by rebuilding those pointers */
        int nc = w->capfiles ? w->capfiles * 2 : 4;
        wfile *nf = calloc((size_t)nc, sizeof *nf);
        if (!nf) return ap_fail("out of memory");
        if (w->nfiles) memcpy(nf, w->files, (size_t)w->nfiles * sizeof *nf);
        for (int i = 0; i < w->count; i++) w->entries[i].file = nf + (w->entries[i].file - w->files);
        free(w->files);
        w->files = nf;
        w->capfiles = nc;
    }
    wfile *f = &w->files[w->nfiles];
    AP_TRY(wfile_open(f, path));
    int n = wfile_count(f);
    entry *e = realloc(w->entries, (size_t)(w->count + n + 1) * sizeof *e);
    if (!e) {
        wfile_close(f);
        return ap_fail("out of memory");
    }
    w->entries = e;
    w->nfiles++;
    for (int i = 0; i < n; i++) {
        entry *x = &w->entries[w->count];
        *x = (entry){NULL, wfile_name(f, i), f, 0};
        if (name_entry(w, x) != 0) return AP_ERR;
        w->count++;
    }
    AP_TRY(sort_index(w));
    size_t len = 0;
    for (int i = 0; i < w->nfiles; i++) len += strlen(wfile_path(&w->files[i])) + 2;
    char *fl = realloc(w->file_list, len + 1);
    if (!fl) return ap_fail("out of memory");
    w->file_list = fl;
    fl[0] = '\0';
    for (int i = 0; i < w->nfiles; i++) {
        if (i) strcat(fl, ", ");
        strcat(fl, wfile_path(&w->files[i]));
    }
    return AP_OK;
}

/* Names back to the stored keys (those were checked unique when added). */
static void plain_names(ap_wsrc *w) {
    free_names(w->entries, w->count);
    for (int i = 0; i < w->count; i++) w->entries[i].name = w->entries[i].key, w->entries[i].flags = 0;
    w->rename = NULL;
    w->rename_ctx = NULL;
    qsort(w->entries, (size_t)w->count, sizeof *w->entries, cmp_entry);
}

int ap_wsrc_set_rename(ap_wsrc *w, ap_wsrc_rename_fn fn, void *ctx) {
    plain_names(w);
    w->rename = fn;
    w->rename_ctx = ctx;
    int rc = AP_OK;
    for (int i = 0; i < w->count && !rc; i++) rc = name_entry(w, &w->entries[i]);
    if (!rc) rc = sort_index(w);
    if (rc) plain_names(w); /* on failure the index keeps the stored keys */
    return rc;
}

int ap_wsrc_open(ap_wsrc **out, const char *path) {
    *out = NULL;
    ap_wsrc *w = calloc(1, sizeof *w);
    if (!w) return ap_fail("out of memory");
    if (ap_wsrc_add(w, path) != 0) {
        ap_wsrc_close(w);
        return AP_ERR;
    }
    *out = w;
    return AP_OK;
}

void ap_wsrc_close(ap_wsrc *w) {
    if (!w) return;
    free_names(w->entries, w->count);
    for (int i = 0; i < w->nfiles; i++) wfile_close(&w->files[i]);
    free(w->files);
    free(w->entries);
    free(w->file_list);
    free(w);
}

int ap_wsrc_count(const ap_wsrc *w) { return w->count; }
const char *ap_wsrc_name(const ap_wsrc *w, int i) { return w->entries[i].name; }
const char *ap_wsrc_key(const ap_wsrc *w, int i) { return w->entries[i].key; }
const char *ap_wsrc_files(const ap_wsrc *w) { return w->file_list ? w->file_list : ""; }

static const entry *find(const ap_wsrc *w, const char *name) {
    entry key = {name, NULL, NULL, 0};
    return bsearch(&key, w->entries, (size_t)w->count, sizeof key, cmp_entry);
}

int ap_wsrc_shape(const ap_wsrc *w, const char *name, ap_tensor *shape) {
    const entry *e = find(w, name);
    if (!e) return ap_fail("%s: tensor %s: missing", ap_wsrc_files(w), name);
    *shape = wfile_shape(e->file, e->key);
    shape->data = NULL;
    return AP_OK;
}

/* ---- filling ------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    int n;
} strlist;

static void sl_add(strlist *s, const char *fmt, ...) {
    char item[768];
    va_list ap;
    va_start(ap, fmt);
    int l = vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    if (l < 0) return;
    if ((size_t)l >= sizeof item) l = (int)sizeof item - 1;
    s->n++;
    if (s->n > 20) return; /* the count says the rest */
    if (s->len + (size_t)l + 3 > s->cap) {
        size_t nc = (s->cap + (size_t)l + 3) * 2;
        char *b = realloc(s->buf, nc);
        if (!b) return;
        s->buf = b;
        s->cap = nc;
    }
    if (s->len) { memcpy(s->buf + s->len, "; ", 2); s->len += 2; }
    memcpy(s->buf + s->len, item, (size_t)l);
    s->len += (size_t)l;
    s->buf[s->len] = '\0';
}

/* name: an index name with the fill prefix removed. */
static int ignored(const char *name, const char *const *ignore) {
    size_t ln = strlen(name);
    for (; ignore && *ignore; ignore++) {
        size_t ls = strlen(*ignore);
        if (ls && (*ignore)[ls - 1] == '*') { /* "text_model.*": a prefix */
            if (strncmp(name, *ignore, ls - 1) == 0) return 1;
        } else if (ln >= ls && strcmp(name + ln - ls, *ignore) == 0) {
            return 1;
        }
    }
    return 0;
}

/* got equals want, or (squeeze) equals want followed by size-1 dims. */
static int shape_ok(const ap_tensor *got, const ap_tensor *want, int squeeze) {
    if (got->ndim < want->ndim || (got->ndim > want->ndim && !squeeze)) return 0;
    for (int d = 0; d < want->ndim; d++)
        if (got->shape[d] != want->shape[d]) return 0;
    for (int d = want->ndim; d < got->ndim; d++)
        if (got->shape[d] != 1) return 0;
    return 1;
}

int ap_params_fill(ap_params *p, const ap_wsrc *w, const char *prefix,
                   const char *const *ignore) {
    if (!p->flat) return ap_fail("ap_params_fill: slots not allocated (call ap_params_alloc)");
    unsigned char *used = calloc((size_t)w->count + 1, 1);
    if (!used) return ap_fail("out of memory");
    strlist missing = {0}, shape = {0}, unused = {0};
    char key[640];
    for (int i = 0; i < p->count; i++) {
        ap_param *s = &p->items[i];
        snprintf(key, sizeof key, "%s%s", prefix ? prefix : "", s->name);
        const entry *e = find(w, key);
        if (!e) { sl_add(&missing, "%s %s", key, ap_shape_str(&s->t, (char[160]){0}, 160)); continue; }
        used[e - w->entries] = 1;
        ap_tensor got = wfile_shape(e->file, e->key);
        if (!shape_ok(&got, &s->t, e->flags & AP_WSRC_SQUEEZE)) {
            char a[160], b[160];
            sl_add(&shape, "%s expected %s, found %s", key, ap_shape_str(&s->t, a, sizeof a),
                   ap_shape_str(&got, b, sizeof b));
            continue;
        }
        /* a 2-byte slot: read as f32 (exact for bf16 / f16 files), then narrow */
        const size_t n = (size_t)ap_numel(&s->t);
        float *f = s->t.dtype == AP_F32 ? s->t.data : malloc(n * sizeof(float) + 1);
        if (!f) {
            sl_add(&shape, "%s: out of memory for %zu floats", key, n);
            continue;
        }
        if (wfile_read(e->file, e->key, f, n) != 0) {
            sl_add(&shape, "%s", ap_errmsg());
            if (f != s->t.data) free(f);
            continue;
        }
        int64_t bad = ap_first_nonfinite(f, (int64_t)n);
        if (bad >= 0)
            sl_add(&shape, "%s holds the non-finite value %g at index %lld (expected finite "
                   "numbers)", key, (double)f[bad], (long long)bad);
        if (f == s->t.data) continue;
        uint16_t *h = (uint16_t *)s->t.data;
        int64_t big = -1;
        for (size_t k = 0; k < n; k++) {
            h[k] = s->t.dtype == AP_BF16 ? ap_f32_to_bf16(f[k]) : ap_f32_to_f16(f[k]);
            if (big < 0 && s->t.dtype == AP_F16 && (h[k] & 0x7c00u) == 0x7c00u && bad < 0)
                big = (int64_t)k;
        }
        if (big >= 0)
            sl_add(&shape, "%s holds %g at index %lld, beyond the f16 range (use bf16 or "
                   "fp32)", key, (double)f[big], (long long)big);
        free(f);
    }
    size_t plen = prefix ? strlen(prefix) : 0;
    for (int i = 0; i < w->count; i++)
        if (!used[i] && strncmp(w->entries[i].name, prefix ? prefix : "", plen) == 0 &&
            !ignored(w->entries[i].name + plen, ignore))
            sl_add(&unused, "%s", w->entries[i].name);
    free(used);
    int rc = AP_OK;
    if (missing.n || shape.n) {
        rc = ap_fail("%s: %d missing tensor%s%s%s%s; %d wrong shape, type or value%s%s%s",
                     ap_wsrc_files(w), missing.n, missing.n == 1 ? "" : "s",
                     missing.n ? " (" : "", missing.n ? missing.buf : "",
                     missing.n ? (missing.n > 20 ? ", ...)" : ")") : "", shape.n,
                     shape.n ? " (" : "", shape.n ? shape.buf : "",
                     shape.n ? (shape.n > 20 ? ", ...)" : ")") : "");
    } else if (unused.n) {
        fprintf(stderr, "warning: %s: %d tensor%s not used by the model: %s%s\n",
                ap_wsrc_files(w), unused.n, unused.n == 1 ? "" : "s", unused.buf,
                unused.n > 20 ? ", ..." : "");
    }
    free(missing.buf);
    free(shape.buf);
    free(unused.buf);
    return rc;
}

int ap_params_alloc_unbacked(ap_params *p, const char *what) {
    if (p->flat) return ap_fail("%s: parameters already allocated", what);
    p->flat = ap_unbacked_alloc(p->total * sizeof(float), what);
    if (!p->flat) return AP_ERR;
    p->unbacked = 1;
    for (int i = 0; i < p->count; i++) {
        p->items[i].t.data = p->flat + p->items[i].offset;
        if (p->items[i].dst) *p->items[i].dst = p->items[i].t;
    }
    return AP_OK;
}
