/* path.h: file-system predicates used by the model and pipeline loaders. */
#ifndef AP_PATH_H
#define AP_PATH_H

#include <sys/stat.h>

/* Something exists at path (file, directory, ...). */
static inline int ap_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* path is a regular file (after following links). */
static inline int ap_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* path is a directory (after following links). */
static inline int ap_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Create path and its missing parents (mkdir -p, mode 0755); errors name
 * the component that failed. */
int ap_mkdirs(const char *path);

#endif
