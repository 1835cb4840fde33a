/* h5log.c: the run's HDF5 log, appended row by row under SWMR (h5log.h). */
#include "train/h5log.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/path.h"
#include "io/atomic.h"

#define STR_LEN 256 /* fixed-length prompt strings: 255 bytes + NUL */

typedef enum { C_I64, C_F64, C_F32, C_I32, C_STR } ctype;

typedef struct col {
    const char *name;
    ctype type;
    int wide;   /* 1: (rows, width) per-sample column */
    hid_t d;
} col;

#define NTRAIN 13
#define NEVAL 6

struct ap_h5log {
    char path[4096];
    hid_t f, str;
    int N, E;
    hsize_t train_rows, eval_rows;
    col train[NTRAIN];
    col eval[NEVAL];
};

static const col TRAIN_COLS[NTRAIN] = {
    {"step", C_I64, 0, -1},        {"epoch", C_I64, 0, -1},      {"loss", C_F64, 0, -1},
    {"reward_mean", C_F64, 0, -1}, {"reward_std", C_F64, 0, -1}, {"grad_norm", C_F64, 0, -1},
    {"lr", C_F64, 0, -1},          {"step_time", C_F64, 0, -1},  {"samples_per_s", C_F64, 0, -1},
    {"attached_mean", C_F64, 0, -1}, {"rewards", C_F32, 1, -1},  {"prompts", C_STR, 1, -1},
    {"attached", C_I32, 1, -1},
};
static const col EVAL_COLS[NEVAL] = {
    {"step", C_I64, 0, -1},        {"epoch", C_I64, 0, -1},      {"reward_mean", C_F64, 0, -1},
    {"reward_std", C_F64, 0, -1},  {"rewards", C_F32, 1, -1},    {"prompts", C_STR, 1, -1},
};

static hid_t file_type(const ap_h5log *l, ctype t) {
    return t == C_I64 ? H5T_STD_I64LE : t == C_F64 ? H5T_IEEE_F64LE : t == C_F32 ? H5T_IEEE_F32LE
         : t == C_I32 ? H5T_STD_I32LE : l->str;
}
static hid_t mem_type(const ap_h5log *l, ctype t) {
    return t == C_I64 ? H5T_NATIVE_INT64 : t == C_F64 ? H5T_NATIVE_DOUBLE : t == C_F32 ? H5T_NATIVE_FLOAT
         : t == C_I32 ? H5T_NATIVE_INT32 : l->str;
}

static int create_cols(ap_h5log *l, const char *group, col *c, int n, int width) {
    hid_t g = H5Gcreate2(l->f, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return ap_fail("%s: HDF5: cannot create /%s", l->path, group);
    int rc = AP_OK;
    for (int i = 0; i < n && !rc; i++) {
        int rank = c[i].wide ? 2 : 1;
        hsize_t dims[2] = {0, (hsize_t)width}, maxd[2] = {H5S_UNLIMITED, (hsize_t)width};
        hsize_t chunk[2] = {c[i].wide ? 16 : 256, (hsize_t)width};
        hid_t sp = H5Screate_simple(rank, dims, maxd);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(pl, rank, chunk);
        c[i].d = H5Dcreate2(g, c[i].name, file_type(l, c[i].type), sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        if (c[i].d < 0) rc = ap_fail("%s: HDF5: cannot create /%s/%s", l->path, group, c[i].name);
        H5Pclose(pl);
        H5Sclose(sp);
    }
    H5Gclose(g);
    return rc;
}

static int open_cols(ap_h5log *l, const char *group, col *c, int n, int width, hsize_t *rows) {
    *rows = 0;
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "/%s/%s", group, c[i].name);
        c[i].d = H5Dopen2(l->f, name, H5P_DEFAULT);
        if (c[i].d < 0) return ap_fail("%s: %s missing: not a log of this program", l->path, name);
        hid_t sp = H5Dget_space(c[i].d);
        hsize_t dims[2] = {0, 0};
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        if (c[i].wide && dims[1] != (hsize_t)width)
            return ap_fail("%s: %s has %llu columns, this run %d (a log of another batch size: "
                           "use another run_name)", l->path, name, (unsigned long long)dims[1], width);
        if (i == 0 || dims[0] < *rows) *rows = dims[0];
    }
    return AP_OK;
}

/* Rows whose step keeps them: train rows with step <= s, eval rows with step < s. */
static int keep_rows(ap_h5log *l, col *c, hsize_t rows, int64_t s, int strict, hsize_t *keep) {
    *keep = 0;
    if (!rows) return AP_OK;
    int64_t *steps = malloc(sizeof *steps * rows);
    if (!steps) return ap_fail("out of memory reading %s", l->path);
    hid_t fs = H5Dget_space(c[0].d);
    hsize_t start = 0, count = rows;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    herr_t rc = H5Dread(c[0].d, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, steps);
    H5Sclose(ms), H5Sclose(fs);
    if (rc < 0) {
        free(steps);
        return ap_fail("%s: cannot read the step column", l->path);
    }
    while (*keep < rows && (strict ? steps[*keep] < s : steps[*keep] <= s)) (*keep)++;
    free(steps);
    return AP_OK;
}

static int set_rows(ap_h5log *l, col *c, int n, hsize_t rows, int width) {
    for (int i = 0; i < n; i++) {
        hsize_t dims[2] = {rows, (hsize_t)width};
        if (H5Dset_extent(c[i].d, dims) < 0) return ap_fail("%s: HDF5: cannot resize %s", l->path, c[i].name);
    }
    return AP_OK;
}

static size_t elem_size(ctype t) {
    return t == C_I64 || t == C_F64 ? 8 : t == C_STR ? STR_LEN : 4;
}

/* The kept rows of an existing log (train rows with step <= s, eval rows
 * with step < s), read in SWMR-read mode, which also opens a log whose
 * writer was killed; then written into the new file l->f. */
static int copy_rows(ap_h5log *l, const char *old, int64_t s) {
    ap_h5log *o = ap_calloc(1, sizeof *o, "HDF5 log");
    if (!o) return AP_ERR;
    snprintf(o->path, sizeof o->path, "%s", old);
    memcpy(o->train, TRAIN_COLS, sizeof TRAIN_COLS);
    memcpy(o->eval, EVAL_COLS, sizeof EVAL_COLS);
    o->str = H5Tcopy(l->str);
    o->f = H5Fopen(old, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    int rc = o->f < 0 ? ap_fail("%s: cannot open the old log", old) : AP_OK;
    hsize_t tr = 0, er = 0, tk = 0, ek = 0;
    if (!rc) rc = open_cols(o, "train", o->train, NTRAIN, l->N, &tr);
    if (!rc) rc = open_cols(o, "eval", o->eval, NEVAL, l->E, &er);
    if (!rc) rc = keep_rows(o, o->train, tr, s, 0, &tk);
    if (!rc) rc = keep_rows(o, o->eval, er, s, 1, &ek);
    for (int g = 0; g < 2 && !rc; g++) {
        col *oc = g ? o->eval : o->train, *nc = g ? l->eval : l->train;
        int n = g ? NEVAL : NTRAIN, width = g ? l->E : l->N;
        hsize_t keep = g ? ek : tk;
        if (!keep) continue;
        for (int i = 0; i < n && !rc; i++) {
            int rank = oc[i].wide ? 2 : 1;
            hsize_t count[2] = {keep, (hsize_t)width}, start[2] = {0, 0};
            size_t bytes = (size_t)keep * (oc[i].wide ? (size_t)width : 1) * elem_size(oc[i].type);
            void *buf = malloc(bytes);
            if (!buf) { rc = ap_fail("out of memory copying %s", old); break; }
            hid_t fs = H5Dget_space(oc[i].d);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            hid_t ms = H5Screate_simple(rank, count, NULL);
            if (H5Dread(oc[i].d, mem_type(o, oc[i].type), ms, fs, H5P_DEFAULT, buf) < 0)
                rc = ap_fail("%s: cannot read %s", old, oc[i].name);
            H5Sclose(fs);
            if (!rc && H5Dset_extent(nc[i].d, count) < 0) rc = ap_fail("%s: cannot resize %s", l->path, nc[i].name);
            if (!rc) {
                fs = H5Dget_space(nc[i].d);
                H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
                if (H5Dwrite(nc[i].d, mem_type(l, nc[i].type), ms, fs, H5P_DEFAULT, buf) < 0)
                    rc = ap_fail("%s: cannot write %s", l->path, nc[i].name);
                H5Sclose(fs);
            }
            H5Sclose(ms);
            free(buf);
        }
        if (g) l->eval_rows = keep;
        else l->train_rows = keep;
    }
    ap_h5log_close(o);
    return rc;
}

int ap_h5log_open(ap_h5log **out, const char *path, int N, int E, int64_t resume_step) {
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    ap_h5log *l = ap_calloc(1, sizeof *l, "HDF5 log");
    if (!l) return AP_ERR;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->N = N, l->E = E;
    memcpy(l->train, TRAIN_COLS, sizeof TRAIN_COLS);
    memcpy(l->eval, EVAL_COLS, sizeof EVAL_COLS);
    l->str = H5Tcopy(H5T_C_S1);
    H5Tset_size(l->str, STR_LEN);
    H5Tset_strpad(l->str, H5T_STR_NULLTERM);
    H5Tset_cset(l->str, H5T_CSET_UTF8);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    /* One path for new and resumed runs: a fresh file under a temporary name
     * (holding the rows of the old log that precede the resume point), then
     * renamed over the old one, then reopened for SWMR appending. */
    ap_atomic a;
    int rc = ap_atomic_begin(&a, path, 0);
    int began = rc == AP_OK;
    if (!rc) {
        l->f = H5Fcreate(a.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (l->f < 0) rc = ap_fail("%s: cannot create the HDF5 log", path);
    }
    if (!rc) rc = create_cols(l, "train", l->train, NTRAIN, N);
    if (!rc) rc = create_cols(l, "eval", l->eval, NEVAL, E);
    if (!rc && resume_step >= 0 && ap_is_file(path) && copy_rows(l, path, resume_step)) {
        fprintf(stderr, "warning: %s: the old log could not be read (%s); it is replaced by a new "
                "one\n", path, ap_errmsg());
        l->train_rows = l->eval_rows = 0;
        for (int i = 0; i < NTRAIN; i++) set_rows(l, &l->train[i], 1, 0, N);
        for (int i = 0; i < NEVAL; i++) set_rows(l, &l->eval[i], 1, 0, E);
    }
    for (int i = 0; i < NTRAIN; i++) if (l->train[i].d > 0) H5Dclose(l->train[i].d), l->train[i].d = -1;
    for (int i = 0; i < NEVAL; i++) if (l->eval[i].d > 0) H5Dclose(l->eval[i].d), l->eval[i].d = -1;
    if (l->f > 0 && H5Fclose(l->f) < 0 && !rc) rc = ap_fail("%s: HDF5 close failed", path);
    l->f = -1;
    if (!rc) rc = ap_atomic_commit(&a);
    else if (began) ap_atomic_abort(&a);
    if (!rc) {
        l->f = H5Fopen(path, H5F_ACC_RDWR, fapl);
        if (l->f < 0) rc = ap_fail("%s: cannot reopen the log for appending", path);
    }
    hsize_t tr, er;
    if (!rc) rc = open_cols(l, "train", l->train, NTRAIN, N, &tr);
    if (!rc) rc = open_cols(l, "eval", l->eval, NEVAL, E, &er);
    H5Pclose(fapl);
    if (!rc && H5Fstart_swmr_write(l->f) < 0) rc = ap_fail("%s: HDF5: cannot start SWMR writing", path);
    if (rc) {
        ap_h5log_close(l);
        return AP_ERR;
    }
    *out = l;
    return AP_OK;
}

static int append(ap_h5log *l, col *c, hsize_t row, int width, const void *v) {
    int rank = c->wide ? 2 : 1;
    hsize_t dims[2] = {row + 1, (hsize_t)width};
    if (H5Dset_extent(c->d, dims) < 0) return ap_fail("%s: HDF5: cannot extend %s", l->path, c->name);
    hid_t fs = H5Dget_space(c->d);
    hsize_t start[2] = {row, 0}, count[2] = {1, (hsize_t)width};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    herr_t rc = H5Dwrite(c->d, mem_type(l, c->type), ms, fs, H5P_DEFAULT, v);
    H5Sclose(ms), H5Sclose(fs);
    if (rc < 0 || H5Dflush(c->d) < 0) return ap_fail("%s: HDF5: cannot write %s", l->path, c->name);
    return AP_OK;
}

static char *strings(const char *const *s, int n) {
    char *b = calloc((size_t)n, STR_LEN);
    if (!b) return NULL;
    for (int i = 0; i < n; i++)
        if (s && s[i]) {
            size_t k = strlen(s[i]);
            if (k > STR_LEN - 1) k = STR_LEN - 1;
            while (k > 0 && ((unsigned char)s[i][k] & 0xC0) == 0x80) k--; /* whole UTF-8 characters */
            memcpy(b + (size_t)i * STR_LEN, s[i], k);
        }
    return b;
}

int ap_h5log_train(ap_h5log *l, const ap_train_row *r) {
    const hsize_t row = l->train_rows;
    const void *v[NTRAIN] = {&r->step, &r->epoch, &r->loss, &r->reward_mean, &r->reward_std,
                             &r->grad_norm, &r->lr, &r->step_time, &r->samples_per_s,
                             &r->attached_mean, r->rewards, NULL, r->attached};
    char *ps = strings(r->prompts, l->N);
    if (!ps) return ap_fail("out of memory: log row");
    v[11] = ps;
    int rc = AP_OK;
    for (int i = 0; i < NTRAIN && !rc; i++) rc = append(l, &l->train[i], row, l->N, v[i]);
    free(ps);
    if (!rc) l->train_rows++;
    return rc;
}

int ap_h5log_eval(ap_h5log *l, const ap_eval_row *r) {
    const hsize_t row = l->eval_rows;
    const void *v[NEVAL] = {&r->step, &r->epoch, &r->reward_mean, &r->reward_std, r->rewards, NULL};
    char *ps = strings(r->prompts, l->E);
    if (!ps) return ap_fail("out of memory: log row");
    v[5] = ps;
    int rc = AP_OK;
    for (int i = 0; i < NEVAL && !rc; i++) rc = append(l, &l->eval[i], row, l->E, v[i]);
    free(ps);
    if (!rc) l->eval_rows++;
    return rc;
}

void ap_h5log_close(ap_h5log *l) {
    if (!l) return;
    for (int i = 0; i < NTRAIN; i++) if (l->train[i].d > 0) H5Dclose(l->train[i].d);
    for (int i = 0; i < NEVAL; i++) if (l->eval[i].d > 0) H5Dclose(l->eval[i].d);
    if (l->str > 0) H5Tclose(l->str);
    if (l->f > 0) H5Fclose(l->f);
    free(l);
}
