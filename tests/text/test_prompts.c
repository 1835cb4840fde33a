/* test_prompts.c: the prompt file reader (text/prompts.h) and the
 * non-finite check (core/finite.h) that the sampler and the training job
 * share: lines without a length limit, blank lines and CR/LF, the text
 * checks (NUL, invalid UTF-8 with line and offset), empty files, appending
 * to an existing array, and the first bad index of a float buffer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/finite.h"
#include "testutil.h"
#include "text/prompts.h"

static char g_path[64];

static const char *write_file(const char *data, size_t n) {
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) printf("  note: cannot write %s\n", g_path);
    if (f) fclose(f);
    return g_path;
}

int main(void) {
    printf("test_prompts: prompt files and non-finite checks\n");
    snprintf(g_path, sizeof g_path, "/tmp/ap_test_prompts_%d.txt", (int)getpid());
    char **p = NULL;
    int n = 0;
    /* a 100,000-byte line, CRLF, blank lines, a BOM, surrounding spaces */
    size_t big = 100000;
    char *buf = malloc(big + 64);
    memcpy(buf, "\xEF\xBB\xBF  first \r\n\n \t\n", 16);
    memset(buf + 16, 'x', big);
    memcpy(buf + 16 + big, "\nlast", 5);
    int rc = ap_prompts_read(write_file(buf, 16 + big + 5), &p, &n);
    tu_check(rc == 0 && n == 3 && !strcmp(p[0], "first") && strlen(p[1]) == big &&
                 !strcmp(p[2], "last"),
             "BOM, CRLF, blank lines, a %zu-byte line, no final newline: 3 prompts (got %d%s%s)",
             big, n, rc ? ": " : "", rc ? ap_errmsg() : "");
    rc = ap_prompts_read(write_file("a\nb\n", 4), &p, &n);
    tu_check(rc == 0 && n == 5 && !strcmp(p[3], "a") && !strcmp(p[4], "b"),
             "a second file appends (5 prompts, got %d)", n);
    /* failures leave the array as it was */
    tu_expect_error("NUL byte", ap_prompts_read(write_file("ok\nab\0c\n", 8), &p, &n), g_path,
                    "line 2", "byte 3", "NUL", NULL);
    tu_expect_error("invalid UTF-8 (lone continuation byte)",
                    ap_prompts_read(write_file("ok\n\x80x\n", 5), &p, &n), "line 2", "0x80",
                    "UTF-8", NULL);
    tu_expect_error("UTF-8 surrogate", ap_prompts_read(write_file("\xED\xA0\x80", 3), &p, &n),
                    "line 1", "0xed", NULL);
    tu_expect_error("truncated UTF-8 sequence at the end",
                    ap_prompts_read(write_file("caf\xC3", 4), &p, &n), "byte 4", NULL);
    tu_expect_error("empty file", ap_prompts_read(write_file("", 0), &p, &n), g_path,
                    "no prompt", NULL);
    tu_expect_error("blank lines only", ap_prompts_read(write_file(" \n\r\n", 4), &p, &n),
                    "2 lines", NULL);
    tu_expect_error("missing file", ap_prompts_read("/nonexistent/p.txt", &p, &n),
                    "/nonexistent/p.txt", "cannot open", NULL);
    tu_check(n == 5, "failed reads left the 5 prompts alone (n = %d)", n);
    tu_check(ap_text_check("h\xC3\xA9llo \xF0\x9F\x90\xB1", 11) == -1,
             "valid 2- and 4-byte UTF-8 accepted");
    ap_prompts_free(p, n);
    free(buf);
    unlink(g_path);

    float x[10000];
    for (int i = 0; i < 10000; i++) x[i] = (float)i;
    tu_check(ap_first_nonfinite(x, 10000) == -1 && ap_check_finite(x, 10000, "x") == 0,
             "finite buffer passes");
    x[7777] = NAN, x[9000] = -INFINITY;
    tu_check(ap_first_nonfinite(x, 10000) == 7777, "first non-finite index 7777 (got %lld)",
             (long long)ap_first_nonfinite(x, 10000));
    tu_expect_error("NaN in a loss buffer", ap_check_finite(x, 10000, "loss"), "loss", "nan",
                    "index 7777", "1 more", NULL);
    return tu_exit();
}
