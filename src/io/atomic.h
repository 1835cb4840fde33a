/* atomic.h: publishing a file or a directory only when it is complete.
 *
 * One mechanism for every output (PNG, safetensors, HDF5 checkpoints): the
 * content is written under a temporary name in the target's directory
 * ("<name>.tmp.<pid>.<n>"), fsync'ed, renamed over the final name, and the
 * directory is fsync'ed. A reader (or a resumed run) sees the old file or
 * the new one, never half of one. Temporary names are registered while they
 * exist; ap_atomic_install_signal_cleanup() removes every registered one on
 * SIGINT/SIGTERM/SIGHUP before the process dies.
 */
#ifndef AP_IO_ATOMIC_H
#define AP_IO_ATOMIC_H

#include <stddef.h>

typedef struct ap_atomic {
    char final[4096]; /* the name published at commit */
    char tmp[4096];   /* where the content is written meanwhile */
    int is_dir;       /* 1: a directory (every file inside is fsync'ed at commit) */
} ap_atomic;

/* Choose and register a temporary name for path (is_dir: create it as an
 * empty directory). The caller writes a->tmp, then commits or aborts. */
int ap_atomic_begin(ap_atomic *a, const char *path, int is_dir);
/* fsync the content (a directory: each regular file in it, then itself),
 * rename over final (an existing final directory is replaced), fsync the
 * parent directory. On failure the temporary is removed. */
int ap_atomic_commit(ap_atomic *a);
/* Remove the temporary (recursively for a directory) and unregister it. */
void ap_atomic_abort(ap_atomic *a);
/* Write a whole file atomically. */
int ap_write_file_atomic(const char *path, const void *data, size_t len);
/* Remove path (a file, or a directory tree) so that it never exists half
 * removed under its name: a directory is first renamed to a registered
 * temporary name, then deleted. A missing path is not an error. */
int ap_atomic_remove(const char *path);
/* Install handlers for SIGINT, SIGTERM, SIGHUP that unlink every registered
 * temporary, then re-raise the signal with its default action. Idempotent. */
void ap_atomic_install_signal_cleanup(void);
/* write(2) all of data to fd, retrying on EINTR and short writes; 0 or -1
 * (errno set). */
int ap_write_all(int fd, const void *data, size_t len);

#endif
