/* run_log.c: reading log.h5 / eval.h5 while the run may still write them
 * (run_log.h). */
#include "report/run_log.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Open read-only: SWMR first (a file the run is writing), then plain, each
 * with HDF5's file lock and then without it (a writer holding the lock). */
static hid_t open_log(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const unsigned modes[2] = {H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5F_ACC_RDONLY};
    for (int lock = 1; lock >= 0; lock--)
        for (int m = 0; m < 2; m++) {
            hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
            if (!lock) H5Pset_file_locking(fapl, 0, 1);
#else
            if (!lock) {
                H5Pclose(fapl);
                return -1;
            }
#endif
            hid_t f = H5Fopen(path, modes[m], fapl);
            H5Pclose(fapl);
            if (f >= 0) return f;
        }
    return -1;
}

/* Rows of dataset name (its first dimension) and, for 2-D, its width. */
static int dims_of(hid_t f, const char *path, const char *name, int64_t *rows, int *width) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ap_fail("%s: dataset %s: missing", path, name);
    H5Drefresh(d);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Dclose(d);
    if (nd < 1 || nd > 2) return ap_fail("%s: dataset %s: expected 1 or 2 dimensions, found %d", path, name, nd);
    *rows = (int64_t)dims[0];
    if (width) *width = nd == 2 ? (int)dims[1] : 1;
    return AP_OK;
}

/* Read the first rows of dataset name (rows x width elements of mtype). */
static int read_rows(hid_t f, const char *path, const char *name, hid_t mtype, int64_t rows,
                     int width, void *out) {
    if (rows == 0) return AP_OK;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ap_fail("%s: dataset %s: missing", path, name);
    H5Drefresh(d);
    hid_t fs = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(fs);
    hsize_t start[2] = {0, 0}, count[2] = {(hsize_t)rows, (hsize_t)width};
    herr_t st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(nd, count, NULL);
    if (st >= 0) st = H5Dread(d, mtype, ms, fs, H5P_DEFAULT, out);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    if (st < 0) return ap_fail("%s: dataset %s: cannot read %lld rows", path, name, (long long)rows);
    return AP_OK;
}

/* Whole rows of group g: complete_rows when present, else the step column's
 * length (logs written before complete_rows existed). */
static int whole_rows(hid_t f, const char *path, const char *g, int64_t *rows) {
    char name[64];
    int64_t n = 0;
    snprintf(name, sizeof name, "/%s/step", g);
    AP_TRY(dims_of(f, path, name, &n, NULL));
    snprintf(name, sizeof name, "/%s/complete_rows", g);
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        int64_t c = 0;
        AP_TRY(read_rows(f, path, name, H5T_NATIVE_INT64, 1, 1, &c));
        if (c < n) n = c;
    }
    *rows = n < 0 ? 0 : n;
    return AP_OK;
}

static double *col(hid_t f, const char *path, const char *g, const char *c, int64_t n, int *rc) {
    char name[128];
    snprintf(name, sizeof name, "/%s/%s", g, c);
    double *v = ap_malloc((size_t)(n > 0 ? n : 1) * sizeof *v, name);
    if (!v || read_rows(f, path, name, H5T_NATIVE_DOUBLE, n, 1, v)) {
        free(v);
        *rc = AP_ERR;
        return NULL;
    }
    return v;
}

/* The 2-D string column name (rows x width) into out (rows, width, AP_LOG_STR). */
static int read_strings(hid_t f, const char *path, const char *name, int64_t rows, int width, char *out) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ap_fail("%s: dataset %s: missing", path, name);
    hid_t ft = H5Dget_type(d);
    size_t sz = H5Tget_size(ft);
    int vlen = H5Tis_variable_str(ft) > 0;
    H5Tclose(ft);
    H5Dclose(d);
    if (vlen || sz == 0 || sz >= AP_LOG_STR)
        return ap_fail("%s: dataset %s: expected fixed-length strings of at most %d bytes, found %s%zu", path,
                       name, AP_LOG_STR - 1, vlen ? "variable length " : "", sz);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, AP_LOG_STR);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    H5Tset_cset(mt, H5T_CSET_UTF8);
    int rc = read_rows(f, path, name, mt, rows, width, out);
    H5Tclose(mt);
    return rc;
}

int ap_log_read(const char *path, ap_log_train *t, ap_log_eval *e) {
    memset(t, 0, sizeof *t);
    memset(e, 0, sizeof *e);
    hid_t f = open_log(path);
    if (f < 0) return ap_fail("%s: cannot open as HDF5 (read-only, SWMR or plain)", path);
    int rc = AP_OK;
    if (H5Lexists(f, "/train", H5P_DEFAULT) > 0 && H5Lexists(f, "/train/step", H5P_DEFAULT) > 0) {
        int64_t n = 0;
        rc = whole_rows(f, path, "train", &n);
        if (!rc) rc = dims_of(f, path, "/train/rewards", &(int64_t){0}, &t->width);
        if (!rc) {
            t->n = n;
            t->step = col(f, path, "train", "step", n, &rc);
            t->loss = col(f, path, "train", "loss", n, &rc);
            t->reward_mean = col(f, path, "train", "reward_mean", n, &rc);
            t->reward_std = col(f, path, "train", "reward_std_global", n, &rc);
            t->grad_norm = col(f, path, "train", "grad_norm", n, &rc);
            t->lr = col(f, path, "train", "lr", n, &rc);
            t->step_time = col(f, path, "train", "step_time", n, &rc);
            t->samples_per_s = col(f, path, "train", "samples_per_s", n, &rc);
        }
    }
    if (!rc && H5Lexists(f, "/eval", H5P_DEFAULT) > 0 && H5Lexists(f, "/eval/step", H5P_DEFAULT) > 0) {
        int64_t n = 0;
        rc = whole_rows(f, path, "eval", &n);
        if (!rc) rc = dims_of(f, path, "/eval/rewards", &(int64_t){0}, &e->width);
        if (!rc) {
            e->n = n;
            e->step = col(f, path, "eval", "step", n, &rc);
            e->reward_mean = col(f, path, "eval", "reward_mean", n, &rc);
            e->reward_std = col(f, path, "eval", "reward_std", n, &rc);
            size_t cells = (size_t)(n > 0 ? n : 1) * (size_t)e->width;
            e->rewards = ap_malloc(cells * sizeof *e->rewards, "eval rewards");
            e->prompts = ap_calloc(cells, AP_LOG_STR, "eval prompts");
            if (!e->rewards || !e->prompts) rc = AP_ERR;
            if (!rc) rc = read_rows(f, path, "/eval/rewards", H5T_NATIVE_FLOAT, n, e->width, e->rewards);
            if (!rc) rc = read_strings(f, path, "/eval/prompts", n, e->width, e->prompts);
        }
    }
    H5Fclose(f);
    if (rc) {
        ap_log_train_free(t);
        ap_log_eval_free(e);
    }
    return rc;
}

void ap_log_train_free(ap_log_train *t) {
    free(t->step), free(t->loss), free(t->reward_mean), free(t->reward_std);
    free(t->grad_norm), free(t->lr), free(t->step_time), free(t->samples_per_s);
    memset(t, 0, sizeof *t);
}

void ap_log_eval_free(ap_log_eval *e) {
    free(e->step), free(e->reward_mean), free(e->reward_std), free(e->rewards), free(e->prompts);
    memset(e, 0, sizeof *e);
}

int ap_h5_text_attr(const char *path, const char *name, char **out) {
    *out = NULL;
    hid_t f = open_log(path);
    if (f < 0) return ap_fail("%s: cannot open as HDF5 to read its attribute %s", path, name);
    int rc = AP_OK;
    if (H5Aexists(f, name) > 0) {
        hid_t a = H5Aopen(f, name, H5P_DEFAULT);
        hid_t ft = a >= 0 ? H5Aget_type(a) : -1;
        if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
            rc = ap_fail("%s: attribute %s: expected a string", path, name);
        } else if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            char *s = NULL;
            if (H5Aread(a, mt, &s) < 0 || !s) {
                rc = ap_fail("%s: attribute %s: cannot read", path, name);
            } else {
                *out = strdup(s);
                H5free_memory(s);
                if (!*out) rc = ap_fail("out of memory reading %s attribute %s", path, name);
            }
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(ft);
            char *s = ap_calloc(sz + 1, 1, name);
            hid_t mt = H5Tcopy(ft);
            if (!s || H5Aread(a, mt, s) < 0) {
                free(s);
                rc = ap_fail("%s: attribute %s: cannot read", path, name);
            } else {
                *out = s;
            }
            H5Tclose(mt);
        }
        if (ft >= 0) H5Tclose(ft);
        if (a >= 0) H5Aclose(a);
    }
    H5Fclose(f);
    return rc;
}
