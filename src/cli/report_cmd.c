/* report_cmd.c: `alignprop-mpi report RUN_DIR [-o report.html]`: one
 * self-contained HTML page about a run (also one still going): train and
 * eval reward with a std band, loss, grad norm, lr, samples/s as inline SVG
 * charts, each evaluation's images (inlined PNG) captioned with prompt and
 * reward, the resolved config and the batch arithmetic. No script, no
 * network. Layout and sources: docs/report.md. */
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/err.h"
#include "core/path.h"
#include "io/atomic.h"
#include "report/run_log.h"
#include "report/strbuf.h"
#include "report/svg_chart.h"
#include "train/checkpoint.h"
#include "train/config.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi report RUN_DIR [-o FILE] [--last-evals N]\n"
            "\n"
            "Writes one self-contained HTML page about a training or evaluation run\n"
            "(RUN_DIR = <logdir>/<run_name>, holding log.h5 or eval.h5): reward (train and\n"
            "eval, mean with a std band), loss, grad norm, learning rate and samples/s per\n"
            "step as inline SVG charts; the images of the newest evaluations, each captioned\n"
            "with its prompt and reward; the resolved config and the batch arithmetic.\n"
            "No JavaScript, nothing loaded from elsewhere. Works while the run is going\n"
            "(the log is read as an HDF5 SWMR reader; rows still being written are left out).\n"
            "\n"
            "  -o, --output FILE   where to write (default RUN_DIR/report.html); written\n"
            "                      under a temporary name and renamed when complete\n"
            "  --last-evals N      evaluations whose images are shown, newest first, 0..100000\n"
            "                      (default 8; the charts show every evaluation)\n"
            "  -h, --help          this help\n"
            "\n"
            "docs/report.md describes the page.\n");
}

/* ---- the run directory ------------------------------------------------- */

typedef struct run_info {
    const char *dir;
    ap_log_train train;
    ap_log_eval eval;
    int have_log, have_eval_h5;
    char *config;            /* resolved config YAML, or NULL */
    char config_from[4400];  /* the file it came from */
    char done[256];          /* content of RUN_DIR/done, "" when absent */
    char *world_attr;        /* log.h5 attribute "world" (ranks), when recorded */
} run_info;

static int read_small_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return AP_ERR;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) out[--n] = '\0';
    return AP_OK;
}

/* The config: log.h5's "config" attribute when the log has one, else the
 * newest complete checkpoint's state.h5, else eval.h5's. */
static int find_config(run_info *r) {
    char path[4300];
    snprintf(path, sizeof path, "%s/log.h5", r->dir);
    if (r->have_log) {
        AP_TRY(ap_h5_text_attr(path, "config", &r->config));
        if (r->config) {
            snprintf(r->config_from, sizeof r->config_from, "%s (attribute config)", path);
            return AP_OK;
        }
    }
    char ck[4200];
    int found = ap_ckpt_latest(r->dir, ck, sizeof ck);
    if (found < 0) ap_err_clear(); /* no checkpoints/ yet: not an error for a report */
    if (found > 0) {
        snprintf(path, sizeof path, "%s/state.h5", ck);
        AP_TRY(ap_h5_text_attr(path, "config", &r->config));
        if (r->config) {
            snprintf(r->config_from, sizeof r->config_from, "%s (attribute config)", path);
            return AP_OK;
        }
    }
    snprintf(path, sizeof path, "%s/eval.h5", r->dir);
    if (r->have_eval_h5) {
        AP_TRY(ap_h5_text_attr(path, "config", &r->config));
        if (r->config) snprintf(r->config_from, sizeof r->config_from, "%s (attribute config)", path);
    }
    return AP_OK;
}

static int load_run(run_info *r) {
    char path[4300];
    snprintf(path, sizeof path, "%s/log.h5", r->dir);
    r->have_log = ap_is_file(path);
    if (r->have_log) {
        AP_TRY(ap_log_read(path, &r->train, &r->eval));
        if (ap_h5_text_attr(path, "world", &r->world_attr)) ap_err_clear();
    }
    snprintf(path, sizeof path, "%s/eval.h5", r->dir);
    r->have_eval_h5 = ap_is_file(path);
    if (!r->have_log && r->have_eval_h5) {
        ap_log_train unused;
        AP_TRY(ap_log_read(path, &unused, &r->eval));
        ap_log_train_free(&unused);
    }
    if (!r->have_log && !r->have_eval_h5)
        return ap_fail("%s: not a run directory: expected log.h5 (a training run) or eval.h5 (an "
                       "evaluation), found neither", r->dir);
    snprintf(path, sizeof path, "%s/done", r->dir);
    if (read_small_file(path, r->done, sizeof r->done)) r->done[0] = '\0';
    return find_config(r);
}

static void free_run(run_info *r) {
    ap_log_train_free(&r->train);
    ap_log_eval_free(&r->eval);
    free(r->config);
    free(r->world_attr);
}

/* ---- page parts -------------------------------------------------------- */

static const char *k_style =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}"
    "figure.chart{margin:0;border:1px solid #ddd;padding:4px}"
    "figure.chart figcaption{text-align:center;font-size:13px}"
    ".grid{display:flex;flex-wrap:wrap;gap:10px}"
    "figure.sample{margin:0;width:200px}figure.sample img{width:200px;image-rendering:pixelated;"
    "border:1px solid #ccc;background:#eee;min-height:40px}"
    "figure.sample figcaption{font-size:12px;word-wrap:break-word}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}"
    ".status{font-weight:bold}";

static double last_finite(const double *v, int64_t n) {
    for (int64_t i = n - 1; i >= 0; i--)
        if (isfinite(v[i])) return v[i];
    return NAN;
}

static void summary(ap_sb *b, const run_info *r) {
    const ap_log_train *t = &r->train;
    ap_sb_printf(b, "<table class=\"summary\">\n<tr><th>state</th><td class=\"status\">");
    if (r->done[0]) {
        ap_sb_printf(b, "finished (");
        ap_sb_html(b, r->done);
        ap_sb_printf(b, ")");
    } else if (r->have_log) {
        ap_sb_printf(b, "running or stopped (no <code>done</code> file): the page shows the rows "
                        "written so far");
    } else {
        ap_sb_printf(b, "evaluation");
    }
    ap_sb_printf(b, "</td></tr>\n");
    if (r->have_log) {
        ap_sb_printf(b, "<tr><th>optimizer steps logged</th><td id=\"train-rows\">%lld</td></tr>\n",
                     (long long)t->n);
        if (t->n > 0) {
            double st = 0, sps = 0;
            int64_t k = 0;
            for (int64_t i = 0; i < t->n; i++)
                if (isfinite(t->step_time[i]) && isfinite(t->samples_per_s[i]))
                    st += t->step_time[i], sps += t->samples_per_s[i], k++;
            ap_sb_printf(b, "<tr><th>last step</th><td>%lld</td></tr>\n"
                            "<tr><th>last train reward mean</th><td>%.6g</td></tr>\n",
                         (long long)t->step[t->n - 1], last_finite(t->reward_mean, t->n));
            if (k)
                ap_sb_printf(b, "<tr><th>mean step time</th><td>%.3f s (%.3g samples/s)</td></tr>\n",
                             st / (double)k, sps / (double)k);
        }
    }
    ap_sb_printf(b, "<tr><th>evaluations logged</th><td id=\"eval-rows\">%lld</td></tr>\n",
                 (long long)r->eval.n);
    if (r->eval.n > 0)
        ap_sb_printf(b, "<tr><th>last eval reward mean</th><td>%.6g &#177; %.3g (step %lld)</td></tr>\n",
                     r->eval.reward_mean[r->eval.n - 1], r->eval.reward_std[r->eval.n - 1],
                     (long long)r->eval.step[r->eval.n - 1]);
    ap_sb_printf(b, "</table>\n");
}

static void charts(ap_sb *b, const run_info *r) {
    const ap_log_train *t = &r->train;
    const ap_log_eval *e = &r->eval;
    const int n = (int)t->n, ne = (int)e->n;
    ap_sb_printf(b, "<h2>Training curves</h2>\n<div class=\"charts\">\n");
    ap_series rw[2];
    int k = 0;
    if (n > 0)
        rw[k++] = (ap_series){"train reward mean", "#1f77b4", t->step, t->reward_mean, t->reward_std, n};
    if (ne > 0)
        rw[k++] = (ap_series){"eval reward mean", "#d62728", e->step, e->reward_mean, e->reward_std, ne};
    ap_svg_chart(b, "reward (mean, band: std over the batch / the evaluation images)",
                 "optimizer step", rw, k);
    if (n > 0) {
        ap_series s = {"loss", "#2ca02c", t->step, t->loss, NULL, n};
        ap_svg_chart(b, "loss", "optimizer step", &s, 1);
        s = (ap_series){"grad norm (before clipping)", "#9467bd", t->step, t->grad_norm, NULL, n};
        ap_svg_chart(b, "gradient norm", "optimizer step", &s, 1);
        s = (ap_series){"learning rate", "#8c564b", t->step, t->lr, NULL, n};
        ap_svg_chart(b, "learning rate", "optimizer step", &s, 1);
        s = (ap_series){"samples/s", "#ff7f0e", t->step, t->samples_per_s, NULL, n};
        ap_svg_chart(b, "throughput (samples per second, all ranks)", "optimizer step", &s, 1);
    }
    ap_sb_printf(b, "</div>\n");
}

/* The image of evaluation sample k in dir: "<k:03d>_*.png" (src/train/evaluate.c). */
static int find_image(const char *dir, int k, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char pre[16];
    snprintf(pre, sizeof pre, "%03d_", k);
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (!strncmp(de->d_name, pre, 4) && l > 8 && !strcmp(de->d_name + l - 4, ".png"))
            found = snprintf(out, cap, "%s/%s", dir, de->d_name) < (int)cap;
    }
    closedir(d);
    return found;
}

static void inline_png(ap_sb *b, const char *path, const char *alt) {
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    long len = -1;
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET)) {
        data = malloc((size_t)len);
        if (data && fread(data, 1, (size_t)len, f) != (size_t)len) len = -1;
    }
    if (f) fclose(f);
    if (data && len > 0) {
        ap_sb_printf(b, "<img alt=\"");
        ap_sb_html(b, alt);
        ap_sb_printf(b, "\" src=\"data:image/png;base64,");
        ap_sb_base64(b, data, (size_t)len);
        ap_sb_printf(b, "\">");
    } else {
        ap_sb_printf(b, "<p class=\"missing\">image not readable: ");
        ap_sb_html(b, path);
        ap_sb_printf(b, "</p>");
    }
    free(data);
}

static void evaluations(ap_sb *b, const run_info *r, int last) {
    const ap_log_eval *e = &r->eval;
    ap_sb_printf(b, "<h2>Evaluations</h2>\n");
    if (e->n == 0) {
        ap_sb_printf(b, "<p>no evaluation logged yet</p>\n");
        return;
    }
    if (e->n > last)
        ap_sb_printf(b, "<p>images of the newest %d of %lld evaluations (--last-evals)</p>\n", last,
                     (long long)e->n);
    for (int64_t i = e->n - 1; i >= 0 && i >= e->n - last; i--) {
        char dir[4300];
        long long step = (long long)e->step[i];
        snprintf(dir, sizeof dir, "%s/eval_vis/step_%06lld", r->dir, step);
        if (!ap_is_dir(dir) && !r->have_log) snprintf(dir, sizeof dir, "%s/eval_vis", r->dir);
        ap_sb_printf(b, "<section class=\"eval\" id=\"eval-step-%lld\">\n<h3>step %lld: reward "
                        "mean %.6g &#177; %.3g</h3>\n<div class=\"grid\">\n", step, step,
                     e->reward_mean[i], e->reward_std[i]);
        for (int k = 0; k < e->width; k++) {
            const char *prompt = e->prompts + ((size_t)i * (size_t)e->width + (size_t)k) * AP_LOG_STR;
            float rew = e->rewards[(size_t)i * (size_t)e->width + (size_t)k];
            char img[4400];
            ap_sb_printf(b, "<figure class=\"sample\">");
            if (find_image(dir, k, img, sizeof img)) {
                inline_png(b, img, prompt);
            } else {
                ap_sb_printf(b, "<p class=\"missing\">no image %03d_*.png in ", k);
                ap_sb_html(b, dir);
                ap_sb_printf(b, "</p>");
            }
            ap_sb_printf(b, "<figcaption><span class=\"prompt\">");
            ap_sb_html(b, prompt);
            ap_sb_printf(b, "</span><br>reward <span class=\"reward\">%.6g</span></figcaption>"
                            "</figure>\n", (double)rew);
        }
        ap_sb_printf(b, "</div>\n</section>\n");
    }
}

/* The batch arithmetic of the config (src/train/config.h ap_batch_plan),
 * for the recorded rank count when the log has one, else for 1, 2, 4, 8
 * ranks (the log does not say how many ran). */
static void batch_arithmetic(ap_sb *b, const run_info *r) {
    ap_sb_printf(b, "<h2>Batch arithmetic</h2>\n");
    char tmpl[] = "/tmp/alignprop-report-config-XXXXXX";
    int fd = mkstemp(tmpl);
    ap_train_config c;
    int loaded = 0;
    if (fd >= 0) {
        size_t len = strlen(r->config);
        int wrote = ap_write_all(fd, r->config, len) == 0;
        close(fd);
        loaded = wrote && ap_config_load(&c, tmpl, NULL, 0) == 0;
        unlink(tmpl);
    }
    if (!loaded) {
        ap_sb_printf(b, "<p>the config could not be read back: ");
        ap_sb_html(b, fd < 0 ? "cannot make a temporary file in /tmp" : ap_errmsg());
        ap_sb_printf(b, "</p>\n");
        ap_err_clear();
        return;
    }
    int world = r->world_attr ? atoi(r->world_attr) : 0;
    ap_sb_printf(b, "<table class=\"batch\">\n"
                    "<tr><th>global batch (train.total_batch_size)</th><td>%d samples per optimizer step</td></tr>\n"
                    "<tr><th>samples per epoch</th><td>%d</td></tr>\n"
                    "<tr><th>optimizer steps per epoch</th><td>%d (x %d epochs = %lld steps)</td></tr>\n"
                    "<tr><th>per_gpu_capacity</th><td>%d</td></tr>\n</table>\n",
                 c.total_batch_size, c.total_samples_per_epoch,
                 c.total_samples_per_epoch / c.total_batch_size, c.num_epochs,
                 (long long)(c.total_samples_per_epoch / c.total_batch_size) * c.num_epochs,
                 c.per_gpu_capacity);
    ap_sb_printf(b, "<p>%s</p>\n<table class=\"ranks\"><tr><th>ranks</th><th>micro-batches per rank "
                    "per step</th><th>samples per step, rank by rank</th></tr>\n",
                 world > 0 ? "as run:" : "the log does not record how many ranks ran; with the "
                             "config's capacity on every rank:");
    const int worlds[4] = {1, 2, 4, 8};
    for (int w = 0; w < (world > 0 ? 1 : 4); w++) {
        int ranks = world > 0 ? world : worlds[w];
        int *cap = malloc(sizeof *cap * (size_t)ranks);
        ap_batch_plan p;
        if (!cap) break;
        for (int q = 0; q < ranks; q++) cap[q] = c.per_gpu_capacity;
        if (ap_batch_plan_make(&p, &c, ranks, cap) == 0) {
            ap_sb_printf(b, "<tr><td>%d</td><td>%d</td><td>", ranks, p.micro_batches);
            for (int q = 0; q < ranks; q++) ap_sb_printf(b, "%s%d", q ? ", " : "", p.share[q]);
            ap_sb_printf(b, "</td></tr>\n");
            ap_batch_plan_free(&p);
        } else {
            ap_sb_printf(b, "<tr><td>%d</td><td colspan=\"2\">", ranks);
            ap_sb_html(b, ap_errmsg());
            ap_sb_printf(b, "</td></tr>\n");
            ap_err_clear();
        }
        free(cap);
    }
    ap_sb_printf(b, "</table>\n");
    ap_config_free(&c);
}

static void config_section(ap_sb *b, const run_info *r) {
    ap_sb_printf(b, "<h2>Config</h2>\n");
    if (!r->config) {
        ap_sb_printf(b, "<p>not recorded (yet): no <code>config</code> attribute in log.h5 or "
                        "eval.h5, and no complete checkpoint</p>\n");
        return;
    }
    ap_sb_printf(b, "<p>from ");
    ap_sb_html(b, r->config_from);
    ap_sb_printf(b, "</p>\n<pre class=\"config\">");
    ap_sb_html(b, r->config);
    ap_sb_printf(b, "</pre>\n");
    batch_arithmetic(b, r);
}

static void page(ap_sb *b, const run_info *r, int last) {
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ap_sb_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<title>alignprop-mpi report: ");
    ap_sb_html(b, r->dir);
    ap_sb_printf(b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>alignprop-mpi run ", k_style);
    ap_sb_html(b, r->dir);
    ap_sb_printf(b, "</h1>\n<p>report written %s</p>\n", when);
    summary(b, r);
    charts(b, r);
    evaluations(b, r, last);
    config_section(b, r);
    ap_sb_printf(b, "</body>\n</html>\n");
}

int ap_cmd_report(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"last-evals", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    int last = 8, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'l': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || v < 0 || v > 100000) {
                fprintf(stderr, "alignprop-mpi report: --last-evals: expected an integer in "
                        "0..100000, found \"%s\"\n", optarg);
                return EXIT_USAGE;
            }
            last = (int)v;
            break;
        }
        case 'h': usage(stdout); return EXIT_OK;
        default: fprintf(stderr, "(alignprop-mpi report --help lists the options)\n"); return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "alignprop-mpi report: expected one RUN_DIR, found %d arguments\n"
                "(alignprop-mpi report --help lists the options)\n", argc - optind);
        return EXIT_USAGE;
    }
    run_info r = {.dir = argv[optind]};
    if (!ap_is_dir(r.dir)) {
        fprintf(stderr, "alignprop-mpi report: %s: not a directory (expected a run directory "
                "<logdir>/<run_name>)\n", r.dir);
        return EXIT_USAGE;
    }
    char def[4300];
    if (!out) {
        snprintf(def, sizeof def, "%s/report.html", r.dir);
        out = def;
    }
    int code = EXIT_OK;
    ap_sb b = {0};
    if (load_run(&r)) {
        fprintf(stderr, "alignprop-mpi report: %s\n", ap_errmsg());
        code = EXIT_FAIL;
    } else {
        page(&b, &r, last);
        if (!ap_sb_ok(&b) || ap_write_file_atomic(out, b.s, b.len)) {
            fprintf(stderr, "alignprop-mpi report: %s: %s\n", out, ap_errmsg());
            code = EXIT_FAIL;
        } else {
            printf("report: %s (%lld steps, %lld evaluations%s)\n", out, (long long)r.train.n,
                   (long long)r.eval.n, r.done[0] ? ", finished" : r.have_log ? ", no done file yet" : "");
        }
    }
    ap_sb_free(&b);
    free_run(&r);
    return code;
}
