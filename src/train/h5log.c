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

enum { STR_LEN = 255, MAX_COLS = 15, EVAL_COLS = 6,
       ALL_COLS = MAX_COLS + 2 * AP_H5LOG_MAX_PARTS }; /* + a reward mixture's parts */

/* ---- why HDF5 failed ------------------------------------------------------- */

typedef struct {
    char first[256]; /* the innermost description */
    char sys[160];   /* "errno N: message" of a failed system call */
} why_ctx;

static herr_t why_walk(unsigned n, const H5E_error2_t *e, void *user) {
    why_ctx *w = user;
    const char *d = e->desc ? e->desc : "";
    if (n == 0) snprintf(w->first, sizeof w->first, "%s", d);
    const char *en = strstr(d, "errno = ");
    if (en && !w->sys[0]) {
        int code = atoi(en + 8);
        const char *msg = strstr(en, "error message = '");
        const char *end = msg ? strchr(msg + 17, '\'') : NULL;
        if (msg && end)
            snprintf(w->sys, sizeof w->sys, "errno %d: %.*s", code, (int)(end - msg - 17), msg + 17);
        else
            snprintf(w->sys, sizeof w->sys, "errno %d", code);
    }
    return 0;
}

static _Thread_local char g_why[300];

/* Keep what the error stack says now: the next HDF5 call clears it. */
static void h5_capture(void) {
    why_ctx w = {{0}, {0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, why_walk, &w);
    if (w.sys[0]) snprintf(g_why, sizeof g_why, "%s", w.sys);
    else if (w.first[0]) snprintf(g_why, sizeof g_why, "HDF5: %s", w.first);
}

const char *ap_h5_why(void) {
    h5_capture();
    return g_why[0] ? g_why : "no reason given by HDF5";
}

/* HDF5 refused to open because another process holds the file's lock. */
static int lock_refused(void) {
    const char *w = ap_h5_why();
    return strstr(w, "lock") != NULL || strstr(w, "errno 11") != NULL;
}
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
    {"attached", C_I32, 1},   {"reward_std_global", C_F64, 0}, {"skipped", C_I64, 0}};
/* Columns from this index on may be missing from a log an earlier version
 * wrote (train: reward_std_global, skipped). */
static int k_first_new(const void *t);

static const coldef k_eval[EVAL_COLS] = {{"step", C_I64, 0},        {"epoch", C_I64, 0},
                                 {"reward_mean", C_F64, 0}, {"reward_std", C_F64, 0},
                                 {"rewards", C_F32, 1},     {"prompts", C_STR, 1}};

typedef struct {
    const coldef *def;  /* cols: k_train or k_eval, then the parts' columns */
    int n;         /* columns */
    int width;     /* N or E */
    int train;     /* the /train table */
    int first_new; /* columns from here on may be missing from an older log */
    coldef cols[ALL_COLS];
    char part_col[2 * AP_H5LOG_MAX_PARTS][48]; /* reward_<name>, reward_<name>_mean */
    hid_t ds[ALL_COLS];
    hid_t complete;  /* /<group>/complete_rows: (1) int64, written after every row */
    hsize_t rows;
    const char *group;
} table;

static int k_first_new(const void *tv) {
    const table *t = tv;
    return t->first_new;
}

struct ap_h5log {
    char path[4096];
    hid_t f, str_t;
    table train, eval;
    int n_parts;  /* a reward mixture's parts: columns after the base ones */
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

/* /<group>/complete_rows: the number of whole rows, written last. */
static int create_complete(ap_h5log *l, table *t, hid_t g) {
    hsize_t one = 1;
    int64_t zero = (int64_t)t->rows;
    hid_t sp = H5Screate_simple(1, &one, NULL);
    t->complete = sp < 0 ? -1 : H5Dcreate2(g, "complete_rows", H5T_STD_I64LE, sp, H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT);
    if (sp >= 0) H5Sclose(sp);
    if (t->complete < 0 ||
        H5Dwrite(t->complete, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &zero) < 0)
        return ap_fail("%s: cannot create /%s/complete_rows: %s", l->path, t->group, ap_h5_why());
    return AP_OK;
}

static int create_column(ap_h5log *l, table *t, hid_t g, int c);

static int create_table(ap_h5log *l, table *t) {
    hid_t g = H5Gcreate2(l->f, t->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return ap_fail("%s: cannot create group /%s: %s", l->path, t->group, ap_h5_why());
    int rc = create_complete(l, t, g);
    for (int c = 0; c < t->n && rc == AP_OK; c++) rc = create_column(l, t, g, c);
    H5Gclose(g);
    return rc;
}

/* Column c of t in group g, t->rows rows long (zeros: a column a log
 * written by an earlier version lacks). */
static int create_column(ap_h5log *l, table *t, hid_t g, int c) {
    int rc = AP_OK;
    {
        const coldef *d = &t->def[c];
        if (d->wide && t->width == 0) return AP_OK; /* E = 0: no evaluation images */
        int nd = d->wide ? 2 : 1;
        hsize_t dims[2] = {0, (hsize_t)t->width}, maxd[2] = {H5S_UNLIMITED, (hsize_t)t->width};
        size_t row_bytes = elem_size(d->type) * (d->wide ? (size_t)t->width : 1);
        hsize_t chunk[2] = {65536 / row_bytes ? 65536 / row_bytes : 1, (hsize_t)t->width};
        hid_t sp = H5Screate_simple(nd, dims, maxd);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        if (sp < 0 || pl < 0 || H5Pset_chunk(pl, nd, chunk) < 0 ||
            (t->ds[c] = H5Dcreate2(g, d->name, file_type(l, d->type), sp, H5P_DEFAULT, pl,
                                   H5P_DEFAULT)) < 0)
            rc = ap_fail("%s: cannot create dataset /%s/%s: %s", l->path, t->group, d->name,
                         ap_h5_why());
        if (pl >= 0) H5Pclose(pl);
        if (sp >= 0) H5Sclose(sp);
        hsize_t now[2] = {t->rows, (hsize_t)t->width};
        if (rc == AP_OK && t->rows && H5Dset_extent(t->ds[c], now) < 0)
            rc = ap_fail("%s: cannot extend the new /%s/%s: %s", l->path, t->group, d->name,
                         ap_h5_why());
    }
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
        if (H5Lexists(l->f, name, H5P_DEFAULT) <= 0 && c >= k_first_new(t)) {
            t->ds[c] = 0; /* a column added since the log was written: created below */
            continue;
        }
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
                           t->train ? "global batch N" : "evaluation image count E");
        if (dims[0] < rows) rows = dims[0];
    }
    if (rows == (hsize_t)-1) rows = 0;
    char cname[64];
    snprintf(cname, sizeof cname, "/%s/complete_rows", t->group);
    if (H5Lexists(l->f, cname, H5P_DEFAULT) > 0) {
        int64_t done = 0;
        if ((t->complete = H5Dopen2(l->f, cname, H5P_DEFAULT)) < 0 ||
            H5Dread(t->complete, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &done) < 0)
            return ap_fail("%s: cannot read %s: %s", l->path, cname, ap_h5_why());
        if (done >= 0 && (hsize_t)done < rows) rows = (hsize_t)done; /* a row being written */
    } else { /* a log written before complete_rows existed */
        hid_t g = H5Gopen2(l->f, t->group, H5P_DEFAULT);
        int rc = g < 0 ? ap_fail("%s: cannot open /%s", l->path, t->group) : create_complete(l, t, g);
        if (g >= 0) H5Gclose(g);
        AP_TRY(rc);
    }
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
        const int strict = !t->train;
        while (!bad && keep < rows && (strict ? steps[keep] < resume_step : steps[keep] <= resume_step))
            keep++;
        free(steps);
        if (bad) return ap_fail("%s: cannot read /%s/step", l->path, t->group);
    }
    for (int c = 0; c < t->n; c++) {
        if (t->def[c].wide && t->width == 0) continue;
        if (t->ds[c] <= 0) { /* added since: zeros up to the kept rows */
            hid_t g = H5Gopen2(l->f, t->group, H5P_DEFAULT);
            t->rows = keep;
            int rc = g < 0 ? ap_fail("%s: cannot open /%s", l->path, t->group)
                           : create_column(l, t, g, c);
            if (g >= 0) H5Gclose(g);
            AP_TRY(rc);
            fprintf(stderr, "note: %s: added /%s/%s (zeros for the %llu earlier rows)\n", l->path,
                    t->group, t->def[c].name, (unsigned long long)keep);
            continue;
        }
        hsize_t dims[2] = {keep, (hsize_t)t->width};
        if (H5Dset_extent(t->ds[c], dims) < 0)
            return ap_fail("%s: cannot cut /%s/%s to %llu rows", l->path, t->group,
                           t->def[c].name, (unsigned long long)keep);
    }
    t->rows = keep;
    int64_t k = (int64_t)keep;
    if (H5Dwrite(t->complete, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &k) < 0)
        return ap_fail("%s: cannot write /%s/complete_rows: %s", l->path, t->group, ap_h5_why());
    return AP_OK;
}

static void close_table(table *t) {
    for (int c = 0; c < t->n; c++)
        if (t->ds[c] > 0) H5Dclose(t->ds[c]);
    if (t->complete > 0) H5Dclose(t->complete);
    memset(t->ds, 0, sizeof t->ds);
    t->complete = 0;
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

/* A file access list for the log: latest format; lock: 0 opens without
 * HDF5's file lock (where this HDF5 can, 1.10.7 on). */
static hid_t log_fapl(int lock) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
#if H5_VERSION_GE(1, 10, 7)
    if (!lock) H5Pset_file_locking(fapl, 0, 1);
#else
    (void)lock;
#endif
    return fapl;
}

static hid_t open_existing(const char *path, int lock) {
    hid_t fapl = log_fapl(lock);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, fapl);
    if (f < 0) h5_capture();
    if (f < 0) {
        /* Flagged open-for-write by a writer that died: repair as
         * `h5clear -s --increment=0` does (the property is HDF5's own,
         * registered on every file access list): clear the flags, and move
         * the end-of-allocation stored in the superblock, which a SWMR
         * writer does not keep current, to the end of the file so the
         * flushed rows stay readable. Then open again normally. */
        hid_t rp = lock_refused() ? -1 : H5Pcopy(fapl);
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

/* t's columns: base[0..nb), then reward_<name> (wide, f32) and
 * reward_<name>_mean (f64) for each part. */
static int set_columns(table *t, const coldef *base, int nb, int n_parts, const char *const *parts) {
    memcpy(t->cols, base, (size_t)nb * sizeof *base);
    t->def = t->cols, t->n = nb, t->first_new = t->train ? 13 : nb;
    for (int i = 0; i < n_parts; i++) {
        char *w = t->part_col[2 * i], *m = t->part_col[2 * i + 1];
        if (!parts[i] || !*parts[i] || strlen(parts[i]) > 32)
            return ap_fail("log: reward part %d: expected a name of 1..32 bytes", i);
        snprintf(w, sizeof t->part_col[0], "reward_%s", parts[i]);
        snprintf(m, sizeof t->part_col[0], "reward_%s_mean", parts[i]);
        t->cols[t->n++] = (coldef){w, C_F32, 1};
        t->cols[t->n++] = (coldef){m, C_F64, 0};
    }
    return AP_OK;
}

/* ---- self-description (docs/logging.md §5) -------------------------------- */

typedef struct {
    const char *name, *description, *units;
} coldoc;

static const coldoc k_docs_train[] = {
    {"step", "optimizer steps done after this row's step (1-based; TensorBoard's step)", "step"},
    {"epoch", "epoch of the step (0-based)", "epoch"},
    {"loss", "train.loss_coeff x the mean per-sample loss of the step's global batch, plus "
             "kl_coeff x the mean KL term when kl_coeff > 0 (minimised)",
     "loss (a function of the reward: the root attribute reward_meaning)"},
    {"reward_mean", "mean reward over the step's global batch (TensorBoard: rewards)", "reward"},
    {"reward_std", "mean over micro-batches of the unbiased reward std, as AlignProp logs "
                   "rewards_std; NaN when every micro-batch holds one sample", "reward"},
    {"grad_norm", "global L2 norm of the summed LoRA gradient before clipping", "gradient L2 norm"},
    {"lr", "AdamW learning rate of the step", "1"},
    {"step_time", "wall time of the step on rank 0", "s"},
    {"samples_per_s", "global batch / step_time", "samples/s"},
    {"attached_mean", "mean number of DDIM steps in the backward graph per sample (truncated "
                      "backprop)", "DDIM steps"},
    {"rewards", "reward of each sample of the step's global batch (N per row)", "reward"},
    {"prompts", "prompt of each sample (UTF-8, cut at 255 bytes)", "text"},
    {"attached", "DDIM steps in the backward graph of each sample", "DDIM steps"},
    {"reward_std_global", "unbiased reward std over the step's whole global batch", "reward"},
    {"skipped", "1: the loss or gradient was not finite and no update was made", "flag (0/1)"},
    {"complete_rows", "rows written whole (a SWMR reader reads this many)", "rows"}};

static const coldoc k_docs_eval[] = {
    {"step", "optimizer steps done when the evaluation ran", "step"},
    {"epoch", "epoch of that step (0-based)", "epoch"},
    {"reward_mean", "mean reward over the evaluation images (TensorBoard: eval_rewards)", "reward"},
    {"reward_std", "unbiased reward std over the evaluation images", "reward"},
    {"rewards", "reward of each evaluation image (E per row)", "reward"},
    {"prompts", "prompt of each evaluation image (UTF-8, cut at 255 bytes)", "text"},
    {"complete_rows", "rows written whole (a SWMR reader reads this many)", "rows"}};

/* A variable-length UTF-8 string attribute name = v on object o, replacing
 * an existing one. */
static int str_attr(hid_t o, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int bad = t < 0 || sp < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 ||
              H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
              (H5Aexists(o, name) > 0 && H5Adelete(o, name) < 0) ||
              (a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, t, &v) < 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return bad ? AP_ERR : AP_OK;
}

static const coldoc *find_doc(const coldoc *d, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(d[i].name, name)) return &d[i];
    return NULL;
}

/* description and units of every dataset of t lacking them (a reward
 * mixture's part columns reward_<name>, reward_<name>_mean included). */
static int describe_table(ap_h5log *l, table *t) {
    const coldoc *docs = t->train ? k_docs_train : k_docs_eval;
    const int nd = t->train ? (int)(sizeof k_docs_train / sizeof *k_docs_train)
                            : (int)(sizeof k_docs_eval / sizeof *k_docs_eval);
    for (int c = 0; c <= t->n; c++) {
        const char *col = c < t->n ? t->def[c].name : "complete_rows";
        const coldoc *d = find_doc(docs, nd, col);
        char name[96], desc[160];
        if (!d) { /* a part column */
            size_t k = strlen(col);
            int mean = k > 5 && !strcmp(col + k - 5, "_mean");
            snprintf(desc, sizeof desc, "%s of the reward mixture's part %.*s%s", mean ?
                     "mean over the batch" : "each sample's value", (int)(k - 7 - (mean ? 5 : 0)),
                     col + 7, t->train ? "" : " (evaluation images)");
        }
        snprintf(name, sizeof name, "/%s/%s", t->group, col);
        if (H5Lexists(l->f, name, H5P_DEFAULT) <= 0) continue; /* E = 0: no wide columns */
        hid_t ds = H5Dopen2(l->f, name, H5P_DEFAULT);
        int bad = ds < 0;
        if (!bad && H5Aexists(ds, "description") <= 0)
            bad = str_attr(ds, "description", d ? d->description : desc) ||
                  str_attr(ds, "units", d ? d->units : "reward (of that part)");
        if (ds >= 0) H5Dclose(ds);
        if (bad)
            return ap_fail("%s: cannot describe %s (attributes description, units): %s", l->path,
                           name, ap_h5_why());
    }
    return AP_OK;
}

static int write_meta(ap_h5log *l, const ap_h5log_meta *m) {
    const struct { const char *name, *v; } s[] = {
        {"program", "alignprop-mpi"}, {"program_version", m->program_version},
        {"git_commit", m->git_commit}, {"config", m->config}, {"reward", m->reward},
        {"reward_meaning", m->reward_meaning}, {"hostname", m->hostname}, {"cpu", m->cpu},
        {"gpu", m->gpu}, {"backend", m->backend}};
    int bad = 0;
    for (size_t i = 0; i < sizeof s / sizeof s[0] && !bad; i++)
        if (s[i].v) bad = str_attr(l->f, s[i].name, s[i].v);
    char world[16]; /* the rank count as text: what `report` reads (src/cli/report_cmd.c) */
    snprintf(world, sizeof world, "%d", m->ranks);
    if (!bad && m->ranks > 0) bad = str_attr(l->f, "world", world);
    const struct { const char *name; int n; const int *v; } ints[] = {
        {"ranks", 1, &m->ranks}, {"global_batch", 1, &m->global_batch},
        {"capacities", m->ranks, m->capacities}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !bad; i++) {
        if (!ints[i].v || ints[i].n < 1) continue;
        hsize_t n = (hsize_t)ints[i].n;
        hid_t sp = ints[i].v == m->capacities ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
        hid_t a = -1;
        bad = sp < 0 || (H5Aexists(l->f, ints[i].name) > 0 && H5Adelete(l->f, ints[i].name) < 0) ||
              (a = H5Acreate2(l->f, ints[i].name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, H5T_NATIVE_INT, ints[i].v) < 0;
        if (a >= 0) H5Aclose(a);
        if (sp >= 0) H5Sclose(sp);
    }
    return bad ? ap_fail("%s: cannot write the run's attributes: %s", l->path, ap_h5_why()) : AP_OK;
}

int ap_h5log_open(ap_h5log **out, const char *path, int N, int E, int64_t resume_step) {
    return ap_h5log_open_meta(out, path, N, E, resume_step, 0, NULL, NULL);
}

int ap_h5log_open_parts(ap_h5log **out, const char *path, int N, int E, int64_t resume_step,
                        int n_parts, const char *const *parts) {
    return ap_h5log_open_meta(out, path, N, E, resume_step, n_parts, parts, NULL);
}

int ap_h5log_open_meta(ap_h5log **out, const char *path, int N, int E, int64_t resume_step,
                       int n_parts, const char *const *parts, const ap_h5log_meta *meta) {
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (N < 1 || E < 0)
        return ap_fail("%s: log widths: expected N >= 1 and E >= 0, found N %d, E %d", path, N, E);
    if (n_parts < 0 || n_parts > AP_H5LOG_MAX_PARTS)
        return ap_fail("%s: %d reward parts: expected 0..%d", path, n_parts, AP_H5LOG_MAX_PARTS);
    ap_h5log *l = ap_calloc(1, sizeof *l, "HDF5 log");
    if (!l) return AP_ERR;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->train = (table){.width = N, .group = "train", .train = 1};
    l->eval = (table){.width = E, .group = "eval"};
    l->n_parts = n_parts;
    if (set_columns(&l->train, k_train, MAX_COLS, n_parts, parts) ||
        set_columns(&l->eval, k_eval, EVAL_COLS, n_parts, parts)) {
        free(l);
        return ap_err_prefix("%s: ", path);
    }
    l->strbuf = ap_malloc((size_t)(N > E ? N : E) * STR_LEN, "log prompt row");
    l->str_t = H5Tcopy(H5T_C_S1);
    if (!l->strbuf || l->str_t < 0 || H5Tset_size(l->str_t, STR_LEN) < 0 ||
        H5Tset_strpad(l->str_t, H5T_STR_NULLPAD) < 0 || H5Tset_cset(l->str_t, H5T_CSET_UTF8) < 0) {
        ap_h5log_close(l);
        return ap_fail("%s: cannot make the 255-byte string type", path);
    }
    struct stat st;
    int rc = AP_OK;
    const int existing = resume_step >= 0 && stat(path, &st) == 0;
    g_why[0] = '\0';
    for (int lock = 1; lock >= 0 && l->f <= 0; lock--) {
        if (existing) {
            l->f = open_existing(path, lock);
        } else {
            hid_t fapl = log_fapl(lock);
            l->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
            if (l->f < 0) h5_capture();
            H5Pclose(fapl);
        }
        if (l->f >= 0 && !lock)
            fprintf(stderr, "note: %s is held open by another process (a reader: HDF5 refused "
                    "its file lock); opened without the lock. Readers see whole rows when they "
                    "open it for SWMR reading (h5py: swmr=True)\n", path);
        if (l->f < 0 && !lock_refused()) break;
#if !H5_VERSION_GE(1, 10, 7)
        break;
#endif
    }
    if (l->f < 0 && lock_refused())
        rc = ap_fail("%s: another process holds the log open (HDF5 file lock: %s): close "
                     "the reader, or run with HDF5_USE_FILE_LOCKING=FALSE", path, ap_h5_why());
    else if (l->f < 0 && existing)
        rc = ap_fail("%s: cannot open the log to resume it: %s", path, ap_h5_why());
    else if (l->f < 0)
        rc = ap_fail("%s: cannot create the HDF5 log: %s", path, ap_h5_why());
    else if (existing)
        rc = reopen_table(l, &l->train, resume_step) || reopen_table(l, &l->eval, resume_step)
                 ? AP_ERR : AP_OK;
    else
        rc = create_table(l, &l->train) || create_table(l, &l->eval) ? AP_ERR : AP_OK;
    if (rc == AP_OK) rc = describe_table(l, &l->train) || describe_table(l, &l->eval) ? AP_ERR : AP_OK;
    if (rc == AP_OK && meta) rc = write_meta(l, meta);
    if (rc == AP_OK && H5Fstart_swmr_write(l->f) < 0)
        rc = ap_fail("%s: cannot start SWMR writing: %s", path, ap_h5_why());
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
    if (H5Dset_extent(ds, dims) < 0 && (h5_capture(), 1))
        return ap_fail("%s: cannot extend /%s/%s to %llu rows: %s", l->path, t->group, d->name,
                       (unsigned long long)dims[0], ap_h5_why());
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &w, NULL);
    int bad = fs < 0 || ms < 0 ||
              H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
              H5Dwrite(ds, mem_type(l, d->type), ms, fs, H5P_DEFAULT, data) < 0 ||
              H5Dflush(ds) < 0;
    if (bad) h5_capture();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return bad ? ap_fail("%s: cannot write row %llu of /%s/%s: %s", l->path,
                         (unsigned long long)t->rows, t->group, d->name, ap_h5_why())
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

/* One row: every column but step, then step, then complete_rows, each
 * flushed, so a reader that sizes rows by step or complete_rows never sees
 * half a row. On a failure the columns already extended are cut back
 * (best effort: on a full disk that may fail too; complete_rows still
 * tells, and a resume cuts every column to it). */
static int append_row(ap_h5log *l, table *t, const void *const *vals) {
    for (int c = 0; c < t->n; c++)
        if (!vals[c] && !(t->def[c].wide && t->width == 0))
            return ap_fail("%s: /%s/%s: no values given for this row", l->path, t->group,
                           t->def[c].name);
    int rc = AP_OK, c = 1;
    for (; c <= t->n && rc == AP_OK; c++) {
        int k = c % t->n; /* step (column 0) last */
        if (t->def[k].wide && t->width == 0) continue;
        rc = append(l, t, k, vals[k]);
    }
    int64_t done = (int64_t)t->rows + 1;
    if (rc == AP_OK &&
        (H5Dwrite(t->complete, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &done) < 0 ||
         H5Dflush(t->complete) < 0))
        rc = ap_fail("%s: cannot write /%s/complete_rows = %lld: %s", l->path, t->group,
                     (long long)done, ap_h5_why());
    if (rc == AP_OK) {
        t->rows++;
        return AP_OK;
    }
    for (int k = 0; k < t->n; k++) {
        if (t->def[k].wide && t->width == 0) continue;
        hsize_t dims[2] = {t->rows, (hsize_t)t->width};
        H5Dset_extent(t->ds[k], dims);
    }
    return AP_ERR;
}

/* The parts' columns of a row: values (n_parts, width) and their means. */
static int part_vals(const ap_h5log *l, const table *t, const float *v, double *means,
                     const void **vals) {
    if (!l->n_parts) return AP_OK;
    if (!v) return ap_fail("%s: /%s: no reward part values given for this row", l->path, t->group);
    for (int i = 0; i < l->n_parts; i++) {
        const float *p = v + (size_t)i * (size_t)t->width;
        double m = 0;
        for (int k = 0; k < t->width; k++) m += p[k];
        means[i] = t->width ? m / t->width : 0;
        vals[t->n - 2 * l->n_parts + 2 * i] = p, vals[t->n - 2 * l->n_parts + 2 * i + 1] = &means[i];
    }
    return AP_OK;
}

int ap_h5log_train(ap_h5log *l, const ap_train_row *r) {
    double means[AP_H5LOG_MAX_PARTS];
    const void *vals[ALL_COLS] = {
        &r->step,       &r->epoch,         &r->loss,         &r->reward_mean, &r->reward_std,
        &r->grad_norm,  &r->lr,            &r->step_time,    &r->samples_per_s,
        &r->attached_mean, r->rewards,
        r->prompts ? pack_prompts(l, r->prompts, l->train.width) : NULL, r->attached,
        &r->reward_std_global, &r->skipped};
    AP_TRY(part_vals(l, &l->train, r->part_rewards, means, vals));
    return append_row(l, &l->train, vals);
}

int ap_h5log_eval(ap_h5log *l, const ap_eval_row *r) {
    double means[AP_H5LOG_MAX_PARTS];
    const void *vals[ALL_COLS] = {&r->step, &r->epoch, &r->reward_mean, &r->reward_std, r->rewards,
                                  r->prompts ? pack_prompts(l, r->prompts, l->eval.width) : NULL};
    AP_TRY(part_vals(l, &l->eval, r->part_rewards, means, vals));
    return append_row(l, &l->eval, vals);
}
