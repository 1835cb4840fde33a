/* inspect_cmd.c: `alignprop-mpi inspect PATH [--json]`: what a model
 * directory, weights file, LoRA (any layout), checkpoint or log.h5 holds,
 * for people or (--json) for scripts. Every description is emitted through
 * one small writer (out_*) that renders either indented "key: value" lines or
 * JSON, so both forms always say the same. */
#include <getopt.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/err.h"
#include "core/path.h"
#include "io/json.h"
#include "io/lora_file.h"
#include "io/pth.h"
#include "io/safetensors.h"

/* ---- the writer --------------------------------------------------------- */

static int g_json, g_depth, g_first[32], g_arr[32];
static FILE *g_out; /* a memory stream: printed whole once the description succeeded */

static void jstr(const char *s) {
    fputc('"', g_out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(g_out, "\\%c", c);
        else if (c < 0x20) fprintf(g_out, "\\u%04x", c);
        else fputc(c, g_out);
    }
    fputc('"', g_out);
}

/* Start a member: key (NULL inside an array). */
static void key_(const char *key) {
    if (g_json) {
        if (!g_first[g_depth]) fputc(',', g_out);
        g_first[g_depth] = 0;
        if (key && !g_arr[g_depth]) jstr(key), fputc(':', g_out);
    } else {
        fprintf(g_out, "%*s%s%s", 2 * (g_depth - 1), "", key ? key : "-", key ? ": " : " ");
    }
}
static void out_str(const char *key, const char *v) {
    key_(key);
    if (g_json) jstr(v ? v : "");
    else fprintf(g_out, "%s\n", v ? v : "");
}
static void out_int(const char *key, long long v) {
    key_(key);
    fprintf(g_out, g_json ? "%lld" : "%lld\n", v);
}
static void out_num(const char *key, double v) {
    key_(key);
    if (g_json) isfinite(v) ? fprintf(g_out, "%.9g", v) : fprintf(g_out, "null");
    else fprintf(g_out, "%.6g\n", v);
}
static void open_(const char *key, int arr) {
    if (g_json) key_(key), fputc(arr ? '[' : '{', g_out);
    else fprintf(g_out, "%*s%s:\n", 2 * (g_depth - 1), "", key ? key : "-");
    g_depth++;
    g_first[g_depth] = 1, g_arr[g_depth] = arr;
}
static void out_obj(const char *key) { open_(key, 0); }
static void out_arr(const char *key) { open_(key, 1); }
static void out_end(void) {
    if (g_json) fputc(g_arr[g_depth] ? ']' : '}', g_out);
    g_depth--;
}

/* ---- weights files ------------------------------------------------------ */

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* Tensors, dtypes, totals, the largest names; LoRA details when it is one. */
static int describe_weights(const char *file, int brief) {
    ap_st_file *st = NULL;
    ap_pth_file *pt = NULL;
    int n;
    char head[8] = {0};
    FILE *fp = fopen(file, "rb");
    if (!fp) return ap_fail("%s: cannot open", file);
    size_t got = fread(head, 1, sizeof head, fp);
    fclose(fp);
    int zip = got >= 2 && head[0] == 'P' && head[1] == 'K';
    if (zip) AP_TRY(ap_pth_open(&pt, file));
    else AP_TRY(ap_st_open(&st, file));
    n = st ? ap_st_count(st) : ap_pth_count(pt);
    long long by_dt[AP_DT_COUNT] = {0}, params = 0, bytes = 0;
    const char **keys = calloc((size_t)n + 1, sizeof *keys);
    if (!keys) return ap_fail("out of memory");
    for (int i = 0; i < n; i++) {
        int dt, nd;
        int64_t shape[AP_MAX_DIMS], ne = 1;
        if (st) {
            const ap_st_tensor *t = ap_st_at(st, i);
            keys[i] = t->name, dt = t->dtype, nd = t->ndim;
            memcpy(shape, t->shape, sizeof shape);
        } else {
            keys[i] = ap_pth_name(pt, i);
            ap_pth_info(pt, keys[i], &dt, &nd, shape);
        }
        for (int d = 0; d < nd; d++) ne *= shape[d];
        by_dt[dt]++, params += ne, bytes += ne * (long long)ap_file_dtype_size((ap_file_dtype)dt);
    }
    out_str("file", file);
    out_str("format", st ? "safetensors" : "torch zip-pickle");
    if (st && ap_st_meta(st, "format")) out_str("metadata_format", ap_st_meta(st, "format"));
    out_int("tensors", n);
    out_obj("dtypes");
    for (int d = 0; d < AP_DT_COUNT; d++)
        if (by_dt[d]) out_int(ap_file_dtype_name((ap_file_dtype)d), by_dt[d]);
    out_end();
    out_int("parameters", params);
    out_int("bytes", bytes);
    ap_lora_layout l;
    int is_lora = n > 0 && ap_lora_layout_detect(keys, n, file, &l) == 0;
    int rc = AP_OK;
    if (is_lora) {
        ap_lora_set s;
        if (ap_lora_read(&s, file)) {
            out_str("lora_error", ap_errmsg()); /* described all the same */
        } else {
            out_obj("lora");
            out_str("layout", ap_lora_layout_name(s.layout));
            out_int("rank", s.rank);
            out_int("matrices", s.p.count);
            out_int("attentions", s.p.count / 8);
            out_int("alphas", s.alphas);
            out_int("alphas_not_rank", s.alphas_not_rank);
            out_end();
            ap_lora_set_free(&s);
        }
    } else if (!brief) {
        /* groups by the first component of the key ("down_blocks", "model") */
        out_obj("groups");
        for (int i = 0; i < n; i++) {
            size_t len = strcspn(keys[i], ".");
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = strcspn(keys[j], ".") == len && !strncmp(keys[j], keys[i], len);
            if (seen) continue;
            int count = 0;
            for (int j = i; j < n; j++) count += strcspn(keys[j], ".") == len && !strncmp(keys[j], keys[i], len);
            char g[256];
            snprintf(g, sizeof g, "%.*s", (int)(len < 255 ? len : 255), keys[i]);
            out_int(g, count);
        }
        out_end();
    }
    if (!brief && !rc) {
        out_arr("tensor_list");
        int shown = g_json ? n : (n < 8 ? n : 8);
        for (int i = 0; i < shown; i++) {
            char line[700], sh[160];
            int dt, nd;
            int64_t shape[AP_MAX_DIMS];
            if (st) {
                const ap_st_tensor *t = ap_st_at(st, i);
                dt = t->dtype, nd = t->ndim;
                memcpy(shape, t->shape, sizeof shape);
            } else {
                ap_pth_info(pt, keys[i], &dt, &nd, shape);
            }
            ap_tensor d = ap_tn(NULL, nd, shape);
            snprintf(line, sizeof line, "%s %s %s", keys[i], ap_shape_str(&d, sh, sizeof sh),
                     ap_file_dtype_name((ap_file_dtype)dt));
            out_str(NULL, line);
        }
        if (shown < n) {
            char more[64];
            snprintf(more, sizeof more, "... %d more (--json lists all)", n - shown);
            out_str(NULL, more);
        }
        out_end();
    }
    free(keys);
    if (st) ap_st_close(st);
    if (pt) ap_pth_close(pt);
    return rc;
}

/* ---- HDF5: checkpoint state and log ------------------------------------- */

static void h5_attr(hid_t f, const char *name, int human_skip) {
    if (H5Aexists(f, name) <= 0) return;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
    if (H5Tget_class(t) == H5T_STRING) {
        char *s = NULL;
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && (g_json || !human_skip)) out_str(name, s);
            H5free_memory(s);
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(t);
            s = calloc(sz + 1, 1);
            if (s && H5Aread(a, t, s) >= 0 && (g_json || !human_skip)) out_str(name, s);
            free(s);
        }
        if (!g_json && human_skip) out_str(name, "(text; --json shows it)");
    } else if (H5Tget_class(t) == H5T_INTEGER) {
        long long v = 0;
        H5Aread(a, H5T_NATIVE_LLONG, &v);
        out_int(name, v);
    } else if (H5Tget_class(t) == H5T_FLOAT) {
        double v = 0;
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        out_num(name, v);
    }
    H5Tclose(t);
    H5Aclose(a);
}

/* A 1-D dataset read as double, at most rows values (rows < 0: all; log.h5
 * counts whole rows in complete_rows). *n its length. */
static double *h5_col(hid_t f, const char *path, long long rows, long long *n) {
    *n = 0;
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    double *v = calloc(dims[0] + 1, sizeof *v);
    if (v && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0)
        *n = rows >= 0 && rows < (long long)dims[0] ? rows : (long long)dims[0];
    H5Sclose(sp), H5Dclose(d);
    return v;
}

static herr_t count_ds(hid_t g, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    long long *c = user;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return 0;
    hid_t sp = H5Dget_space(d);
    c[0]++, c[1] += H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp), H5Dclose(d);
    return 0;
}

static void describe_state(hid_t f, const char *file) {
    out_str("file", file);
    out_str("kind", "checkpoint state (state.h5)");
    static const char *const attrs[] = {"step", "epoch", "adam_step", "seed", "next_sample", "model",
                                        "base_hash", "lora_hash", "adam_hash", "version", NULL};
    for (int i = 0; attrs[i]; i++) h5_attr(f, attrs[i], 0);
    h5_attr(f, "config", 1);
    long long c[2] = {0, 0};
    hid_t g = H5Gopen2(f, "lora", H5P_DEFAULT);
    if (g >= 0) H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, count_ds, c), H5Gclose(g);
    out_int("lora_tensors", c[0]);
    out_int("lora_parameters", c[1]);
}

static void series(const char *key, const double *step, const double *v, long long n) {
    out_obj(key);
    if (n > 0) {
        long long best = 0;
        for (long long i = 1; i < n; i++)
            if (v[i] > v[best]) best = i;
        out_num("first", v[0]);
        out_num("last", v[n - 1]);
        out_num("max", v[best]);
        out_int("max_at_step", (long long)step[best]);
        if (g_json) {
            out_arr("values");
            for (long long i = 0; i < n; i++) out_num(NULL, v[i]);
            out_end();
        }
    }
    out_end();
}

static void describe_log(hid_t f, const char *file) {
    out_str("file", file);
    out_str("kind", "training log (log.h5)");
    for (int e = 0; e < 2; e++) {
        const char *grp = e ? "eval" : "train";
        char p[64];
        long long rows = -1, n;
        snprintf(p, sizeof p, "/%s/complete_rows", grp);
        double *cr = h5_col(f, p, -1, &n);
        if (cr && n > 0) rows = (long long)cr[0];
        free(cr);
        snprintf(p, sizeof p, "/%s/step", grp);
        double *step = h5_col(f, p, rows, &n);
        out_obj(grp);
        out_int("rows", n);
        if (n > 0) {
            out_int("first_step", (long long)step[0]);
            out_int("last_step", (long long)step[n - 1]);
            long long m;
            snprintf(p, sizeof p, "/%s/reward_mean", grp);
            double *rw = h5_col(f, p, n, &m);
            if (rw && m == n) series("reward_mean", step, rw, n);
            free(rw);
            if (!e) {
                double *loss = h5_col(f, "/train/loss", n, &m);
                if (loss && m == n) out_num("last_loss", loss[n - 1]);
                free(loss);
                double *sk = h5_col(f, "/train/skipped", n, &m);
                long long skipped = 0;
                for (long long i = 0; sk && i < m; i++) skipped += sk[i] != 0;
                if (sk) out_int("skipped_steps", skipped);
                free(sk);
            }
        }
        out_end();
        free(step);
    }
}

static int describe_h5(const char *file) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (f < 0) f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ap_fail("%s: not a readable HDF5 file", file);
    int rc = AP_OK;
    if (H5Lexists(f, "train", H5P_DEFAULT) > 0) describe_log(f, file);
    else if (H5Lexists(f, "lora", H5P_DEFAULT) > 0) describe_state(f, file);
    else rc = ap_fail("%s: HDF5 without /train (log.h5) or /lora (checkpoint state.h5)", file);
    H5Fclose(f);
    return rc;
}

/* ---- directories ------------------------------------------------------- */

static int first_file(char *out, size_t cap, const char *dir, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        snprintf(out, cap, "%s/%s", dir, names[i]);
        if (ap_is_file(out)) return 1;
    }
    return 0;
}

static const char *const k_model_files[] = {"diffusion_pytorch_model.safetensors",
                                            "diffusion_pytorch_model.bin", "model.safetensors",
                                            "pytorch_model.bin", NULL};
static const char *const k_lora_files[] = {"pytorch_lora_weights.safetensors",
                                           "pytorch_lora_weights.bin", NULL};

static int describe_component(const char *dir, const char *name) {
    char sub[4200], f[4400];
    snprintf(sub, sizeof sub, "%s/%s", dir, name);
    out_obj(name);
    snprintf(f, sizeof f, "%s/config.json", sub);
    if (!ap_is_file(f)) snprintf(f, sizeof f, "%s/scheduler_config.json", sub);
    ap_json *j = NULL;
    if (ap_is_file(f) && !ap_json_parse_file(&j, f)) {
        const ap_json *c = ap_json_get(j, "_class_name");
        if (!c) c = ap_json_get(j, "architectures");
        if (c && c->type == AP_JSON_ARR && c->len) c = &c->items[0];
        if (c && c->type == AP_JSON_STR) out_str("class", c->str);
        ap_json_free(j);
    }
    int rc = AP_OK;
    if (first_file(f, sizeof f, sub, k_model_files) || first_file(f, sizeof f, sub, k_lora_files))
        rc = describe_weights(f, 1);
    out_end();
    return rc;
}

static int describe_dir(const char *dir) {
    char f[4200];
    snprintf(f, sizeof f, "%s/model_index.json", dir);
    if (ap_is_file(f)) {
        out_str("path", dir);
        out_str("kind", "diffusers pipeline directory");
        ap_json *j = NULL;
        AP_TRY(ap_json_parse_file(&j, f));
        const ap_json *v = ap_json_get(j, "_diffusers_version");
        if (v && v->type == AP_JSON_STR) out_str("diffusers_version", v->str);
        out_obj("components");
        int rc = AP_OK;
        for (size_t i = 0; j->type == AP_JSON_OBJ && i < j->len && !rc; i++) {
            char sub[4400];
            snprintf(sub, sizeof sub, "%s/%s", dir, j->keys[i]);
            if (j->keys[i][0] != '_' && ap_is_dir(sub)) rc = describe_component(dir, j->keys[i]);
        }
        snprintf(f, sizeof f, "%s/lora", dir);
        if (!rc && ap_is_dir(f)) rc = describe_component(dir, "lora");
        out_end();
        ap_json_free(j);
        return rc;
    }
    snprintf(f, sizeof f, "%s/state.h5", dir);
    if (ap_is_file(f)) {
        out_str("path", dir);
        out_obj("state");
        int rc = describe_h5(f);
        out_end();
        static const char *const exports[] = {"pytorch_lora_weights.safetensors",
                                              "peft/pytorch_lora_weights.safetensors", NULL};
        out_obj("exports");
        for (int i = 0; exports[i] && !rc; i++) {
            snprintf(f, sizeof f, "%s/%s", dir, exports[i]);
            if (!ap_is_file(f)) continue;
            out_obj(exports[i]);
            rc = describe_weights(f, 1);
            out_end();
        }
        out_end();
        return rc;
    }
    snprintf(f, sizeof f, "%s/log.h5", dir);
    if (ap_is_file(f)) {
        out_str("path", dir);
        out_obj("log");
        int rc = describe_h5(f);
        out_end();
        return rc;
    }
    if (first_file(f, sizeof f, dir, k_model_files) || first_file(f, sizeof f, dir, k_lora_files)) {
        out_str("path", dir);
        return describe_weights(f, 0);
    }
    return ap_fail("%s: a directory with none of model_index.json, state.h5, log.h5, "
                   "diffusion_pytorch_model.*, pytorch_lora_weights.*", dir);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi inspect PATH [--json]\n"
            "\n"
            "Describes what PATH holds:\n"
            "  a diffusers pipeline directory (model_index.json): each component's class,\n"
            "      tensors, dtypes and parameter count;\n"
            "  a weights file (.safetensors, or a torch zip-pickle .bin/.pth/.pt/.ckpt) or a\n"
            "      component directory: tensors, dtypes, totals, key groups, the first tensors;\n"
            "  a LoRA in any layout (diffusers-attn-procs, peft, kohya): layout, rank,\n"
            "      matrices, alphas (docs/lora.md);\n"
            "  a checkpoint (checkpoint_<N>/ or its state.h5): step, epoch, seed, hashes,\n"
            "      LoRA size, the LoRA exports beside it;\n"
            "  a run directory or its log.h5: rows, steps, loss, reward_mean so far (first,\n"
            "      last, max) for training and evaluation (read while the run goes on).\n"
            "\n"
            "  --json   one JSON object instead of text (all tensors, all reward values)\n"
            "  --help   this help\n");
}

int ap_cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') return usage(stdout), 0;
        if (c == 'j') g_json = 1;
        else return fprintf(stderr, "alignprop-mpi inspect: see --help\n"), 2;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "alignprop-mpi inspect: expected one PATH (see --help)\n");
        return 2;
    }
    const char *p = argv[optind];
    if (!ap_path_exists(p)) {
        fprintf(stderr, "alignprop-mpi inspect: %s: no such file or directory\n", p);
        return 2;
    }
    char *buf = NULL;
    size_t len = 0;
    g_out = open_memstream(&buf, &len);
    if (!g_out) return fprintf(stderr, "alignprop-mpi inspect: out of memory\n"), 1;
    g_depth = 1, g_first[1] = 1, g_arr[1] = 0;
    if (g_json) fputc('{', g_out);
    int rc = ap_is_dir(p) ? describe_dir(p) : has_suffix(p, ".h5") ? describe_h5(p) : describe_weights(p, 0);
    if (g_json) fprintf(g_out, "}\n");
    fclose(g_out);
    if (!rc || !g_json) fwrite(buf, 1, len, stdout); /* JSON: all or nothing */
    free(buf);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "alignprop-mpi inspect: %s\n", ap_errmsg());
        return 1;
    }
    return 0;
}
