/* test_prompt_lines.c: the training job reads prompt files as AlignProp
 * does ([l.strip() for l in f.readlines()]): a blank line is an empty
 * prompt, in place; the final newline ends the last line (no extra empty
 * prompt); a file of blank lines only is still refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "text/prompts.h"

static char g_path[64];

static const char *write_file(const char *text) {
    FILE *f = fopen(g_path, "wb");
    if (f) fputs(text, f), fclose(f);
    return g_path;
}

static void expect(const char *name, const char *text, int n_want, const char *const *want) {
    char **p = NULL;
    int n = 0;
    int rc = ap_prompts_read_lines(write_file(text), &p, &n);
    int same = rc == 0 && n == n_want;
    for (int i = 0; same && i < n; i++) same = !strcmp(p[i], want[i]);
    tu_check(same, "%s: %d prompts, expected %d%s%s", name, n, n_want, rc ? ": " : "",
             rc ? ap_errmsg() : "");
    ap_prompts_free(p, n);
}

int main(void) {
    printf("test_prompt_lines: training prompt files keep blank lines as empty prompts\n");
    snprintf(g_path, sizeof g_path, "/tmp/ap_prompt_lines.%d.txt", (int)getpid());
    expect("\"a\\n\\nb\\n\" -> a, \"\", b", "a\n\nb\n", 3, (const char *[]){"a", "", "b"});
    expect("\"a\\nb\" (no final newline) -> a, b", "a\nb", 2, (const char *[]){"a", "b"});
    expect("\"a\\nb\\n\\n\" -> a, b, \"\"", "a\nb\n\n", 3, (const char *[]){"a", "b", ""});
    expect("\"  a \\r\\n \\t\\r\\n\" -> a, \"\" (stripped)", "  a \r\n \t\r\n", 2,
           (const char *[]){"a", ""});
    char **p = NULL;
    int n = 0;
    tu_expect_error("blank lines only", ap_prompts_read_lines(write_file(" \n\n"), &p, &n),
                    g_path, "all blank", NULL);
    ap_prompts_free(p, n);
    p = NULL, n = 0;
    int rc = ap_prompts_read(write_file("a\n\nb\n"), &p, &n);
    tu_check(rc == 0 && n == 2, "sample --prompts still skips blank lines (%d prompts)", n);
    ap_prompts_free(p, n);
    remove(g_path);
    return tu_exit();
}
