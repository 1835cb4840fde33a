/* h5log.c: the run's HDF5 log (h5log.h), SWMR-readable while it grows.
 *
 * File: latest format (H5F_LIBVER_LATEST bounds, required by SWMR). Every
 * column is a chunked dataset with an unlimited first dimension: 1-D for
 * scalars, (rows, N) / (rows, E) for per-sample values; prompts are
 * fixed-length 255-byte null-padded strings (variable-length data cannot be
 * appended under SWMR). One row = for each column: H5Dset_extent(rows + 1),
 * write the new row's hyperslab, H5Dflush, so a reader always sees whole
 * rows of each column (columns may differ by one row for a moment).
 *
 * Resume: the existing file is opened read-write, every column is cut to the
 * shortest column's length (a killed writer may have extended only some) and
 * to the rows with step <= resume_step, then SWMR writing starts. A file
 * left flagged "open for writing" by a killed writer is repaired first as
 * `h5clear -s --increment=0` would (status flags cleared, stored end of
 * allocation moved to the end of file), since resuming means its writer is
 * dead.
 *
 * Readers while the run goes on must open with SWMR read (h5py:
 * File(path, "r", swmr=True)); HDF5 1.10's h5dump opens without it and is
 * refused ("file is already open for write") until the log is closed.
 */
#include "h5log.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"

enum { STR_LEN = 255, MAX_COLS = 13 };
typedef enum { C_I64, C_F64, C_F32, C_I32, C_STR } ctype;

typedef struct {
    const char *name;
    ctype type;
    int wide; /* 0: one value per row; 1: N (train) or E (eval) values */
} coldef;

/* Order matters: ap_h5log_train/eval fill the values in this order. */
static const coldef k_train[MAX_COLS] = {
    {"step", C_I64, 0},       {"epoch", C_I64, 0},         {"loss", C_F64, 0},
    {"reward_mean", C_F64, 0}, {"reward_std", C_F64, 0},   {"grad_norm", C_F64, 0},
    {"lr", C_F64, 0},         {"step_time", C_F64, 0},     {"samples_per_s", C_F64, 0},
    {"attached_mean", C_F64, 0}, {"rewards", C_F32, 1},    {"prompts", C_STR, 1},
    {"attached", C_I32, 1}};
static const coldef k_eval[6] = {{"step", C_I64, 0},        {"epoch", C_I64, 0},
                                 {"reward_mean", C_F64, 0}, {"reward_std", C_F64, 0},
                                 {"rewards", C_F32, 1},     {"prompts", C_STR, 1}};

typedef struct {
    const coldef *def;
    int n;         /* columns */
    int width;     /* N or E */
    hid_t ds[MAX_COLS];
    hsize_t rows;
    const char *group;
} table;

struct ap_h5log {
    char path[4096];
    hid_t f, str_t;
    table train, eval;
    char *strbuf; /* max(N, E) * STR_LEN */
};

static hid_t file_type(const ap_h5log *l, ctype t) {
    switch (t) {
    case C_I64: return H5T_STD_I64LE;
    case C_F64: return H5T_IEEE_F64LE;
    case C_F32: return H5T_IEEE_F32LE;
    case C_I32: return H5T_STD_I32LE;
    default: return l->str_t;
    }
}

static hid_t mem_type(const ap_h5log *l, ctype t) {
    switch (t) {
    case C_I64: return H5T_NATIVE_INT64;
    case C_F64: return H5T_NATIVE_DOUBLE;
    case C_F32: return H5T_NATIVE_FLOAT;
    case C_I32: return H5T_NATIVE_INT32;
    default: return l->str_t;
    }
}

static size_t elem_size(ctype t) {
    return t == C_I64 || t == C_F64 ? 8 : t == C_STR ? STR_LEN : 4;
}

static int create_table(ap_h5log *l, table *t) {
    hid_t g = H5Gcreate2(l->f, t->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return ap_fail("%s: cannot create group /%s", l->path, t->group);
    int rc = AP_OK;
    for (int c = 0; c < t->n && rc == AP_OK; c++) {
        const coldef *d = &t->def[c];
        if (d->wide && t->width == 0) continue; /* E = 0: no evaluation images */
        int nd = d->wide ? 2 : 1;
        hsize_t dims[2] = {0, (hsize_t)t->width}, maxd[2] = {H5S_UNLIMITED, (hsize_t)t->width};
        size_t row_bytes = elem_size(d->type) * (d->wide ? (size_t)t->width : 1);
        hsize_t chunk[2] = {65536 / row_bytes ? 65536 / row_bytes : 1, (hsize_t)t->width};
        hid_t sp = H5Screate_simple(nd, dims, maxd);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        if (sp < 0 || pl < 0 || H5Pset_chunk(pl, nd, chunk) < 0 ||
            (t->ds[c] = H5Dcreate2(g, d->name, file_type(l, d->type), sp, H5P_DEFAULT, pl,
                                   H5P_DEFAULT)) < 0)
            rc = ap_fail("%s: cannot create dataset /%s/%s", l->path, t->group, d->name);
        if (pl >= 0) H5Pclose(pl);
        if (sp >= 0) H5Sclose(sp);
    }
    H5Gclose(g);
    return rc;
}

/* Open an existing table, check its widths, cut it to the shortest column
 * and to step <= resume_step (train) or step < resume_step (eval). */
static int reopen_table(ap_h5log *l, table *t, int64_t resume_step) {
    hsize_t rows = (hsize_t)-1;
    for (int c = 0; c < t->n; c++) {
        const coldef *d = &t->def[c];
        if (d->wide && t->width == 0) continue;
        char name[64];
        snprintf(name, sizeof name, "/%s/%s", t->group, d->name);
        if ((t->ds[c] = H5Dopen2(l->f, name, H5P_DEFAULT)) < 0)
            return ap_fail("%s: dataset %s missing (not a log of this program?)", l->path, name);
        hid_t sp = H5Dget_space(t->ds[c]);
        hsize_t dims[2] = {0, 0};
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
        if (sp >= 0) H5Sclose(sp);
        if (nd != (d->wide ? 2 : 1))
            return ap_fail("%s: dataset %s: expected %d dimensions, found %d", l->path, name,
                           d->wide ? 2 : 1, nd);
        if (d->wide && dims[1] != (hsize_t)t->width)
            return ap_fail("%s: dataset %s: the log has %llu values per row, this run %d "
                           "(a different %s)",
                           l->path, name, (unsigned long long)dims[1], t->width,
                           t->def == k_train ? "global batch N" : "evaluation image count E");
        if (dims[0] < rows) rows = dims[0];
    }
    if (rows == (hsize_t)-1) rows = 0;
    hsize_t keep = 0;
    if (rows > 0) {
        int64_t *steps = ap_malloc(rows * sizeof *steps, "log resume: step column");
        if (!steps) return AP_ERR;
        hid_t fs = H5Dget_space(t->ds[0]);
        hsize_t start = 0, count = rows;
        hid_t ms = H5Screate_simple(1, &count, NULL);
        int bad = fs < 0 || ms < 0 ||
                  H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
                  H5Dread(t->ds[0], H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, steps) < 0;
        if (ms >= 0) H5Sclose(ms);
        if (fs >= 0) H5Sclose(fs);
        /* train rows up to the resume step; eval rows before it (the resumed
         * run evaluates at resume_step again) */
        const int strict = t->def != k_train;
        while (!bad && keep < rows && (strict ? steps[keep] < resume_step : steps[keep] <= resume_step))
            keep++;
        free(steps);
        if (bad) return ap_fail("%s: cannot read /%s/step", l->path, t->group);
    }
    for (int c = 0; c < t->n; c++) {
        if (t->def[c].wide && t->width == 0) continue;
        hsize_t dims[2] = {keep, (hsize_t)t->width};
        if (H5Dset_extent(t->ds[c], dims) < 0)
            return ap_fail("%s: cannot cut /%s/%s to %llu rows", l->path, t->group,
                           t->def[c].name, (unsigned long long)keep);
    }
    t->rows = keep;
    return AP_OK;
}

static void close_table(table *t) {
    for (int c = 0; c < t->n; c++)
        if (t->ds[c] > 0) H5Dclose(t->ds[c]);
    memset(t->ds, 0, sizeof t->ds);
}

void ap_h5log_close(ap_h5log *l) {
    if (!l) return;
    close_table(&l->train);
    close_table(&l->eval);
    if (l->str_t > 0) H5Tclose(l->str_t);
    if (l->f > 0) H5Fclose(l->f);
    free(l->strbuf);
    free(l);
}

static hid_t open_existing(const char *path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, fapl);
    if (f < 0) {
        /* Flagged open-for-write by a writer that died: repair as
         * `h5clear -s --increment=0` does (the property is HDF5's own,
         * registered on every file access list): clear the flags, and move
         * the end-of-allocation stored in the superblock, which a SWMR
         * writer does not keep current, to the end of the file so the
         * flushed rows stay readable. Then open again normally. */
        hid_t rp = H5Pcopy(fapl);
        hbool_t clear = 1;
        if (rp >= 0 && H5Pexist(rp, "clear_status_flags") > 0 &&
            H5Pset(rp, "clear_status_flags", &clear) >= 0) {
            hid_t r = H5Fopen(path, H5F_ACC_RDWR, rp);
            if (r >= 0) {
                int ok = H5Fincrement_filesize(r, 0) >= 0;
                if (H5Fclose(r) >= 0 && ok) {
                    fprintf(stderr, "note: %s was left open for writing by a run that died; "
                                    "status flags cleared, end of file restored\n", path);
                    f = H5Fopen(path, H5F_ACC_RDWR, fapl);
                }
            }
        }
        if (rp >= 0) H5Pclose(rp);
    }
    H5Pclose(fapl);
    return f;
}

int ap_h5log_open(ap_h5log **out, const char *path, int N, int E, int64_t resume_step) {
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (N < 1 || E < 0)
        return ap_fail("%s: log widths: expected N >= 1 and E >= 0, found N %d, E %d", path, N, E);
    ap_h5log *l = ap_calloc(1, sizeof *l, "HDF5 log");
    if (!l) return AP_ERR;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->train = (table){.def = k_train, .n = MAX_COLS, .width = N, .group = "train"};
    l->eval = (table){.def = k_eval, .n = 6, .width = E, .group = "eval"};
    l->strbuf = ap_malloc((size_t)(N > E ? N : E) * STR_LEN, "log prompt row");
    l->str_t = H5Tcopy(H5T_C_S1);
    if (!l->strbuf || l->str_t < 0 || H5Tset_size(l->str_t, STR_LEN) < 0 ||
        H5Tset_strpad(l->str_t, H5T_STR_NULLPAD) < 0 || H5Tset_cset(l->str_t, H5T_CSET_UTF8) < 0) {
        ap_h5log_close(l);
        return ap_fail("%s: cannot make the 255-byte string type", path);
    }
    struct stat st;
    int rc = AP_OK;
    if (resume_step >= 0 && stat(path, &st) == 0) {
        l->f = open_existing(path);
        if (l->f < 0) rc = ap_fail("%s: cannot open the log to resume it (not HDF5, or "
                                   "truncated)", path);
        else rc = reopen_table(l, &l->train, resume_step) || reopen_table(l, &l->eval, resume_step)
                      ? AP_ERR : AP_OK;
    } else {
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
        l->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        H5Pclose(fapl);
        if (l->f < 0) rc = ap_fail("%s: cannot create the HDF5 log", path);
        else rc = create_table(l, &l->train) || create_table(l, &l->eval) ? AP_ERR : AP_OK;
    }
    if (rc == AP_OK && H5Fstart_swmr_write(l->f) < 0)
        rc = ap_fail("%s: cannot start SWMR writing", path);
    if (rc) {
        ap_h5log_close(l);
        return AP_ERR;
    }
    *out = l;
    return AP_OK;
}

/* Append one row of column c: n values at data. */
static int append(ap_h5log *l, table *t, int c, const void *data) {
    const coldef *d = &t->def[c];
    hid_t ds = t->ds[c];
    hsize_t w = d->wide ? (hsize_t)t->width : 1;
    hsize_t dims[2] = {t->rows + 1, w}, start[2] = {t->rows, 0}, count[2] = {1, w};
    if (H5Dset_extent(ds, dims) < 0)
        return ap_fail("%s: cannot extend /%s/%s to %llu rows", l->path, t->group, d->name,
                       (unsigned long long)dims[0]);
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &w, NULL);
    int bad = fs < 0 || ms < 0 ||
              H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
              H5Dwrite(ds, mem_type(l, d->type), ms, fs, H5P_DEFAULT, data) < 0 ||
              H5Dflush(ds) < 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return bad ? ap_fail("%s: cannot write row %llu of /%s/%s", l->path,
                         (unsigned long long)t->rows, t->group, d->name)
               : AP_OK;
}

/* Prompts into STR_LEN-byte null-padded slots, cut at a UTF-8 boundary. */
static const char *pack_prompts(ap_h5log *l, const char *const *p, int n) {
    memset(l->strbuf, 0, (size_t)n * STR_LEN);
    for (int i = 0; i < n; i++) {
        const char *s = p && p[i] ? p[i] : "";
        size_t k = strlen(s);
        if (k > STR_LEN) {
            k = STR_LEN;
            while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--; /* s[k] continues a char */
        }
        memcpy(l->strbuf + (size_t)i * STR_LEN, s, k);
    }
    return l->strbuf;
}

static int append_row(ap_h5log *l, table *t, const void *const *vals) {
    for (int c = 0; c < t->n; c++) {
        if (t->def[c].wide && t->width == 0) continue;
        if (!vals[c])
            return ap_fail("%s: /%s/%s: no values given for this row", l->path, t->group,
                           t->def[c].name);
        AP_TRY(append(l, t, c, vals[c]));
    }
    t->rows++;
    return AP_OK;
}

int ap_h5log_train(ap_h5log *l, const ap_train_row *r) {
    const void *vals[MAX_COLS] = {
        &r->step,       &r->epoch,         &r->loss,         &r->reward_mean, &r->reward_std,
        &r->grad_norm,  &r->lr,            &r->step_time,    &r->samples_per_s,
        &r->attached_mean, r->rewards,
        r->prompts ? pack_prompts(l, r->prompts, l->train.width) : NULL, r->attached};
    return append_row(l, &l->train, vals);
}

int ap_h5log_eval(ap_h5log *l, const ap_eval_row *r) {
    const void *vals[6] = {&r->step, &r->epoch, &r->reward_mean, &r->reward_std, r->rewards,
                           r->prompts ? pack_prompts(l, r->prompts, l->eval.width) : NULL};
    return append_row(l, &l->eval, vals);
}
