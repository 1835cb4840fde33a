/* test_png.c: float -> byte conversion against diffusers/numpy
 * (tools/fixtures/io_png.py), PNG round trip read back with libpng, atomic
 * replacement, and errors that name the path. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/png.h"
#include "io/safetensors.h"
#include "testutil.h"

static char g_dir[256];

static void test_conversion(void) {
    printf("conversion vs diffusers 0.17.1 postprocess / AlignProp main.py:\n");
    ap_st_file *f = tu_fixture_open("io_png");
    if (!f) return;
    ap_tensor x, r, t, nt;
    tu_fixture(f, "img.in", &x);
    tu_fixture(f, "img.round", &r);
    tu_fixture(f, "img.trunc", &t);
    tu_fixture(f, "img.ties", &nt);
    int H = (int)x.shape[1], W = (int)x.shape[2];
    int64_t n = (int64_t)H * W * 3;
    uint8_t *b = malloc((size_t)n);
    float *bf = tu_alloc(n);
    ap_png_to_rgb8(b, x.data, H, W, AP_PNG_ROUND);
    for (int64_t k = 0; k < n; k++) bf[k] = b[k];
    char what[128];
    snprintf(what, sizeof what,
             "round (numpy .round(), %d exact .5 ties) (%d, %d, 3) bytes exact", (int)nt.data[0],
             H, W);
    tu_compare(what, bf, r.data, n, 0, 0);
    ap_png_to_rgb8(b, x.data, H, W, AP_PNG_TRUNC);
    for (int64_t k = 0; k < n; k++) bf[k] = b[k];
    tu_compare("trunc (astype(np.uint8)) bytes exact", bf, t.data, n, 0, 0);
    float odd[3] = {NAN, 5.0f, -5.0f};
    uint8_t ob[3];
    ap_png_to_rgb8(ob, odd, 1, 1, AP_PNG_ROUND);
    tu_check(ob[0] == 0 && ob[1] == 255 && ob[2] == 0, "NaN -> 0, 5 -> 255, -5 -> 0 (got %d %d %d)",
             ob[0], ob[1], ob[2]);
    free(b), free(bf), free(x.data), free(r.data), free(t.data), free(nt.data);
    ap_st_close(f);
}

/* Read an 8-bit RGB PNG with libpng's simplified API; NULL on failure. */
static uint8_t *read_png(const char *path, int *H, int *W) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        printf("    read %s: %s\n", path, img.message);
        return NULL;
    }
    int ok = (img.format & PNG_FORMAT_FLAG_COLOR) && !(img.format & PNG_FORMAT_FLAG_ALPHA);
    img.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!ok || !buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        printf("    read %s: %s\n", path, ok ? img.message : "not an RGB image");
        png_image_free(&img);
        free(buf);
        return NULL;
    }
    *H = (int)img.height, *W = (int)img.width;
    return buf;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void test_roundtrip(void) {
    printf("write and read back with libpng:\n");
    /* Gradient: R along x, G along y, B a diagonal; x = 2k/255 - 1 maps back
     * to byte k exactly (k = 0..255). */
    enum { H = 37, W = 61 };
    float *chw = tu_alloc(3 * H * W);
    uint8_t want[H * W * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int k[3] = {x * 255 / (W - 1), y * 255 / (H - 1), (x * 7 + y * 11) % 256};
            for (int c = 0; c < 3; c++) {
                chw[(c * H + y) * W + x] = 2.0f * (float)k[c] / 255.0f - 1.0f;
                want[(y * W + x) * 3 + c] = (uint8_t)k[c];
            }
        }
    char path[512];
    snprintf(path, sizeof path, "%s/grad.png", g_dir);
    int rc = ap_png_write_rgb(path, chw, H, W);
    tu_check(rc == 0, "write %dx%d gradient (%s)", H, W, rc ? ap_errmsg() : "ok");
    int h = 0, w = 0;
    uint8_t *got = read_png(path, &h, &w);
    int same = got && h == H && w == W && !memcmp(got, want, sizeof want);
    int bad = 0;
    for (int k = 0; got && h == H && w == W && k < H * W * 3; k++) bad += got[k] != want[k];
    tu_check(same, "read back: %dx%d RGB, %d of %d bytes differ (expected 0)", h, w, bad,
             H * W * 3);
    free(got);

    /* Replacing an existing file: new content, no temporary left behind. */
    for (int k = 0; k < 3 * H * W; k++) chw[k] = -chw[k];
    rc = ap_png_write_rgb(path, chw, H, W);
    got = read_png(path, &h, &w);
    same = rc == 0 && got && got[0] == 255 - want[0] && got[3 * W * H - 1] == 255 - want[3 * W * H - 1];
    tu_check(same, "overwrite replaces the image (first byte %d, expected %d)", got ? got[0] : -1,
             255 - want[0]);
    tu_check(count_entries(g_dir) == 1, "directory holds only grad.png (%d entries)",
             count_entries(g_dir));
    struct stat st;
    mode_t um = umask(022);
    umask(um);
    int st_ok = stat(path, &st) == 0;
    tu_check(st_ok && (st.st_mode & 0777) == (0666 & ~um),
             "file mode %03o = 0666 minus umask %03o", (unsigned)(st.st_mode & 0777),
             (unsigned)um);
    free(got);
    free(chw);
}

static void test_errors(void) {
    printf("errors name the path:\n");
    float px[3] = {0, 0, 0};
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/out.png", g_dir);
    tu_expect_error("missing directory", ap_png_write_rgb(path, px, 1, 1),
                    "no/such/dir/out.png", "No such file or directory", NULL);
    snprintf(path, sizeof path, "%s/file", g_dir);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/file/out.png", g_dir);
    tu_expect_error("parent is a file", ap_png_write_rgb(path, px, 1, 1), "file/out.png",
                    "Not a directory", NULL);
    unlink(path);
    tu_expect_error("size (0, 4)", ap_png_write_rgb("x.png", px, 0, 4), "x.png", "(0, 4)", NULL);
    /* A write failure inside libpng or at flush (file size limit: EFBIG):
     * the error names the path, the old file stays, no temporary is left. */
    enum { H = 64, W = 64 };
    float *noise = tu_alloc(3 * H * W);
    tu_fill_uniform(noise, 3 * H * W, 5, -1, 1);
    snprintf(path, sizeof path, "%s/big.png", g_dir);
    int rc0 = ap_png_write_rgb(path, px, 1, 1);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 2000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    int n0 = count_entries(g_dir);
    int rc = ap_png_write_rgb(path, noise, H, W);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    tu_expect_error("write failure (file size limit 2000 bytes, 12 KB of noise)", rc,
                    "big.png", NULL);
    int h = 0, w = 0;
    uint8_t *got = read_png(path, &h, &w);
    tu_check(rc0 == 0 && got && h == 1 && w == 1 && count_entries(g_dir) == n0,
             "after the failure the old 1x1 big.png is intact and no temporary is left");
    free(got), free(noise);
    unlink(path);
    if (geteuid() != 0) {
        char ro[300];
        snprintf(ro, sizeof ro, "%s/ro", g_dir);
        mkdir(ro, 0555);
        snprintf(path, sizeof path, "%s/out.png", ro);
        tu_expect_error("read-only directory", ap_png_write_rgb(path, px, 1, 1), "ro/out.png",
                        "Permission denied", NULL);
        rmdir(ro);
    } else {
        /* root writes into 0555 directories; /proc refuses new files even to root */
        tu_expect_error("unwritable directory (/proc, running as root)",
                        ap_png_write_rgb("/proc/ap_test_out.png", px, 1, 1),
                        "/proc/ap_test_out.png", "cannot create the temporary file", NULL);
    }
}

int main(void) {
    printf("test_png: PNG writer\n");
    snprintf(g_dir, sizeof g_dir, "/tmp/ap_test_png.XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("FAIL: mkdtemp\n");
        return 1;
    }
    test_conversion();
    test_roundtrip();
    test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("  note: could not remove %s\n", g_dir);
    return tu_exit();
}
