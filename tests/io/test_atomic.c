/* test_atomic.c: io/atomic.h: file and directory commit/abort, replacing an
 * existing final directory, and the registry cleanup on SIGTERM (a forked
 * child begins temporaries and raises the signal; no *.tmp.* may be left). */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "testutil.h"

static char g_dir[256];

/* Entries of dir whose name contains ".tmp." (and the total count). */
static int count_tmp(const char *dir, int *total) {
    DIR *d = opendir(dir);
    int n = 0, all = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        all++;
        if (strstr(e->d_name, ".tmp.")) {
            printf("       left: %s/%s\n", dir, e->d_name);
            n++;
        }
    }
    if (d) closedir(d);
    if (total) *total = all;
    return n;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int read_is(const char *path, const char *text) {
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && !memcmp(buf, text, n);
}

static void test_file(void) {
    printf("file commit / abort:\n");
    char path[512];
    snprintf(path, sizeof path, "%s/a.txt", g_dir);
    ap_atomic a;
    int rc = ap_atomic_begin(&a, path, 0);
    tu_check(rc == 0 && strstr(a.tmp, "a.txt.tmp.") != NULL, "begin: temporary %s", a.tmp);
    struct stat st;
    tu_check(stat(path, &st) != 0, "final name absent before commit");
    write_text(a.tmp, "one");
    rc = ap_atomic_commit(&a);
    tu_check(rc == 0 && read_is(path, "one"), "commit publishes the content");
    rc = ap_atomic_begin(&a, path, 0);
    write_text(a.tmp, "two");
    ap_atomic_abort(&a);
    tu_check(rc == 0 && read_is(path, "one"), "abort keeps the old content");
    rc = ap_write_file_atomic(path, "three", 5);
    tu_check(rc == 0 && read_is(path, "three"), "ap_write_file_atomic replaces it");
    tu_check(count_tmp(g_dir, NULL) == 0, "no temporary left");
    tu_expect_error("missing directory", ap_write_file_atomic("/nonexistent/dir/x", "x", 1),
                    "/nonexistent/dir/x", "cannot create the temporary file",
                    "No such file or directory", NULL);
    unlink(path);
}

static void test_dir(void) {
    printf("directory commit / abort / replace:\n");
    char path[512], f[4200];
    snprintf(path, sizeof path, "%s/ckpt", g_dir);
    ap_atomic a;
    int rc = ap_atomic_begin(&a, path, 1);
    struct stat st;
    tu_check(rc == 0 && stat(a.tmp, &st) == 0 && S_ISDIR(st.st_mode),
             "begin creates the temporary directory %s", a.tmp);
    snprintf(f, sizeof f, "%s/x.txt", a.tmp);
    write_text(f, "old");
    snprintf(f, sizeof f, "%s/sub", a.tmp);
    mkdir(f, 0777);
    snprintf(f, sizeof f, "%s/sub/y.txt", a.tmp);
    write_text(f, "deep");
    rc = ap_atomic_commit(&a);
    snprintf(f, sizeof f, "%s/x.txt", path);
    int ok = rc == 0 && read_is(f, "old");
    snprintf(f, sizeof f, "%s/sub/y.txt", path);
    tu_check(ok && read_is(f, "deep"), "commit publishes the directory with a subdirectory");

    /* abort: the temporary tree goes, the final one stays */
    rc = ap_atomic_begin(&a, path, 1);
    snprintf(f, sizeof f, "%s/x.txt", a.tmp);
    write_text(f, "aborted");
    snprintf(f, sizeof f, "%s/sub", a.tmp);
    mkdir(f, 0777);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", a.tmp);
    ap_atomic_abort(&a);
    snprintf(f, sizeof f, "%s/x.txt", path);
    tu_check(rc == 0 && stat(tmp, &st) != 0 && read_is(f, "old"),
             "abort removes the temporary tree, final unchanged");

    /* replace an existing (non-empty) final directory */
    rc = ap_atomic_begin(&a, path, 1);
    snprintf(f, sizeof f, "%s/x.txt", a.tmp);
    write_text(f, "new");
    rc = rc || ap_atomic_commit(&a);
    snprintf(f, sizeof f, "%s/x.txt", path);
    int fresh = read_is(f, "new");
    snprintf(f, sizeof f, "%s/sub", path);
    tu_check(rc == 0 && fresh && stat(f, &st) != 0,
             "commit over an existing directory: new content, old subdirectory gone (%s)",
             rc ? ap_errmsg() : "ok");
    int total = 0;
    int left = count_tmp(g_dir, &total);
    tu_check(left == 0 && total == 1, "only ckpt left (%d entries, %d temporaries)", total, left);
    tu_expect_error("directory under a missing parent", ap_atomic_begin(&a, "/nonexistent/d", 1),
                    "/nonexistent/d", "temporary directory", NULL);
}

/* A child begins a file and a directory temporary, writes into them, then
 * raises sig; the parent checks how it died and that nothing is left. */
static void test_signal(int sig, const char *name) {
    printf("cleanup on %s:\n", name);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sig_%s", g_dir, name);
    mkdir(sub, 0777);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ap_atomic_install_signal_cleanup();
        ap_atomic_install_signal_cleanup(); /* idempotent */
        char p[600], f[4300];
        ap_atomic a, b, c;
        snprintf(p, sizeof p, "%s/img.png", sub);
        if (ap_atomic_begin(&a, p, 0)) _exit(3);
        write_text(a.tmp, "half a png");
        snprintf(p, sizeof p, "%s/checkpoint_7", sub);
        if (ap_atomic_begin(&b, p, 1)) _exit(3);
        snprintf(f, sizeof f, "%s/state.h5", b.tmp);
        write_text(f, "half");
        snprintf(f, sizeof f, "%s/nested", b.tmp);
        mkdir(f, 0777);
        snprintf(f, sizeof f, "%s/nested/deeper.bin", b.tmp);
        write_text(f, "x");
        snprintf(p, sizeof p, "%s/done.txt", sub);
        if (ap_atomic_begin(&c, p, 0) || ap_atomic_commit(&c)) _exit(3); /* committed: stays */
        raise(sig);
        _exit(4); /* not reached: the default action kills us */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tu_check(WIFSIGNALED(status) && WTERMSIG(status) == sig,
             "child died of %s (re-raised with the default action; status 0x%x)", name, status);
    int total = 0;
    int left = count_tmp(sub, &total);
    tu_check(left == 0 && total == 1, "no *.tmp.* left (%d), only done.txt (%d entries)", left,
             total);
}

/* A signal that was ignored before (nohup) stays ignored. */
static void test_ignored(void) {
    printf("ignored SIGHUP stays ignored:\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGHUP, SIG_IGN);
        ap_atomic_install_signal_cleanup();
        raise(SIGHUP);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tu_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child survived SIGHUP");
}

int main(void) {
    printf("test_atomic: publishing files and directories\n");
    snprintf(g_dir, sizeof g_dir, "/tmp/ap_test_atomic.XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("mkdtemp failed");
    test_file();
    test_dir();
    test_signal(SIGTERM, "SIGTERM");
    test_signal(SIGINT, "SIGINT");
    test_ignored();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_dir);
    return tu_exit();
}
