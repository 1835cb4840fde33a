/* checkpoint.c: training checkpoints (state.h5 + the LoRA export) written as
 * one atomically published directory, pruned oldest first, found again by
 * ap_ckpt_latest and read back with strict name/shape/count checks.
 *
 * HDF5's own error-stack printing is switched off (H5Eset_auto2) at every
 * entry point; every HDF5 failure becomes an ap_fail message naming the file
 * and the object. Strings are variable-length UTF-8 attributes (h5py reads
 * them as str); LoRA tensors are contiguous float32 datasets /lora/<name>.
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/killpoint.h"
#include "io/atomic.h"
#include "io/lora_file.h"
#include "io/st_write.h"
#include "train/h5log.h"

enum { CKPT_VERSION = 1 };

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void ap_hash_floats(const float *x, size_t n, uint64_t *h) {
    uint64_t a = *h ? *h : 0xCBF29CE484222325ull;
    const uint32_t *w = (const uint32_t *)x;
    for (size_t i = 0; i < n; i++) {
        a ^= w[i];
        a *= 0x100000001B3ull;
        a ^= a >> 29;
    }
    *h = a;
}

/* lora_hash (m, v NULL) or adam_hash as 16 hex digits. */
static void content_hash(const float *a, const float *b, size_t n, char out[17]) {
    uint64_t h = 0;
    ap_hash_floats(a, n, &h);
    if (b) ap_hash_floats(b, n, &h);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- writing ----------------------------------------------------------- */

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = sp < 0 ? -1 : H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = at < 0 || H5Awrite(at, mtype, val) < 0 ? -1 : 0;
    if (rc) (void)ap_h5_why(); /* keep the reason before the closes */
    if (at >= 0) H5Aclose(at);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int attr_str(hid_t obj, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    const char *v = s ? s : "";
    int rc = attr_write(obj, name, t, t, &v);
    H5Tclose(t);
    return rc;
}

static int dset_write(hid_t loc, const char *name, hid_t lcpl, int ndim, const int64_t *shape,
                      const float *data) {
    hsize_t dims[AP_MAX_DIMS];
    for (int d = 0; d < ndim; d++) dims[d] = (hsize_t)shape[d];
    hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (rc) (void)ap_h5_why(); /* keep the reason: the closes below clear HDF5's stack */
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return rc ? -1 : 0;
}

/* state.h5 at file (shown as shown in messages). */
static int write_state(const char *file, const char *shown, const ap_params *lora, const float *m,
                       const float *v, const ap_ckpt_meta *meta) {
    int rc = AP_ERR;
    hid_t f = -1, g = -1, lcpl = -1;
    f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return ap_fail("%s: cannot create the HDF5 file: %s", shown, ap_h5_why());
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        ap_fail("%s: HDF5 link property list", shown);
        goto out;
    }
    if ((g = H5Gcreate2(f, "lora", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        ap_fail("%s: cannot create group /lora: %s", shown, ap_h5_why());
        goto out;
    }
    for (int i = 0; i < lora->count; i++) {
        const ap_param *p = &lora->items[i];
        if (dset_write(g, p->name, lcpl, p->t.ndim, p->t.shape, lora->flat + p->offset)) {
            ap_fail("%s: cannot write dataset /lora/%s: %s", shown, p->name, ap_h5_why());
            goto out;
        }
    }
    H5Gclose(g);
    if ((g = H5Gcreate2(f, "adam", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        ap_fail("%s: cannot create group /adam: %s", shown, ap_h5_why());
        goto out;
    }
    int64_t n = (int64_t)lora->total;
    if (dset_write(g, "m", H5P_DEFAULT, 1, &n, m) || dset_write(g, "v", H5P_DEFAULT, 1, &n, v)) {
        ap_fail("%s: cannot write /adam/m, /adam/v (%" PRId64 " floats): %s", shown, n, ap_h5_why());
        goto out;
    }
    int64_t version = CKPT_VERSION;
    const char *bad = NULL;
    char lora_hash[17], adam_hash[17];
    content_hash(lora->flat, NULL, lora->total, lora_hash);
    content_hash(m, v, lora->total, adam_hash);
    if (attr_write(f, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &meta->step)) bad = "step";
    else if (attr_write(f, "epoch", H5T_STD_I64LE, H5T_NATIVE_INT64, &meta->epoch)) bad = "epoch";
    else if (attr_write(f, "adam_step", H5T_STD_I64LE, H5T_NATIVE_INT64, &meta->adam_step))
        bad = "adam_step";
    else if (attr_write(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &meta->seed)) bad = "seed";
    else if (attr_write(f, "next_sample", H5T_STD_I64LE, H5T_NATIVE_INT64, &meta->next_sample))
        bad = "next_sample";
    else if (attr_str(f, "config", meta->config)) bad = "config";
    else if (attr_str(f, "model", meta->model)) bad = "model";
    else if (attr_str(f, "base_hash", meta->base_hash)) bad = "base_hash";
    else if (attr_str(f, "lora_hash", lora_hash)) bad = "lora_hash";
    else if (attr_str(f, "adam_hash", adam_hash)) bad = "adam_hash";
    else if (attr_write(f, "version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version)) bad = "version";
    if (bad) {
        ap_fail("%s: cannot write attribute /%s: %s", shown, bad, ap_h5_why());
        goto out;
    }
    rc = AP_OK;
out:
    if (g >= 0) H5Gclose(g);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (H5Fclose(f) < 0 && rc == AP_OK)
        rc = ap_fail("%s: HDF5 close (flush) failed: %s", shown, ap_h5_why());
    return rc;
}

static int write_export(const char *file, const ap_params *lora) {
    ap_st_entry *e = ap_calloc((size_t)(lora->count ? lora->count : 1), sizeof *e, "LoRA export list");
    if (!e) return AP_ERR;
    for (int i = 0; i < lora->count; i++) {
        e[i].name = lora->items[i].name;
        e[i].t = &lora->items[i].t;
    }
    const char *meta[] = {"format", "pt", NULL};
    int rc = ap_st_write(file, e, lora->count, meta);
    free(e);
    return rc;
}

/* ---- listing and pruning ----------------------------------------------- */

/* Steps of the final-named checkpoint_<N> directories of dir (sorted
 * ascending); *n entries, malloc'ed; a missing dir gives none. */
static int list_steps(const char *dir, int64_t **out, int *n) {
    *out = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return AP_OK;
        return ap_fail("%s: cannot list: %s", dir, strerror(errno));
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, "checkpoint_", 11) != 0 || !s[11]) continue;
        int digits = 1;
        for (const char *c = s + 11; *c; c++) digits &= *c >= '0' && *c <= '9';
        if (!digits || strlen(s + 11) > 18) continue; /* temporaries: checkpoint_N.tmp.* */
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *b = realloc(*out, (size_t)cap * sizeof *b);
            if (!b) {
                closedir(d);
                free(*out);
                *out = NULL;
                return ap_fail("out of memory listing %s", dir);
            }
            *out = b;
        }
        (*out)[(*n)++] = strtoll(s + 11, NULL, 10);
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort: a handful of entries */
        for (int j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
            int64_t t = (*out)[j];
            (*out)[j] = (*out)[j - 1], (*out)[j - 1] = t;
        }
    return AP_OK;
}

static int prune(const char *dir, int limit, int64_t keep) {
    int64_t *steps;
    int n;
    AP_TRY(list_steps(dir, &steps, &n));
    int excess = n - limit, rc = AP_OK;
    for (int i = 0; i < n && excess > 0 && rc == AP_OK; i++) {
        if (steps[i] == keep) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/checkpoint_%" PRId64, dir, steps[i]);
        rc = ap_atomic_remove(p);
        excess--;
    }
    free(steps);
    return rc;
}

int ap_ckpt_write(const char *run_dir, const ap_params *lora, const float *m, const float *v,
                  const ap_ckpt_meta *meta, int limit, char *path_out, size_t cap) {
    h5_quiet();
    if (!lora || (lora->total && !lora->flat) || !m || !v || !meta)
        return ap_fail("ap_ckpt_write(%s): LoRA list without data, or no Adam moments / meta",
                       run_dir);
    char dir[4096], final[4200], file[8500];
    if (snprintf(dir, sizeof dir, "%s/checkpoints", run_dir) >= (int)sizeof dir)
        return ap_fail("%s: run directory name too long", run_dir);
    if (mkdir(run_dir, 0777) != 0 && errno != EEXIST)
        return ap_fail("%s: cannot create the run directory: %s", run_dir, strerror(errno));
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ap_fail("%s: cannot create the checkpoint directory: %s", dir, strerror(errno));
    snprintf(final, sizeof final, "%s/checkpoint_%" PRId64, dir, meta->step);
    ap_atomic a;
    AP_TRY(ap_atomic_begin(&a, final, 1));
    char shown[8400];
    snprintf(shown, sizeof shown, "%s/state.h5 (being written as %s)", final, a.tmp);
    snprintf(file, sizeof file, "%s/state.h5", a.tmp);
    int rc = write_state(file, shown, lora, m, v, meta);
    snprintf(file, sizeof file, "%s/pytorch_lora_weights.safetensors", a.tmp);
    if (!rc) rc = write_export(file, lora);
    /* the same LoRA in current diffusers' peft names (docs/lora.md §7) */
    snprintf(file, sizeof file, "%s/peft", a.tmp);
    if (!rc && mkdir(file, 0777) != 0) rc = ap_fail("%s: cannot create: %s", file, strerror(errno));
    snprintf(file, sizeof file, "%s/peft/pytorch_lora_weights.safetensors", a.tmp);
    if (!rc) rc = ap_lora_write(lora, AP_LORA_PEFT, file);
    if (!rc) ap_killpoint("checkpoint");
    if (rc) {
        ap_atomic_abort(&a);
        return AP_ERR;
    }
    AP_TRY(ap_atomic_commit(&a));
    if (path_out && snprintf(path_out, cap, "%s", final) >= (int)cap)
        return ap_fail("%s: longer than the %zu bytes given for it", final, cap);
    if (limit > 0 && prune(dir, limit, meta->step))
        fprintf(stderr, "warning: %s written, but pruning to %d checkpoints failed: %s\n", final,
                limit, ap_errmsg());
    return AP_OK;
}

/* ---- reading ----------------------------------------------------------- */

static const char *const k_attrs[] = {"step",   "epoch", "adam_step", "seed",   "next_sample",
                                      "config", "model", "base_hash", "version", NULL};

/* file: the state.h5 of path (a directory or the file itself). */
static void state_file(const char *path, char *file, size_t cap) {
    struct stat st;
    size_t n = strlen(path);
    int is_file = stat(path, &st) == 0 ? !S_ISDIR(st.st_mode) : n > 3 && !strcmp(path + n - 3, ".h5");
    if (is_file) snprintf(file, cap, "%s", path);
    else snprintf(file, cap, "%s/state.h5", path);
}

static hid_t open_state(const char *file) {
    struct stat st;
    if (stat(file, &st) != 0)
        return ap_fail("%s: cannot open the checkpoint state: %s", file, strerror(errno));
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return ap_fail("%s: not a readable HDF5 file (%lld bytes: truncated, or not HDF5)", file,
                       (long long)st.st_size);
    for (int i = 0; k_attrs[i]; i++) {
        if (H5Aexists(f, k_attrs[i]) <= 0) {
            H5Fclose(f);
            return ap_fail("%s: attribute /%s missing (not a complete checkpoint state)", file,
                           k_attrs[i]);
        }
    }
    return f;
}

static int attr_read(hid_t f, const char *file, const char *name, hid_t mtype, void *val) {
    hid_t at = H5Aopen(f, name, H5P_DEFAULT);
    int rc = at < 0 || H5Aread(at, mtype, val) < 0;
    if (at >= 0) H5Aclose(at);
    return rc ? ap_fail("%s: cannot read attribute /%s", file, name) : AP_OK;
}

static int attr_read_str(hid_t f, const char *file, const char *name, const char **out) {
    *out = NULL;
    hid_t at = H5Aopen(f, name, H5P_DEFAULT);
    hid_t ft = at < 0 ? -1 : H5Aget_type(at);
    int rc = AP_ERR;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        ap_fail("%s: attribute /%s: expected a string", file, name);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no character sets */
        char *s = NULL;
        if (H5Aread(at, mt, &s) >= 0 && s) {
            *out = strdup(s);
            H5free_memory(s);
            rc = *out ? AP_OK : ap_fail("out of memory reading %s /%s", file, name);
        } else {
            ap_fail("%s: cannot read attribute /%s", file, name);
        }
        H5Tclose(mt);
    } else { /* fixed-length (another writer) */
        size_t n = H5Tget_size(ft);
        char *s = ap_calloc(n + 1, 1, "checkpoint string attribute");
        if (s && H5Aread(at, ft, s) >= 0) *out = s, rc = AP_OK;
        else if (s) free(s), ap_fail("%s: cannot read attribute /%s", file, name);
    }
    if (ft >= 0) H5Tclose(ft);
    if (at >= 0) H5Aclose(at);
    return rc;
}

static const char *dims_str(int ndim, const hsize_t *dims, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %llu" : "%llu", (unsigned long long)dims[d]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

/* Read dataset name (a path in f) of exactly ndim/shape float32 into dst. */
static int read_f32(hid_t f, const char *file, const char *name, int ndim, const int64_t *shape,
                    float *dst, const char *what) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return ap_fail("%s: %s %s missing", file, what, name);
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    int rc = AP_ERR;
    hsize_t dims[AP_MAX_DIMS + 1], want[AP_MAX_DIMS];
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    for (int d = 0; d < ndim; d++) want[d] = (hsize_t)shape[d];
    char a[160], b[160];
    if (nd < 0 || nd > AP_MAX_DIMS || ty < 0) {
        ap_fail("%s: %s %s: unreadable dataspace or type", file, what, name);
        goto out;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int same = nd == ndim;
    for (int d = 0; same && d < nd; d++) same = dims[d] == want[d];
    if (!same) {
        if (ndim == 1 && nd == 1)
            ap_fail("%s: %s %s: wrong element count: expected %llu, found %llu", file, what,
                    name, (unsigned long long)want[0], (unsigned long long)dims[0]);
        else
            ap_fail("%s: %s %s: expected shape %s, found %s", file, what, name,
                    dims_str(ndim, want, a, sizeof a), dims_str(nd, dims, b, sizeof b));
        goto out;
    }
    if (H5Tget_class(ty) != H5T_FLOAT) {
        ap_fail("%s: %s %s: expected float32 data, found another type class", file, what, name);
        goto out;
    }
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        ap_fail("%s: %s %s: read failed (truncated or corrupt file)", file, what, name);
        goto out;
    }
    rc = AP_OK;
out:
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* The content hash of what was read against attribute name. */
static int verify(hid_t f, const char *file, const char *name, const float *a, const float *b,
                  size_t n, const char *what) {
    if (H5Aexists(f, name) <= 0) {
        fprintf(stderr, "warning: %s: no /%s attribute (written before checkpoints carried "
                "content hashes): %s not verified\n", file, name, what);
        return AP_OK;
    }
    const char *want = NULL;
    AP_TRY(attr_read_str(f, file, name, &want));
    char got[17];
    content_hash(a, b, n, got);
    int rc = strcmp(want, got) ? ap_fail("%s: %s: content hash %s, the checkpoint records %s "
                                         "(/%s): the data changed after it was written (damaged "
                                         "or edited)", file, what, got, want, name)
                               : AP_OK;
    free((char *)want);
    return rc;
}

typedef struct {
    const ap_params *lora;
    char extra[512];
    int n_extra;
} extra_ctx;

static herr_t on_lora_link(hid_t g, const char *name, const H5L_info_t *info, void *user) {
    extra_ctx *c = user;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) >= 0 && oi.type != H5O_TYPE_DATASET)
        return 0; /* a group: names with '/' (checked by lookup) */
    if (!ap_params_find(c->lora, name)) {
        size_t k = strlen(c->extra);
        if (c->n_extra < 4)
            snprintf(c->extra + k, sizeof c->extra - k, "%s%s", c->n_extra ? ", " : "", name);
        c->n_extra++;
    }
    return 0;
}

int ap_ckpt_read(const char *path, ap_params *lora, float *m, float *v, ap_ckpt_meta *meta) {
    h5_quiet();
    char file[4200];
    state_file(path, file, sizeof file);
    if (meta) memset(meta, 0, sizeof *meta);
    if (!lora || (lora->total && !lora->flat))
        return ap_fail("%s: read into a LoRA list that is not allocated (ap_params_alloc)", file);
    hid_t f = open_state(file);
    if (f < 0) return AP_ERR;
    int rc = AP_ERR;
    char name[4200];
    for (int i = 0; i < lora->count; i++) {
        const ap_param *p = &lora->items[i];
        snprintf(name, sizeof name, "/lora/%s", p->name);
        if (read_f32(f, file, name, p->t.ndim, p->t.shape, lora->flat + p->offset, "tensor"))
            goto out;
    }
    int64_t n = (int64_t)lora->total;
    if (m && read_f32(f, file, "/adam/m", 1, &n, m, "Adam moment")) goto out;
    if (v && read_f32(f, file, "/adam/v", 1, &n, v, "Adam moment")) goto out;
    extra_ctx ec = {.lora = lora};
    hid_t g = H5Gopen2(f, "lora", H5P_DEFAULT);
    if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, on_lora_link, &ec) < 0) {
        if (g >= 0) H5Gclose(g);
        ap_fail("%s: cannot list group /lora", file);
        goto out;
    }
    H5Gclose(g);
    if (ec.n_extra) {
        ap_fail("%s: %d tensors under /lora that the model does not have (%s%s): a LoRA of "
                "another model or rank",
                file, ec.n_extra, ec.extra, ec.n_extra > 4 ? ", ..." : "");
        goto out;
    }
    if (verify(f, file, "lora_hash", lora->flat, NULL, lora->total, "/lora")) goto out;
    if (m && v && verify(f, file, "adam_hash", m, v, lora->total, "/adam/m and /adam/v")) goto out;
    int64_t version = 0;
    if (attr_read(f, file, "version", H5T_NATIVE_INT64, &version)) goto out;
    if (version != CKPT_VERSION) {
        ap_fail("%s: checkpoint format version %lld, this program reads version %d", file,
                (long long)version, CKPT_VERSION);
        goto out;
    }
    if (meta) {
        const char *s1, *s2, *s3;
        if (attr_read(f, file, "step", H5T_NATIVE_INT64, &meta->step) ||
            attr_read(f, file, "epoch", H5T_NATIVE_INT64, &meta->epoch) ||
            attr_read(f, file, "adam_step", H5T_NATIVE_INT64, &meta->adam_step) ||
            attr_read(f, file, "seed", H5T_NATIVE_UINT64, &meta->seed) ||
            attr_read(f, file, "next_sample", H5T_NATIVE_INT64, &meta->next_sample))
            goto out;
        if (attr_read_str(f, file, "config", &s1)) goto out;
        meta->config = s1;
        if (attr_read_str(f, file, "model", &s2)) goto out;
        meta->model = s2;
        if (attr_read_str(f, file, "base_hash", &s3)) goto out;
        meta->base_hash = s3;
    }
    rc = AP_OK;
out:
    H5Fclose(f);
    if (rc && meta) ap_ckpt_meta_free(meta);
    return rc;
}

void ap_ckpt_meta_free(ap_ckpt_meta *meta) {
    if (!meta) return;
    free((char *)meta->config);
    free((char *)meta->model);
    free((char *)meta->base_hash);
    meta->config = meta->model = meta->base_hash = NULL;
}

int ap_ckpt_latest(const char *run_dir, char *path, size_t cap) {
    h5_quiet();
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/checkpoints", run_dir) >= (int)sizeof dir)
        return ap_fail("%s: run directory name too long", run_dir);
    int64_t *steps;
    int n;
    AP_TRY(list_steps(dir, &steps, &n));
    int found = 0;
    for (int i = n - 1; i >= 0 && !found; i--) {
        char d[4200], file[4300];
        snprintf(d, sizeof d, "%s/checkpoint_%" PRId64, dir, steps[i]);
        snprintf(file, sizeof file, "%s/state.h5", d);
        hid_t f = open_state(file);
        if (f < 0) {
            fprintf(stderr, "warning: skipping %s (not a complete checkpoint): %s\n", d,
                    ap_errmsg());
            continue;
        }
        H5Fclose(f);
        if (snprintf(path, cap, "%s", d) >= (int)cap) {
            free(steps);
            return ap_fail("%s: longer than the %zu bytes given for it", d, cap);
        }
        found = 1;
    }
    free(steps);
    return found;
}

int ap_ckpt_steps(const char *run_dir, int64_t **steps, int *n) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/checkpoints", run_dir) >= (int)sizeof dir)
        return ap_fail("%s: run directory name too long", run_dir);
    return list_steps(dir, steps, n);
}

int ap_ckpt_set_aside(const char *path, char *out, size_t cap) {
    for (int k = 1; k < 100; k++) {
        int len = k == 1 ? snprintf(out, cap, "%s.corrupt", path)
                         : snprintf(out, cap, "%s.corrupt-%d", path, k);
        if (len < 0 || (size_t)len >= cap) return ap_fail("%s: path too long", path);
        struct stat st;
        if (stat(out, &st) == 0) continue;
        if (rename(path, out) != 0)
            return ap_fail("%s: cannot move it aside to %s: %s", path, out, strerror(errno));
        return AP_OK;
    }
    return ap_fail("%s: 99 corrupt copies beside it already", path);
}
