/* report_check.c: checks of `alignprop-mpi report` output, driven by
 * tests/cli/report.sh. Reads the run's files itself (HDF5 and the PNGs),
 * not through the report's reader (src/report/run_log.c):
 *
 *   report_check html REPORT.html RUN_DIR [min_train_rows]
 *       the page parses (every element closed in order, HTML void elements
 *       aside), loads nothing from elsewhere (no script, no http: / https: /
 *       protocol-relative src or href, no url()), has the train reward line
 *       with as many points as log.h5 has whole rows (at least
 *       min_train_rows), and for every evaluation of log.h5: a section whose
 *       captions give each image's prompt (equal to /eval/prompts) and reward
 *       (equal to /eval/rewards within 5e-6 relative: printed with %.6g)
 *       and whose images are the run's PNG files byte for byte (base64
 *       decoded); the config block equals the newest checkpoint's config
 *       attribute when there is a checkpoint.
 *   report_check png SCREENSHOT.png
 *       the screenshot shows the charts: at least 200 pixels of the train
 *       reward line's colour (#1f77b4) and 200 of the eval line's (#d62728),
 *       each channel within 24 (antialiasing); prints both counts.
 */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0;
__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_fail++;
}
__attribute__((format(printf, 1, 2))) static void ok(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  ok   ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[n] = '\0';
    if (len) *len = (size_t)n;
    return s;
}

/* ---- HTML structure ------------------------------------------------------ */

static int is_void(const char *t) {
    static const char *v[] = {"meta", "img", "br", "hr", "link", "input", "col", "area",
                              "base", "embed", "source", "track", "wbr", NULL};
    for (int i = 0; v[i]; i++)
        if (!strcmp(t, v[i])) return 1;
    return 0;
}

static void check_structure(const char *s) {
    char stack[256][32];
    int depth = 0, tags = 0, bad = 0;
    for (const char *p = s; (p = strchr(p, '<')) != NULL && !bad;) {
        if (!strncmp(p, "<!--", 4)) {
            const char *e = strstr(p, "-->");
            p = e ? e + 3 : p + 4;
            continue;
        }
        if (p[1] == '!') {
            p = strchr(p, '>');
            if (!p) break;
            continue;
        }
        int closing = p[1] == '/';
        const char *q = p + 1 + closing;
        char name[32];
        int n = 0;
        while (n < 31 && (q[n] == '-' || (q[n] >= 'a' && q[n] <= 'z') || (q[n] >= 'A' && q[n] <= 'Z') ||
                          (q[n] >= '0' && q[n] <= '9')))
            name[n] = q[n], n++;
        name[n] = '\0';
        const char *e = strchr(q, '>');
        if (!n || !e) {
            fail("a '<' that starts no tag near \"%.40s\"", p);
            bad = 1;
            break;
        }
        /* a '<' inside the tag would mean an unescaped attribute value */
        const char *lt = memchr(q, '<', (size_t)(e - q));
        if (lt) {
            fail("'<' inside the tag near \"%.40s\"", p);
            bad = 1;
            break;
        }
        tags++;
        int self = e[-1] == '/';
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name)) {
                printf("  FAIL </%s> closes <%s> (depth %d)\n", name, depth ? stack[depth - 1] : "nothing", depth);
                g_fail++;
                bad = 1;
                break;
            }
            depth--;
        } else if (!self && !is_void(name)) {
            if (depth == 256) break;
            snprintf(stack[depth++], sizeof stack[0], "%s", name);
            if (!strcmp(name, "style") || !strcmp(name, "title") || !strcmp(name, "pre")) {
                /* raw-ish text: skip to its end tag (pre holds escaped text only) */
                char end[40];
                snprintf(end, sizeof end, "</%s>", name);
                const char *x = strstr(e, end);
                if (!x) {
                    fail("<%s> never closed", name);
                    bad = 1;
                    break;
                }
                const char *inner = memchr(e + 1, '<', (size_t)(x - e - 1));
                if (inner && strcmp(name, "style")) {
                    fail("unescaped '<' inside <%s>", name);
                    bad = 1;
                }
                p = x;
                continue;
            }
        }
        p = e + 1;
    }
    if (!bad && depth != 0) fail("unclosed <%s> at the end (depth %d)", stack[depth - 1], depth);
    else if (!bad) ok("well-formed: %d tags, every element closed in order", tags);
}

static void check_offline(const char *s) {
    static const char *bad[] = {"<script", "src=\"http", "href=\"http", "src=\"//", "href=\"//",
                                "url(", "<link", "<iframe", NULL};
    int found = 0;
    for (int i = 0; bad[i]; i++)
        if (strstr(s, bad[i])) fail("the page contains %s", bad[i]), found = 1;
    if (!found) ok("self-contained: no script, no external src/href/url()");
}

/* ---- HDF5 ---------------------------------------------------------------- */

static hid_t open_ro(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    return f >= 0 ? f : H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
}

static int64_t complete_rows(hid_t f, const char *group) {
    char name[64];
    snprintf(name, sizeof name, "/%s/complete_rows", group);
    int64_t n = -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        if (H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &n) < 0) n = -1;
        H5Dclose(d);
    }
    return n;
}

/* dataset name, first rows x width elements as mtype into out */
static int read_2d(hid_t f, const char *name, hid_t mtype, int64_t rows, int *width, void **out, size_t el) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hsize_t dims[2] = {0, 1};
    int nd = H5Sget_simple_extent_dims(fs, dims, NULL);
    *width = nd == 2 ? (int)dims[1] : 1;
    hsize_t start[2] = {0, 0}, count[2] = {(hsize_t)rows, (hsize_t)*width};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(nd, count, NULL);
    *out = calloc((size_t)(rows ? rows : 1) * (size_t)*width, el);
    herr_t st = H5Dread(d, mtype, ms, fs, H5P_DEFAULT, *out);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
    return st < 0 ? -1 : 0;
}

static char *config_attr(const char *state) {
    hid_t f = open_ro(state);
    if (f < 0) return NULL;
    char *out = NULL, *s = NULL;
    hid_t a = H5Aopen(f, "config", H5P_DEFAULT);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5T_CSET_UTF8);
    if (a >= 0 && H5Aread(a, mt, &s) >= 0 && s) {
        out = strdup(s);
        H5free_memory(s);
    }
    H5Tclose(mt);
    if (a >= 0) H5Aclose(a);
    H5Fclose(f);
    return out;
}

/* ---- text helpers -------------------------------------------------------- */

/* Undo the report's escapes (&amp; &lt; &gt; &quot; &#39; &#177;) in place. */
static void unescape(char *s) {
    static const struct { const char *e; const char *c; } k[] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&#177;", "\xc2\xb1"}};
    char *o = s;
    for (const char *p = s; *p;) {
        int hit = 0;
        for (size_t i = 0; i < sizeof k / sizeof k[0] && !hit; i++) {
            size_t l = strlen(k[i].e);
            if (!strncmp(p, k[i].e, l)) {
                size_t m = strlen(k[i].c);
                memmove(o, k[i].c, m);
                o += m, p += l, hit = 1;
            }
        }
        if (!hit) *o++ = *p++;
    }
    *o = '\0';
}

/* Copy the text between after and the next until (from *p on) into a new
 * string; advance *p past it. NULL when not found. */
static char *between(const char **p, const char *after, const char *until, const char *limit) {
    const char *a = strstr(*p, after);
    if (!a || (limit && a > limit)) return NULL;
    a += strlen(after);
    const char *b = strstr(a, until);
    if (!b) return NULL;
    char *s = malloc((size_t)(b - a) + 1);
    memcpy(s, a, (size_t)(b - a));
    s[b - a] = '\0';
    *p = b + strlen(until);
    return s;
}

static unsigned char *unbase64(const char *s, size_t *n) {
    size_t l = strlen(s);
    unsigned char *o = malloc(l / 4 * 3 + 3);
    size_t k = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < l && s[i] != '='; i++) {
        const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *c = strchr(t, s[i]);
        if (!c || !s[i]) {
            free(o);
            return NULL;
        }
        v = v << 6 | (unsigned)(c - t);
        bits += 6;
        if (bits >= 8) bits -= 8, o[k++] = (unsigned char)(v >> bits);
    }
    *n = k;
    return o;
}

static int find_png(const char *dir, int k, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char pre[16];
    snprintf(pre, sizeof pre, "%03d_", k);
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d)))
        if (!strncmp(de->d_name, pre, 4) && strstr(de->d_name, ".png"))
            found = snprintf(out, cap, "%s/%s", dir, de->d_name) < (int)cap;
    closedir(d);
    return found;
}

/* ---- the page against the run ------------------------------------------- */

static int html_main(const char *report, const char *run, long min_rows) {
    char *s = slurp(report, NULL);
    if (!s) {
        printf("  FAIL cannot read %s\n", report);
        return 1;
    }
    printf("report_check html %s against %s:\n", report, run);
    check_structure(s);
    check_offline(s);
    char path[4300];
    snprintf(path, sizeof path, "%s/log.h5", run);
    hid_t f = open_ro(path);
    if (f < 0) {
        printf("  FAIL cannot open %s\n", path);
        return 1;
    }
    int64_t nt = complete_rows(f, "train"), ne = complete_rows(f, "eval");
    /* the train reward line: one point per whole row of log.h5 (a run still
     * going may have written more rows since the page was made) */
    const char *tag = "data-name=\"train reward mean\" data-points=\"";
    const char *t = strstr(s, tag);
    long pts = t ? strtol(t + strlen(tag), NULL, 10) : -1;
    if (pts >= min_rows && pts >= 1 && pts <= nt)
        ok("train reward line: %ld points (log.h5 has %lld whole rows now)", pts, (long long)nt);
    else
        printf("  FAIL train reward line: %ld points, log.h5 has %lld whole rows, at least %ld expected\n",
               pts, (long long)nt, min_rows), g_fail++;
    int svgs = 0;
    for (const char *p = s; (p = strstr(p, "<svg ")); p++) svgs++;
    if (svgs == 5) ok("%d SVG charts (reward, loss, grad norm, lr, samples/s)", svgs);
    else fail("%d SVG charts, expected 5", svgs);
    /* captions and images of every evaluation on the page */
    int width = 0, wp = 0;
    float *rewards = NULL;
    char *prompts = NULL;
    int64_t *steps = NULL;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 256);
    H5Tset_strpad(st, H5T_STR_NULLTERM);
    H5Tset_cset(st, H5T_CSET_UTF8);
    if (ne < 1 || read_2d(f, "/eval/rewards", H5T_NATIVE_FLOAT, ne, &width, (void **)&rewards, sizeof(float)) ||
        read_2d(f, "/eval/prompts", st, ne, &wp, (void **)&prompts, 256) ||
        read_2d(f, "/eval/step", H5T_NATIVE_INT64, ne, &(int){0}, (void **)&steps, sizeof(int64_t))) {
        printf("  FAIL %s: cannot read /eval (%lld rows)\n", path, (long long)ne);
        g_fail++;
        ne = 0;
    }
    H5Tclose(st);
    H5Fclose(f);
    int captions = 0, images = 0, sections = 0;
    for (int64_t i = 0; i < ne; i++) {
        char id[64];
        snprintf(id, sizeof id, "id=\"eval-step-%lld\"", (long long)steps[i]);
        const char *sec = strstr(s, id);
        if (!sec) continue; /* older than --last-evals */
        sections++;
        const char *end = strstr(sec, "</section>");
        const char *p = sec;
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/eval_vis/step_%06lld", run, (long long)steps[i]);
        for (int k = 0; k < width; k++) {
            const char *fig = strstr(p, "<figure class=\"sample\">");
            if (!fig || fig > end) {
                printf("  FAIL step %lld: image %d: no <figure>\n", (long long)steps[i], k), g_fail++;
                break;
            }
            p = fig;
            char *b64 = between(&p, "src=\"data:image/png;base64,", "\"", end);
            char *prompt = between(&p, "<span class=\"prompt\">", "</span>", end);
            char *rew = between(&p, "<span class=\"reward\">", "</span>", end);
            const char *want = prompts + ((size_t)i * (size_t)width + (size_t)k) * 256;
            double wr = rewards[(size_t)i * (size_t)width + (size_t)k];
            if (prompt) unescape(prompt);
            if (prompt && !strcmp(prompt, want) && rew && fabs(strtod(rew, NULL) - wr) <= 5e-6 * fmax(1.0, fabs(wr)))
                captions++;
            else
                printf("  FAIL step %lld image %d: caption \"%s\" reward %s, log.h5: \"%s\" %.9g\n",
                       (long long)steps[i], k, prompt ? prompt : "(none)", rew ? rew : "(none)", want, wr),
                    g_fail++;
            char png[4500];
            size_t n = 0, m = 0;
            unsigned char *img = b64 ? unbase64(b64, &n) : NULL;
            char *file = find_png(dir, k, png, sizeof png) ? slurp(png, &m) : NULL;
            if (img && file && n == m && !memcmp(img, file, n))
                images++;
            else
                printf("  FAIL step %lld image %d: inlined PNG (%zu bytes) differs from %s (%zu bytes)\n",
                       (long long)steps[i], k, n, file ? png : "(no file)", m),
                    g_fail++;
            free(img), free(file), free(b64), free(prompt), free(rew);
        }
    }
    if (sections > 0)
        printf("  ok   %d evaluation sections: %d captions equal log.h5's prompt and reward (5e-6 rel), "
               "%d images equal the run's PNG files byte for byte\n", sections, captions, images);
    else
        printf("  FAIL no evaluation section on the page (log.h5 has %lld evaluations)\n", (long long)ne), g_fail++;
    /* the config: the newest checkpoint's, unless log.h5 carries one */
    DIR *d;
    snprintf(path, sizeof path, "%s/checkpoints", run);
    long best = -1;
    if ((d = opendir(path))) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (!strncmp(de->d_name, "checkpoint_", 11) && !strchr(de->d_name + 11, '.')) {
                long v = strtol(de->d_name + 11, NULL, 10);
                if (v > best) best = v;
            }
        closedir(d);
    }
    const char *pp = s;
    char *cfg = between(&pp, "<pre class=\"config\">", "</pre>", NULL);
    if (cfg) unescape(cfg);
    if (best >= 0 && !strstr(s, "log.h5 (attribute config)")) {
        snprintf(path, sizeof path, "%s/checkpoints/checkpoint_%ld/state.h5", run, best);
        char *want = config_attr(path);
        if (cfg && want && !strcmp(cfg, want)) ok("config block == %s attribute config", path);
        else printf("  FAIL config block differs from %s's (%s)\n", path, want ? "present" : "unreadable"), g_fail++;
        free(want);
    } else {
        printf("  note config: %s\n", cfg ? "from log.h5" : "no checkpoint yet");
    }
    free(cfg);
    free(rewards), free(prompts), free(steps), free(s);
    return g_fail ? 1 : 0;
}

/* ---- the screenshot ------------------------------------------------------ */

static int png_main(const char *path) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        printf("  FAIL %s: %s\n", path, im.message);
        return 1;
    }
    im.format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(im));
    if (!px || !png_image_finish_read(&im, NULL, px, 0, NULL)) {
        printf("  FAIL %s: %s\n", path, im.message);
        return 1;
    }
    static const struct { const char *name; int r, g, b; } k[2] = {{"train reward #1f77b4", 0x1f, 0x77, 0xb4},
                                                                  {"eval reward #d62728", 0xd6, 0x27, 0x28}};
    long count[2] = {0, 0}, nonwhite = 0;
    for (size_t i = 0; i < (size_t)im.width * im.height; i++) {
        const unsigned char *p = px + 3 * i;
        nonwhite += p[0] < 245 || p[1] < 245 || p[2] < 245;
        for (int c = 0; c < 2; c++)
            count[c] += abs(p[0] - k[c].r) <= 24 && abs(p[1] - k[c].g) <= 24 && abs(p[2] - k[c].b) <= 24;
    }
    printf("report_check png %s: %ux%u, %ld non-white pixels; %s: %ld pixels, %s: %ld pixels (need 200 each)\n",
           path, im.width, im.height, nonwhite, k[0].name, count[0], k[1].name, count[1]);
    free(px);
    return count[0] >= 200 && count[1] >= 200 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "html")) return html_main(argv[2], argv[3], argc > 4 ? atol(argv[4]) : 1);
    if (argc == 3 && !strcmp(argv[1], "png")) return png_main(argv[2]);
    fprintf(stderr, "usage: report_check html REPORT.html RUN_DIR [min_train_rows] | png SCREENSHOT.png\n");
    return 2;
}
