/* tfevents.c: TensorBoard event files (tfevents.h): CRC-32C, a minimal
 * protobuf encoder (varints, fixed64/fixed32, length-delimited fields) and
 * decoder (enough to read an Event's step and its summary's tag), TFRecord
 * framing. Field numbers are those of tensorflow/core/util/event.proto,
 * framework/summary.proto, tensor.proto and tensor_shape.proto
 * (docs/logging.md §2).
 */
#include "tfevents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/path.h"
#include "io/atomic.h"

/* ---- CRC-32C ----------------------------------------------------------------- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t ap_crc32c(uint32_t crc, const void *data, size_t n) {
    if (!crc_ready) crc_init();
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t ap_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf encoding ------------------------------------------------------- */

typedef struct {
    unsigned char *b;
    size_t len, cap;
    int oom;
} pbuf;

static void put(pbuf *p, const void *d, size_t n) {
    if (p->oom) return;
    if (p->len + n > p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        while (nc < p->len + n) nc *= 2;
        unsigned char *b = realloc(p->b, nc);
        if (!b) {
            p->oom = 1;
            return;
        }
        p->b = b, p->cap = nc;
    }
    if (n) memcpy(p->b + p->len, d, n); /* an empty message has no buffer */
    p->len += n;
}

static void put_varint(pbuf *p, uint64_t v) {
    unsigned char t[10];
    int n = 0;
    do {
        t[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    put(p, t, (size_t)n);
}

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_BYTES = 2, WT_FIXED32 = 5 };

static void put_key(pbuf *p, int field, int wt) { put_varint(p, (uint64_t)field << 3 | (uint64_t)wt); }

static void put_bytes(pbuf *p, int field, const void *d, size_t n) {
    put_key(p, field, WT_BYTES);
    put_varint(p, n);
    put(p, d, n);
}

static void put_str(pbuf *p, int field, const char *s) { put_bytes(p, field, s, strlen(s)); }

static void put_msg(pbuf *p, int field, pbuf *m) {
    if (m->oom) p->oom = 1;
    put_bytes(p, field, m->b, m->len);
    free(m->b);
    memset(m, 0, sizeof *m);
}

static void put_u64le(unsigned char *d, uint64_t v) {
    for (int i = 0; i < 8; i++) d[i] = (unsigned char)(v >> (8 * i));
}

/* ---- the writer -------------------------------------------------------------- */

struct ap_tfevents {
    char path[4200];
    int fd;
};

const char *ap_tfevents_path(const ap_tfevents *w) { return w->path; }

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* TFRecord framing of data in one write. */
static int write_record(ap_tfevents *w, const unsigned char *data, size_t n) {
    unsigned char *r = ap_malloc(n + 16, "event record");
    if (!r) return AP_ERR;
    put_u64le(r, n);
    uint32_t lc = ap_crc32c_mask(ap_crc32c(0, r, 8)), dc = ap_crc32c_mask(ap_crc32c(0, data, n));
    for (int i = 0; i < 4; i++) r[8 + i] = (unsigned char)(lc >> (8 * i));
    memcpy(r + 12, data, n);
    for (int i = 0; i < 4; i++) r[12 + n + i] = (unsigned char)(dc >> (8 * i));
    int rc = ap_write_all(w->fd, r, n + 16);
    free(r);
    return rc ? ap_fail("%s: cannot write an event: %s", w->path, strerror(errno)) : AP_OK;
}

/* Event {wall_time, step, summary {value}} with value's encoding in v
 * (consumed); or, with v NULL, extra fields already encoded in ev. */
static int write_event(ap_tfevents *w, int64_t step, pbuf *value, pbuf *ev_extra) {
    pbuf ev = {0};
    double t = wall_time();
    uint64_t bits;
    unsigned char b8[8];
    memcpy(&bits, &t, 8);
    put_u64le(b8, bits);
    put_key(&ev, 1, WT_FIXED64);
    put(&ev, b8, 8);
    put_key(&ev, 2, WT_VARINT);
    put_varint(&ev, (uint64_t)step);
    if (value) {
        pbuf summary = {0};
        put_msg(&summary, 1, value);
        put_msg(&ev, 5, &summary);
    }
    if (ev_extra) {
        put(&ev, ev_extra->b, ev_extra->len);
        if (ev_extra->oom) ev.oom = 1;
        free(ev_extra->b);
        memset(ev_extra, 0, sizeof *ev_extra);
    }
    int rc = ev.oom ? ap_fail("%s: out of memory encoding an event", w->path)
                    : write_record(w, ev.b, ev.len);
    free(ev.b);
    return rc;
}

int ap_tfevents_open(ap_tfevents **out, const char *dir, int64_t first_step, int resumed) {
    *out = NULL;
    AP_TRY(ap_mkdirs(dir));
    ap_tfevents *w = ap_calloc(1, sizeof *w, "event writer");
    if (!w) return AP_ERR;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%012lld.%s.%d", dir,
             (long long)time(NULL), (long long)first_step, host, (int)getpid());
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
    if (w->fd < 0) {
        int rc = ap_fail("%s: cannot create the event file: %s", w->path, strerror(errno));
        free(w);
        return rc;
    }
    pbuf x = {0};
    put_str(&x, 3, "brain.Event:2");
    int rc = write_event(w, first_step, NULL, &x);
    if (!rc && resumed) {
        pbuf sl = {0}, y = {0};
        put_key(&sl, 1, WT_VARINT);
        put_varint(&sl, 1); /* SessionLog.START */
        put_msg(&y, 6, &sl);
        rc = write_event(w, first_step, NULL, &y);
    }
    if (rc) {
        ap_tfevents_close(w);
        return AP_ERR;
    }
    *out = w;
    return AP_OK;
}

void ap_tfevents_close(ap_tfevents *w) {
    if (!w) return;
    if (w->fd >= 0) {
        fsync(w->fd);
        close(w->fd);
    }
    free(w);
}

int ap_tfevents_scalar(ap_tfevents *w, const char *tag, int64_t step, float value) {
    pbuf v = {0};
    unsigned char b4[4];
    uint32_t bits;
    memcpy(&bits, &value, 4);
    for (int i = 0; i < 4; i++) b4[i] = (unsigned char)(bits >> (8 * i));
    put_str(&v, 1, tag);
    put_key(&v, 2, WT_FIXED32);
    put(&v, b4, 4);
    return write_event(w, step, &v, NULL);
}

int ap_tfevents_image(ap_tfevents *w, const char *tag, int64_t step, const void *png, size_t len,
                      int H, int W, const char *description) {
    pbuf v = {0}, im = {0};
    put_key(&im, 1, WT_VARINT);
    put_varint(&im, (uint64_t)H);
    put_key(&im, 2, WT_VARINT);
    put_varint(&im, (uint64_t)W);
    put_key(&im, 3, WT_VARINT);
    put_varint(&im, 3); /* colorspace: RGB */
    put_bytes(&im, 4, png, len);
    put_str(&v, 1, tag);
    put_msg(&v, 4, &im);
    if (description && *description) {
        pbuf md = {0};
        put_str(&md, 3, description); /* SummaryMetadata.summary_description */
        put_msg(&v, 9, &md);
    }
    return write_event(w, step, &v, NULL);
}

int ap_tfevents_text(ap_tfevents *w, const char *tag, int64_t step, const char *text) {
    pbuf v = {0}, tensor = {0}, shape = {0}, md = {0}, plugin = {0};
    put_key(&tensor, 1, WT_VARINT);
    put_varint(&tensor, 7); /* DT_STRING */
    put_msg(&tensor, 2, &shape); /* rank 0 */
    put_str(&tensor, 8, text);   /* string_val */
    put_str(&plugin, 1, "text"); /* PluginData.plugin_name */
    put_msg(&md, 1, &plugin);
    put_str(&v, 1, tag);
    put_msg(&v, 8, &tensor);
    put_msg(&v, 9, &md);
    return write_event(w, step, &v, NULL);
}

/* ---- reading back (resume) --------------------------------------------------- */

static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int s = 0; s < 64 && *p < end; s += 7) {
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

/* Skip a field of wire type wt; length-delimited: its bytes in *f, *fn. */
static int get_field(const unsigned char **p, const unsigned char *end, int wt, uint64_t *v,
                     const unsigned char **f, size_t *fn) {
    switch (wt) {
    case WT_VARINT: return get_varint(p, end, v);
    case WT_FIXED64:
        if (end - *p < 8) return -1;
        *p += 8;
        return 0;
    case WT_FIXED32:
        if (end - *p < 4) return -1;
        *p += 4;
        return 0;
    case WT_BYTES:
        if (get_varint(p, end, v) || *v > (uint64_t)(end - *p)) return -1;
        *f = *p, *fn = (size_t)*v;
        *p += *v;
        return 0;
    default: return -1;
    }
}

/* The step of an Event and the tag of its summary's first value ("" when it
 * has none). -1: not a parsable Event. */
static int event_step_tag(const unsigned char *d, size_t n, int64_t *step, char *tag, size_t cap) {
    const unsigned char *p = d, *end = d + n;
    *step = 0, tag[0] = '\0';
    while (p < end) {
        uint64_t key, v = 0;
        const unsigned char *f = NULL;
        size_t fn = 0;
        if (get_varint(&p, end, &key) || get_field(&p, end, (int)(key & 7), &v, &f, &fn)) return -1;
        if (key >> 3 == 2 && (key & 7) == WT_VARINT) *step = (int64_t)v;
        if (key >> 3 == 5 && (key & 7) == WT_BYTES) { /* Summary: value (1) */
            const unsigned char *q = f, *qe = f + fn;
            while (q < qe && !tag[0]) {
                uint64_t k2, v2;
                const unsigned char *g = NULL;
                size_t gn = 0;
                if (get_varint(&q, qe, &k2) || get_field(&q, qe, (int)(k2 & 7), &v2, &g, &gn)) return -1;
                if (k2 >> 3 != 1 || (k2 & 7) != WT_BYTES) continue;
                const unsigned char *r = g, *re = g + gn; /* Value: tag (1) */
                while (r < re) {
                    uint64_t k3, v3;
                    const unsigned char *h = NULL;
                    size_t hn = 0;
                    if (get_varint(&r, re, &k3) || get_field(&r, re, (int)(k3 & 7), &v3, &h, &hn)) return -1;
                    if (k3 >> 3 == 1 && (k3 & 7) == WT_BYTES) {
                        snprintf(tag, cap, "%.*s", (int)hn, (const char *)h);
                        break;
                    }
                }
            }
        }
    }
    return 0;
}

static uint32_t get_u32le(const unsigned char *d) {
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static int cut_file(const char *path, int (*keep)(int64_t, const char *, void *), void *user) {
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open the event file to cut it: %s", path, strerror(errno));
    pbuf all = {0}, kept = {0};
    unsigned char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) put(&all, chunk, got);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || all.oom) {
        free(all.b);
        return ap_fail("%s: cannot read the event file", path);
    }
    size_t pos = 0, dropped = 0;
    int changed = 0;
    while (pos + 12 <= all.len) {
        const unsigned char *r = all.b + pos;
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | r[i];
        if (ap_crc32c_mask(ap_crc32c(0, r, 8)) != get_u32le(r + 8) || n > all.len - pos - 16 ||
            ap_crc32c_mask(ap_crc32c(0, r + 12, n)) != get_u32le(r + 12 + n))
            break;
        int64_t step;
        char tag[256];
        int ok = event_step_tag(r + 12, n, &step, tag, sizeof tag) == 0;
        if (ok && keep(step, tag, user)) put(&kept, r, n + 16);
        else dropped++, changed = 1;
        pos += n + 16;
    }
    if (pos != all.len) changed = 1; /* a truncated or corrupt tail */
    int rc = AP_OK;
    if (kept.oom) rc = ap_fail("%s: out of memory cutting the event file", path);
    else if (changed && kept.len == 0) {
        rc = ap_atomic_remove(path);
        if (!rc) fprintf(stderr, "note: %s: resume: every event past the resume point: removed\n", path);
    } else if (changed) {
        rc = ap_write_file_atomic(path, kept.b, kept.len);
        if (!rc)
            fprintf(stderr, "note: %s: resume: %zu events past the resume point dropped%s\n", path,
                    dropped, pos != all.len ? ", a truncated tail removed" : "");
    }
    free(all.b), free(kept.b);
    return rc;
}

int ap_tfevents_cut(const char *dir, int (*keep)(int64_t, const char *, void *), void *user) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? AP_OK : ap_fail("%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = AP_OK;
    while (!rc && (e = readdir(d))) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) || strstr(e->d_name, ".tmp.")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        rc = cut_file(p, keep, user);
    }
    closedir(d);
    return rc;
}
