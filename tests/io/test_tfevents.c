/* test_tfevents.c: the TensorBoard event writer (io/tfevents.h).
 *
 * CRC-32C against published known answers (RFC 3720 B.4 and the "123456789"
 * check value), the TFRecord mask, a file's framing read back byte by byte
 * (lengths, both CRCs, the file_version event's bytes), and the resume cut
 * (events past a step dropped, a truncated tail removed, an unchanged file
 * left alone). Exact comparisons throughout. The read-back by TensorBoard's
 * own reader is tests/io/tfevents_read.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "io/tfevents.h"
#include "testutil.h"

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static uint32_t u32(const unsigned char *d) {
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

/* Records of a file: count, and whether every framing check holds. */
static int count_records(const unsigned char *b, size_t n, int *ok) {
    size_t pos = 0;
    int k = 0;
    *ok = 1;
    while (pos + 12 <= n) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = len << 8 | b[pos + i];
        if (ap_crc32c_mask(ap_crc32c(0, b + pos, 8)) != u32(b + pos + 8) || pos + 16 + len > n ||
            ap_crc32c_mask(ap_crc32c(0, b + pos + 12, len)) != u32(b + pos + 12 + len)) {
            *ok = 0;
            break;
        }
        pos += 16 + len, k++;
    }
    if (pos != n) *ok = 0;
    return k;
}

static int keep_upto(int64_t step, const char *tag, void *u) {
    int64_t s = *(int64_t *)u;
    return step < s || (step == s && strncmp(tag, "eval", 4) != 0);
}

static int only_file(const char *dir, char *out, size_t cap) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(out, cap, "%s/%s", dir, line);
        n++;
    }
    if (p) pclose(p);
    return n;
}

int main(void) {
    /* CRC-32C known answers: RFC 3720 appendix B.4, and the standard check */
    unsigned char z[32], ff[32], up[32], down[32];
    for (int i = 0; i < 32; i++) z[i] = 0, ff[i] = 0xff, up[i] = (unsigned char)i,
                                  down[i] = (unsigned char)(31 - i);
    tu_check(ap_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c(\"123456789\") = 0x%08X, expected 0xE3069283",
             ap_crc32c(0, "123456789", 9));
    tu_check(ap_crc32c(0, z, 32) == 0x8A9136AAu, "crc32c(32 x 0x00) = 0x%08X, expected 0x8A9136AA", ap_crc32c(0, z, 32));
    tu_check(ap_crc32c(0, ff, 32) == 0x62A8AB43u, "crc32c(32 x 0xFF) = 0x%08X, expected 0x62A8AB43", ap_crc32c(0, ff, 32));
    tu_check(ap_crc32c(0, up, 32) == 0x46DD794Eu, "crc32c(0..31) = 0x%08X, expected 0x46DD794E", ap_crc32c(0, up, 32));
    tu_check(ap_crc32c(0, down, 32) == 0x113FDB5Cu, "crc32c(31..0) = 0x%08X, expected 0x113FDB5C", ap_crc32c(0, down, 32));
    tu_check(ap_crc32c(ap_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c continued over two calls");
    tu_check(ap_crc32c(0, "", 0) == 0, "crc32c of nothing = 0");
    /* mask: ((c >> 15) | (c << 17)) + 0xa282ead8, worked by hand for 0 and 1 */
    tu_check(ap_crc32c_mask(0) == 0xa282ead8u, "mask(0) = 0x%08X, expected 0xA282EAD8", ap_crc32c_mask(0));
    tu_check(ap_crc32c_mask(1) == 0xa282ead8u + 0x20000u, "mask(1) = 0x%08X, expected 0xA284EAD8", ap_crc32c_mask(1));

    char dir[] = "/tmp/test_tfevents_XXXXXX";
    if (!mkdtemp(dir)) return tu_skip("cannot make a temporary directory");
    char tb[300], path[800];
    snprintf(tb, sizeof tb, "%s/tb", dir);
    ap_tfevents *w = NULL;
    int rc = ap_tfevents_open(&w, tb, 0, 0);
    tu_check(rc == 0, "open: %s", rc ? ap_errmsg() : "ok");
    if (rc) return tu_exit();
    for (int s = 1; s <= 4 && !rc; s++) rc = ap_tfevents_scalar(w, "loss", s, 0.5f * (float)s);
    if (!rc) rc = ap_tfevents_scalar(w, "eval_rewards", 4, 1.0f);
    if (!rc) rc = ap_tfevents_text(w, "config", 0, "a: 1");
    const unsigned char fake_png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!rc) rc = ap_tfevents_image(w, "images/000", 2, fake_png, sizeof fake_png, 1, 1, "a cat");
    tu_check(rc == 0, "writing 7 events: %s", rc ? ap_errmsg() : "ok");
    snprintf(path, sizeof path, "%s", ap_tfevents_path(w));
    ap_tfevents_close(w);
    tu_check(strstr(path, "/events.out.tfevents.") && strstr(path, ".000000000000."),
             "file name %s: events.out.tfevents.<time>.<step 12 digits>.<host>.<pid>", path);

    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    int ok = 0, k = b ? count_records(b, n, &ok) : 0;
    tu_check(ok && k == 8, "framing: %d records (expected 8: file_version + 7), every length and CRC "
             "checks: %s", k, ok ? "yes" : "no");
    /* the first record: Event{wall_time (field 1, fixed64), step 0, file_version} */
    static const char fv[] = "brain.Event:2";
    int first_ok = b && n > 12 && b[12] == 0x09 && b[21] == 0x10 && b[22] == 0x00 && b[23] == 0x1a &&
                   b[24] == 13 && !memcmp(b + 25, fv, 13) && u32(b) == 26;
    tu_check(first_ok, "first event's bytes: 09 <8> 10 00 1a 0d \"brain.Event:2\" (26 bytes)");
    free(b);

    /* resume at step 2: loss 3, 4 and eval_rewards@4 dropped; text@0, image@2 kept */
    int64_t at = 2;
    rc = ap_tfevents_cut(tb, keep_upto, &at);
    tu_check(rc == 0, "cut at step 2: %s", rc ? ap_errmsg() : "ok");
    b = slurp(path, &n);
    k = b ? count_records(b, n, &ok) : 0;
    tu_check(ok && k == 5, "after the cut: %d whole records, expected 5", k);
    free(b);
    /* a truncated tail (a writer killed mid-record) is removed */
    FILE *f = fopen(path, "ab");
    fwrite("\x20\0\0\0\0\0\0\0\1\2", 1, 10, f);
    fclose(f);
    at = 100;
    rc = ap_tfevents_cut(tb, keep_upto, &at);
    b = slurp(path, &n);
    k = b ? count_records(b, n, &ok) : 0;
    tu_check(rc == 0 && ok && k == 5, "truncated tail removed: %d records, framing %s", k, ok ? "ok" : "bad");
    free(b);
    struct stat s1, s2;
    stat(path, &s1);
    rc = ap_tfevents_cut(tb, keep_upto, &at);
    stat(path, &s2);
    tu_check(rc == 0 && s1.st_ino == s2.st_ino, "a file with nothing to drop is not rewritten");
    char one[800];
    tu_check(only_file(tb, one, sizeof one) == 1, "no temporaries left in %s", tb);

    /* a resumed writer: a second file, with SessionLog START */
    rc = ap_tfevents_open(&w, tb, 2, 1);
    tu_check(rc == 0 && strstr(ap_tfevents_path(w), ".000000000002."), "resumed file %s",
             rc ? ap_errmsg() : ap_tfevents_path(w));
    if (!rc) ap_tfevents_close(w);
    tu_expect_error("open under a file", ap_tfevents_open(&w, "/dev/null/tb", 0, 0), "/dev/null", NULL);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "note: could not remove %s\n", dir);
    return tu_exit();
}
