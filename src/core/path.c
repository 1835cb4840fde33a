/* path.c: creating directories (path.h). */
#include "core/path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

int ap_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ap_fail("%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ap_fail("%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ap_fail("%s: cannot create directory: %s", buf, strerror(errno));
    if (!ap_is_dir(buf)) return ap_fail("%s: exists and is not a directory", buf);
    return AP_OK;
}
