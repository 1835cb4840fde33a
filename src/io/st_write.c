/* st_write.c: safetensors writer (F32), published through io/atomic.h. */
#include "st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *s, const char *txt, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t nc = (s->cap + n + 1) * 2;
        char *b = realloc(s->buf, nc);
        if (!b) return ap_fail("out of memory building a safetensors header");
        s->buf = b;
        s->cap = nc;
    }
    memcpy(s->buf + s->len, txt, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return AP_OK;
}

static int sb_str(sbuf *s, const char *txt) { return sb_put(s, txt, strlen(txt)); }

/* JSON string with the escapes RFC 8259 requires. */
static int sb_json(sbuf *s, const char *txt) {
    AP_TRY(sb_str(s, "\""));
    for (const unsigned char *p = (const unsigned char *)txt; *p; p++) {
        char e[8];
        if (*p == '"' || *p == '\\') {
            e[0] = '\\', e[1] = (char)*p;
            AP_TRY(sb_put(s, e, 2));
        } else if (*p < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *p);
            AP_TRY(sb_str(s, e));
        } else {
            AP_TRY(sb_put(s, (const char *)p, 1));
        }
    }
    return sb_str(s, "\"");
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

int ap_st_write(const char *path, const ap_st_entry *e, int n, const char *const *meta) {
    sbuf h = {0};
    int rc = AP_ERR;
    char num[64];
    size_t off = 0;
    if (sb_str(&h, "{")) goto out;
    if (meta && meta[0]) {
        if (sb_str(&h, "\"__metadata__\":{")) goto out;
        for (int i = 0; meta[i] && meta[i + 1]; i += 2) {
            if ((i && sb_str(&h, ",")) || sb_json(&h, meta[i]) || sb_str(&h, ":") ||
                sb_json(&h, meta[i + 1]))
                goto out;
        }
        if (sb_str(&h, "}")) goto out;
    }
    for (int i = 0; i < n; i++) {
        const ap_tensor *t = e[i].t;
        if (!t || !t->data) {
            ap_fail("%s: tensor %s has no data", path, e[i].name);
            goto out;
        }
        size_t bytes = (size_t)ap_numel(t) * sizeof(float);
        if (((meta && meta[0]) || i) && sb_str(&h, ",")) goto out;
        if (sb_json(&h, e[i].name) || sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[")) goto out;
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            if (sb_str(&h, num)) goto out;
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        if (sb_str(&h, num)) goto out;
        off += bytes;
    }
    if (sb_str(&h, "}")) goto out;
    while (h.len % 8)
        if (sb_str(&h, " ")) goto out;
    ap_atomic a;
    if (ap_atomic_begin(&a, path, 0)) goto out;
    int fd = open(a.tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int bad = fd < 0 || write_all(fd, len8, 8) || write_all(fd, h.buf, h.len);
    for (int i = 0; i < n && !bad; i++)
        bad = write_all(fd, e[i].t->data, (size_t)ap_numel(e[i].t) * sizeof(float));
    int err = errno;
    if (fd >= 0 && close(fd) != 0 && !bad) bad = 1, err = errno;
    if (bad) {
        ap_atomic_abort(&a);
        ap_fail("%s: write failed: %s (nothing was replaced)", path, strerror(err));
        goto out;
    }
    rc = ap_atomic_commit(&a);
out:
    free(h.buf);
    return rc;
}
