/* checkpoint.c: training checkpoints as atomically published directories
 * holding state.h5 (HDF5) and the LoRA as safetensors (checkpoint.h). */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/killpoint.h"
#include "core/path.h"
#include "io/atomic.h"
#include "io/st_write.h"

#define CKPT_VERSION "alignprop-mpi checkpoint 1"

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int attr_i64(hid_t loc, const char *name, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? ap_fail("HDF5: writing attribute %s", name) : AP_OK;
}

static int attr_u64(hid_t loc, const char *name, uint64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_UINT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? ap_fail("HDF5: writing attribute %s", name) : AP_OK;
}

static int attr_str(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? ap_fail("HDF5: writing attribute %s", name) : AP_OK;
}

static int write_f32(hid_t loc, const char *name, const float *x, int ndim, const int64_t *shape) {
    hsize_t dims[AP_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return rc < 0 ? ap_fail("HDF5: writing dataset %s", name) : AP_OK;
}

static int write_state(const char *path, const ap_params *lora, const float *m, const float *v,
                       const ap_ckpt_meta *meta) {
    quiet_hdf5();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return ap_fail("%s: cannot create the HDF5 file", path);
    int rc = AP_OK;
    hid_t g = H5Gcreate2(f, "lora", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) rc = ap_fail("HDF5: creating /lora");
    for (int i = 0; i < lora->count && !rc; i++) {
        const ap_param *p = &lora->items[i];
        rc = write_f32(g, p->name, lora->flat + p->offset, p->t.ndim, p->t.shape);
    }
    if (g >= 0) H5Gclose(g);
    int64_t n = (int64_t)lora->total;
    if (!rc) {
        g = H5Gcreate2(f, "adam", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = g < 0 ? ap_fail("HDF5: creating /adam") : AP_OK;
        if (!rc) rc = write_f32(g, "m", m, 1, &n);
        if (!rc) rc = write_f32(g, "v", v, 1, &n);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc) rc = attr_str(f, "version", CKPT_VERSION);
    if (!rc) rc = attr_i64(f, "step", meta->step);
    if (!rc) rc = attr_i64(f, "epoch", meta->epoch);
    if (!rc) rc = attr_i64(f, "adam_step", meta->adam_step);
    if (!rc) rc = attr_u64(f, "seed", meta->seed);
    if (!rc) rc = attr_i64(f, "next_sample", meta->next_sample);
    if (!rc) rc = attr_str(f, "config", meta->config ? meta->config : "");
    if (!rc) rc = attr_str(f, "model", meta->model ? meta->model : "");
    if (!rc) rc = attr_str(f, "base_hash", meta->base_hash ? meta->base_hash : "");
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 && !rc) rc = ap_fail("%s: HDF5 flush failed", path);
    if (H5Fclose(f) < 0 && !rc) rc = ap_fail("%s: HDF5 close failed", path);
    if (rc) ap_err_prefix("%s: ", path);
    return rc;
}

static int write_lora_st(const char *path, const ap_params *lora) {
    ap_st_entry *e = ap_malloc(sizeof *e * (size_t)lora->count, "safetensors entries");
    ap_tensor *t = ap_malloc(sizeof *t * (size_t)lora->count, "safetensors tensors");
    int rc = (!e || !t) ? AP_ERR : AP_OK;
    for (int i = 0; i < lora->count && !rc; i++) {
        t[i] = lora->items[i].t;
        t[i].data = lora->flat + lora->items[i].offset;
        e[i].name = lora->items[i].name;
        e[i].t = &t[i];
    }
    const char *meta[] = {"format", "pt", "written_by", "alignprop-mpi", NULL};
    if (!rc) rc = ap_st_write(path, e, lora->count, meta);
    free(e), free(t);
    return rc;
}

/* Step of a "checkpoint_<N>" name, or -1. */
static long long ckpt_step(const char *name) {
    if (strncmp(name, "checkpoint_", 11) != 0) return -1;
    const char *s = name + 11;
    if (!*s) return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return atoll(s);
}

static int list_steps(const char *dir, long long **out, int *n) {
    *out = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? AP_OK : ap_fail("%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        long long s = ckpt_step(e->d_name);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            long long *nv = realloc(*out, sizeof **out * (size_t)cap);
            if (!nv) {
                closedir(d);
                return ap_fail("out of memory listing %s", dir);
            }
            *out = nv;
        }
        (*out)[(*n)++] = s;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort, ascending */
        for (int j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
            long long t = (*out)[j];
            (*out)[j] = (*out)[j - 1], (*out)[j - 1] = t;
        }
    return AP_OK;
}

static int remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) return unlink(path) == 0 || errno == ENOENT ? AP_OK : AP_ERR;
    struct dirent *e;
    char p[8192];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (ap_is_dir(p)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    return rmdir(path) == 0 ? AP_OK : AP_ERR;
}

int ap_ckpt_write(const char *run_dir, const ap_params *lora, const float *m, const float *v,
                  const ap_ckpt_meta *meta, int limit, char *path_out, size_t cap) {
    char dir[4200], final[4300], file[8400];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ap_fail("%s: cannot create directory: %s", dir, strerror(errno));
    snprintf(final, sizeof final, "%s/checkpoint_%lld", dir, (long long)meta->step);
    ap_atomic a;
    AP_TRY(ap_atomic_begin(&a, final, 1));
    snprintf(file, sizeof file, "%s/state.h5", a.tmp);
    int rc = write_state(file, lora, m, v, meta);
    snprintf(file, sizeof file, "%s/pytorch_lora_weights.safetensors", a.tmp);
    if (!rc) rc = write_lora_st(file, lora);
    if (!rc) ap_killpoint("checkpoint");
    if (rc) {
        ap_atomic_abort(&a);
        return rc;
    }
    AP_TRY(ap_atomic_commit(&a));
    if (path_out) snprintf(path_out, cap, "%s", final);
    /* keep the newest `limit` checkpoints */
    long long *steps;
    int n;
    if (limit > 0 && list_steps(dir, &steps, &n) == AP_OK) {
        for (int i = 0; i < n - limit; i++) {
            if (steps[i] == meta->step) continue;
            char old[4400];
            snprintf(old, sizeof old, "%s/checkpoint_%lld", dir, steps[i]);
            if (remove_tree(old))
                fprintf(stderr, "warning: could not remove old checkpoint %s\n", old);
        }
        free(steps);
    }
    return AP_OK;
}

/* ---- reading --------------------------------------------------------------- */

static int read_attr_i64(hid_t f, const char *file, const char *name, int64_t *v) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return ap_fail("%s: attribute %s missing: not a complete checkpoint", file, name);
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return rc < 0 ? ap_fail("%s: attribute %s unreadable", file, name) : AP_OK;
}

static int read_attr_u64(hid_t f, const char *file, const char *name, uint64_t *v) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return ap_fail("%s: attribute %s missing: not a complete checkpoint", file, name);
    herr_t rc = H5Aread(a, H5T_NATIVE_UINT64, v);
    H5Aclose(a);
    return rc < 0 ? ap_fail("%s: attribute %s unreadable", file, name) : AP_OK;
}

static int read_attr_str(hid_t f, const char *file, const char *name, const char **out) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return ap_fail("%s: attribute %s missing: not a complete checkpoint", file, name);
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *s = H5Tis_variable_str(t) > 0 ? NULL : calloc(n + 1, 1);
    herr_t rc = s ? H5Aread(a, t, s) : -1; /* fixed-length, as written */
    H5Tclose(t), H5Aclose(a);
    if (rc < 0) {
        free(s);
        return ap_fail("%s: attribute %s unreadable", file, name);
    }
    *out = s;
    return AP_OK;
}

static int read_f32(hid_t loc, const char *file, const char *name, float *x, int ndim,
                    const int64_t *shape) {
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return ap_fail("%s: tensor %s missing (a checkpoint of another model or LoRA rank?)", file, name);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[AP_MAX_DIMS] = {0};
    int rc = AP_OK;
    if (nd != ndim || nd > AP_MAX_DIMS) rc = ap_fail("%s: %s: expected %d dims, found %d", file, name, ndim, nd);
    else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int i = 0; i < nd && !rc; i++)
            if ((int64_t)dims[i] != shape[i])
                rc = ap_fail("%s: %s: expected dim %d = %lld, found %llu (a LoRA of another rank "
                             "or model)", file, name, i, (long long)shape[i], (unsigned long long)dims[i]);
    }
    if (!rc && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        rc = ap_fail("%s: %s: unreadable (truncated or corrupt file)", file, name);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

int ap_ckpt_read(const char *path, ap_params *lora, float *m, float *v, ap_ckpt_meta *meta) {
    char file[4300];
    memset(meta, 0, sizeof *meta);
    if (ap_is_dir(path)) snprintf(file, sizeof file, "%s/state.h5", path);
    else snprintf(file, sizeof file, "%s", path);
    if (!ap_is_file(file)) return ap_fail("%s: no such checkpoint file (expected a checkpoint_<step> "
                                          "directory holding state.h5)", file);
    quiet_hdf5();
    if (H5Fis_hdf5(file) <= 0) return ap_fail("%s: not an HDF5 file (truncated or corrupt checkpoint)", file);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ap_fail("%s: cannot open the HDF5 file (truncated or corrupt checkpoint)", file);
    int rc = AP_OK;
    const char *ver = NULL;
    rc = read_attr_str(f, file, "version", &ver);
    if (!rc && strcmp(ver, CKPT_VERSION) != 0)
        rc = ap_fail("%s: version \"%s\": expected \"%s\"", file, ver, CKPT_VERSION);
    free((void *)ver);
    if (!rc) rc = read_attr_i64(f, file, "step", &meta->step);
    if (!rc) rc = read_attr_i64(f, file, "epoch", &meta->epoch);
    if (!rc) rc = read_attr_i64(f, file, "adam_step", &meta->adam_step);
    if (!rc) rc = read_attr_u64(f, file, "seed", &meta->seed);
    if (!rc) rc = read_attr_i64(f, file, "next_sample", &meta->next_sample);
    if (!rc) rc = read_attr_str(f, file, "config", &meta->config);
    if (!rc) rc = read_attr_str(f, file, "model", &meta->model);
    if (!rc) rc = read_attr_str(f, file, "base_hash", &meta->base_hash);
    hid_t g = -1;
    if (!rc) {
        g = H5Gopen2(f, "lora", H5P_DEFAULT);
        if (g < 0) rc = ap_fail("%s: group /lora missing", file);
    }
    for (int i = 0; i < lora->count && !rc; i++) {
        const ap_param *p = &lora->items[i];
        rc = read_f32(g, file, p->name, lora->flat + p->offset, p->t.ndim, p->t.shape);
    }
    if (!rc) {
        hsize_t n = 0;
        H5G_info_t info;
        if (H5Gget_info(g, &info) >= 0) n = info.nlinks;
        if ((int)n != lora->count)
            rc = ap_fail("%s: /lora holds %llu tensors: expected %d (a LoRA of another model)", file,
                         (unsigned long long)n, lora->count);
    }
    if (g >= 0) H5Gclose(g);
    int64_t tot = (int64_t)lora->total;
    if (!rc && m) rc = read_f32(f, file, "adam/m", m, 1, &tot);
    if (!rc && v) rc = read_f32(f, file, "adam/v", v, 1, &tot);
    H5Fclose(f);
    if (rc) ap_ckpt_meta_free(meta);
    return rc;
}

void ap_ckpt_meta_free(ap_ckpt_meta *meta) {
    free((void *)meta->config), free((void *)meta->model), free((void *)meta->base_hash);
    meta->config = meta->model = meta->base_hash = NULL;
}

int ap_ckpt_latest(const char *run_dir, char *path, size_t cap) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    long long *steps;
    int n;
    AP_TRY(list_steps(dir, &steps, &n));
    int found = 0;
    for (int i = n - 1; i >= 0 && !found; i--) {
        char p[4400], st[4500], sf[4500];
        snprintf(p, sizeof p, "%s/checkpoint_%lld", dir, steps[i]);
        snprintf(st, sizeof st, "%s/state.h5", p);
        snprintf(sf, sizeof sf, "%s/pytorch_lora_weights.safetensors", p);
        quiet_hdf5();
        hid_t f = ap_is_file(st) && ap_is_file(sf) && H5Fis_hdf5(st) > 0 ? H5Fopen(st, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
        int ok = f >= 0 && H5Aexists(f, "step") > 0 && H5Aexists(f, "base_hash") > 0;
        if (f >= 0) H5Fclose(f);
        if (!ok) {
            fprintf(stderr, "warning: %s is not a complete checkpoint: skipped\n", p);
            continue;
        }
        snprintf(path, cap, "%s", p);
        found = 1;
    }
    free(steps);
    return found;
}
