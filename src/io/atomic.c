/* atomic.c: publishing files and directories only when complete (atomic.h).
 *
 * begin: reserve "<final>.tmp.<pid>.<n>" with O_EXCL (a file) or mkdir (a
 * directory) and record it in a fixed registry. commit: fsync the content
 * (every regular file of a directory tree, then each directory), rename over
 * the final name, fsync the parent. A final directory that already exists is
 * swapped with the temporary in one renameat2(RENAME_EXCHANGE) (where the
 * file system lacks it: moved aside under another temporary name first) and
 * the old content is removed afterwards, so the final name always holds one
 * complete version.
 *
 * The registry is a static array of slots (no allocation) so that the signal
 * handler can walk it: each slot holds the path, the registering pid (a
 * forked child never removes its parent's temporaries) and an atomic state.
 * Tree removal uses only system calls (openat, getdents64, unlinkat), so the
 * same code serves abort and the async-signal-safe cleanup.
 */
#define _GNU_SOURCE
#include "atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/err.h"

/* ---- registry ---------------------------------------------------------- */

enum { SLOT_FREE = 0, SLOT_BUSY = 1, SLOT_LIVE = 2, N_SLOTS = 128, MAX_DEPTH = 16 };

typedef struct {
    _Atomic int state;
    pid_t pid;
    int is_dir;
    char path[4096];
} slot;

static slot g_slots[N_SLOTS];
static atomic_uint g_counter;

static int reg_add(const char *path, int is_dir) {
    for (int i = 0; i < N_SLOTS; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_BUSY)) {
            g_slots[i].pid = getpid();
            g_slots[i].is_dir = is_dir;
            snprintf(g_slots[i].path, sizeof g_slots[i].path, "%s", path);
            atomic_store(&g_slots[i].state, SLOT_LIVE);
            return 0;
        }
    }
    return ap_fail("%s: more than %d temporary files open at once (io/atomic.c registry)", path,
                   N_SLOTS);
}

static void reg_remove(const char *path) {
    pid_t me = getpid();
    for (int i = 0; i < N_SLOTS; i++) {
        if (atomic_load(&g_slots[i].state) == SLOT_LIVE && g_slots[i].pid == me &&
            strcmp(g_slots[i].path, path) == 0) {
            int expect = SLOT_LIVE;
            if (atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_BUSY))
                atomic_store(&g_slots[i].state, SLOT_FREE);
            return;
        }
    }
}

/* ---- tree removal (system calls only: safe in a signal handler) -------- */

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Remove name (relative to dirfd) and, if a directory, everything below. */
static int rm_tree_at(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) return -1;
    if (depth >= MAX_DEPTH) return -1;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[2048] __attribute__((aligned(8)));
    for (;;) { /* read a batch, remove it, read again from the start until empty */
        if (lseek(fd, 0, SEEK_SET) != 0) break;
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        int removed = 0;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *s = d->d_name;
            if (s[0] == '.' && (s[1] == 0 || (s[1] == '.' && s[2] == 0))) continue;
            if (rm_tree_at(fd, s, depth + 1) == 0) removed++;
        }
        if (!removed) break;
    }
    close(fd);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

static int rm_tree(const char *path) { return rm_tree_at(AT_FDCWD, path, 0); }

/* ---- fsync ------------------------------------------------------------- */

static int fsync_path(const char *path, int flags) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* fsync every regular file below path, then each directory (bottom up). */
static int fsync_tree(const char *path, int depth) {
    if (depth >= MAX_DEPTH) return errno = ELOOP, -1;
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    char sub[4096];
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) {
            errno = ENAMETOOLONG, rc = -1;
            break;
        }
        struct stat st;
        if (lstat(sub, &st) != 0) rc = -1;
        else if (S_ISDIR(st.st_mode)) rc = fsync_tree(sub, depth + 1);
        else if (S_ISREG(st.st_mode)) rc = fsync_path(sub, 0);
    }
    int e2 = errno;
    closedir(d);
    errno = e2;
    return rc ? rc : fsync_path(path, O_DIRECTORY);
}

static void fsync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    (void)fsync_path(dir, O_DIRECTORY); /* best effort: some file systems refuse */
}

/* ---- begin / commit / abort -------------------------------------------- */

/* A fresh temporary name beside path, created (file or directory). */
static int make_temp(const char *path, int is_dir, char *tmp, size_t cap) {
    for (int tries = 0; tries < 100; tries++) {
        unsigned n = atomic_fetch_add(&g_counter, 1);
        if (snprintf(tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), n) >= (int)cap)
            return errno = ENAMETOOLONG, -1;
        int ok;
        if (is_dir) {
            ok = mkdir(tmp, 0777) == 0;
        } else {
            int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            ok = fd >= 0;
            if (ok) close(fd);
        }
        if (ok) return 0;
        if (errno != EEXIST) return -1;
    }
    return -1;
}

int ap_atomic_begin(ap_atomic *a, const char *path, int is_dir) {
    memset(a, 0, sizeof *a);
    if (!path || !*path) return ap_fail("atomic write: empty path");
    if (snprintf(a->final, sizeof a->final, "%s", path) >= (int)sizeof a->final)
        return ap_fail("%s: path longer than %zu bytes", path, sizeof a->final - 64);
    a->is_dir = is_dir;
    if (make_temp(path, is_dir, a->tmp, sizeof a->tmp) != 0) {
        int e = errno;
        ap_fail("%s: cannot create the temporary %s %s: %s", path, is_dir ? "directory" : "file",
                a->tmp, strerror(e));
        a->tmp[0] = 0;
        return AP_ERR;
    }
    if (reg_add(a->tmp, is_dir) != 0) {
        rm_tree(a->tmp);
        a->tmp[0] = 0;
        return AP_ERR;
    }
    return AP_OK;
}

void ap_atomic_abort(ap_atomic *a) {
    if (!a->tmp[0]) return;
    (void)rm_tree(a->tmp);
    reg_remove(a->tmp);
    a->tmp[0] = 0;
}

/* Swap a finished directory into place over an existing one; the old
 * content ends under a registered temporary name and is removed. */
static int replace_dir(ap_atomic *a) {
    if (renameat2(AT_FDCWD, a->tmp, AT_FDCWD, a->final, RENAME_EXCHANGE) == 0) {
        (void)rm_tree(a->tmp); /* now the old content */
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS) return -1;
    /* no RENAME_EXCHANGE here: move the old one aside, then rename */
    ap_atomic old;
    if (ap_atomic_begin(&old, a->final, 1) != 0) return errno = EEXIST, -1;
    if (rmdir(old.tmp) != 0 || rename(a->final, old.tmp) != 0) {
        int e = errno;
        ap_atomic_abort(&old);
        return errno = e, -1;
    }
    if (rename(a->tmp, a->final) != 0) {
        int e = errno;
        (void)rename(old.tmp, a->final); /* put the old one back */
        reg_remove(old.tmp);
        return errno = e, -1;
    }
    ap_atomic_abort(&old);
    return 0;
}

int ap_atomic_commit(ap_atomic *a) {
    if (!a->tmp[0]) return ap_fail("%s: commit without a temporary (begin failed or done)", a->final);
    const char *what = "fsync";
    int rc = a->is_dir ? fsync_tree(a->tmp, 0) : fsync_path(a->tmp, 0);
    if (rc == 0) {
        what = "rename";
        rc = rename(a->tmp, a->final);
        if (rc != 0 && a->is_dir && (errno == ENOTEMPTY || errno == EEXIST)) rc = replace_dir(a);
    }
    if (rc != 0) {
        int e = errno;
        ap_atomic_abort(a);
        return ap_fail("%s: %s of the temporary failed: %s (nothing was replaced)", a->final, what,
                       strerror(e));
    }
    reg_remove(a->tmp);
    a->tmp[0] = 0;
    fsync_parent(a->final);
    return AP_OK;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int ap_write_file_atomic(const char *path, const void *data, size_t len) {
    ap_atomic a;
    AP_TRY(ap_atomic_begin(&a, path, 0));
    int fd = open(a.tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    int bad = fd < 0 || write_all(fd, data, len) != 0;
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && !bad) bad = 1, e = errno;
    if (bad) {
        ap_atomic_abort(&a);
        return ap_fail("%s: write failed: %s (nothing was replaced)", path, strerror(e));
    }
    return ap_atomic_commit(&a);
}

/* ---- signal cleanup ---------------------------------------------------- */

static const int k_signals[3] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction g_old[3];

static void on_signal(int sig) {
    int saved = errno;
    pid_t me = getpid();
    for (int i = 0; i < N_SLOTS; i++) {
        int expect = SLOT_LIVE;
        if (g_slots[i].pid == me &&
            atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_BUSY)) {
            (void)rm_tree(g_slots[i].path);
            atomic_store(&g_slots[i].state, SLOT_FREE);
        }
    }
    for (int k = 0; k < 3; k++) {
        if (k_signals[k] != sig) continue;
        if (!(g_old[k].sa_flags & SA_SIGINFO) && g_old[k].sa_handler != SIG_DFL &&
            g_old[k].sa_handler != SIG_IGN) {
            g_old[k].sa_handler(sig); /* a handler that was there before ours */
            errno = saved;
            return;
        }
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    raise(sig); /* dies here with the default action */
    errno = saved;
}

void ap_atomic_install_signal_cleanup(void) {
    static atomic_int installed;
    if (atomic_exchange(&installed, 1)) return;
    for (int k = 0; k < 3; k++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (int j = 0; j < 3; j++) sigaddset(&sa.sa_mask, k_signals[j]);
        if (sigaction(k_signals[k], NULL, &g_old[k]) != 0) continue;
        if (!(g_old[k].sa_flags & SA_SIGINFO) && g_old[k].sa_handler == SIG_IGN)
            continue; /* ignored (nohup): stay ignored */
        sigaction(k_signals[k], &sa, NULL);
    }
}
