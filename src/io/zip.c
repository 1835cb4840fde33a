/* zip.c: strict ZIP central-directory reader over an in-memory buffer.
 *
 * Layout read (APPNOTE 6.3): end-of-central-directory record (EOCD, 22 bytes
 * + comment) at the end; optionally a ZIP64 EOCD locator (20 bytes) right
 * before it pointing at a ZIP64 EOCD record; the central directory (46-byte
 * headers + name + extra + comment); each entry's local header (30 bytes +
 * name + extra) followed by its data. PyTorch pads local extra fields so data
 * is 64-byte aligned, hence the data start is always computed from the local
 * header. All integers are little-endian.
 */
#include "zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/err.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* True when [off, off + size) lies inside [0, len). */
static int in_range(uint64_t off, uint64_t size, uint64_t len) {
    return off <= len && size <= len - off;
}

/* Find the EOCD record: scan backwards over the last 22 + 65535 bytes. */
static int find_eocd(const ap_zip *z, uint64_t *pos) {
    if (z->len < 22)
        return ap_fail("%s: not a ZIP archive: %llu bytes, shorter than an "
                       "end-of-central-directory record (22 bytes)",
                       z->path, (unsigned long long)z->len);
    uint64_t lo = z->len > 22 + 65535 ? z->len - 22 - 65535 : 0;
    for (uint64_t p = z->len - 22 + 1; p-- > lo;) {
        if (rd32(z->buf + p) != SIG_EOCD) continue;
        if (p + 22 + rd16(z->buf + p + 20) > z->len) continue; /* comment cut */
        *pos = p;
        return 0;
    }
    return ap_fail("%s: not a complete ZIP archive: no end-of-central-directory "
                   "record in its last %llu bytes (file truncated, or not a zip "
                   "torch.save checkpoint)",
                   z->path, (unsigned long long)(z->len - lo));
}

/* Read n, cd_off and cd_size from the EOCD and, if present, the ZIP64 EOCD. */
static int read_eocd(const ap_zip *z, uint64_t eocd, uint64_t *n, uint64_t *cd_off,
                     uint64_t *cd_size, uint64_t *cd_end_limit) {
    const uint8_t *e = z->buf + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
        return ap_fail("%s: multi-disk ZIP archives are not supported", z->path);
    *n = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    *cd_end_limit = eocd;
    if (eocd >= 20 && rd32(z->buf + eocd - 20) == SIG_LOC64) {
        const uint8_t *l = z->buf + eocd - 20;
        uint64_t off64 = rd64(l + 8);
        if (rd32(l + 4) != 0 || rd32(l + 16) > 1)
            return ap_fail("%s: multi-disk ZIP64 archives are not supported", z->path);
        if (!in_range(off64, 56, eocd - 20) || rd32(z->buf + off64) != SIG_EOCD64)
            return ap_fail("%s: ZIP64 end-of-central-directory record expected at "
                           "offset %llu, not found (file corrupted or truncated)",
                           z->path, (unsigned long long)off64);
        const uint8_t *r = z->buf + off64;
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
            return ap_fail("%s: multi-disk ZIP64 archives are not supported", z->path);
        *n = rd64(r + 32);
        *cd_size = rd64(r + 40);
        *cd_off = rd64(r + 48);
        *cd_end_limit = off64;
    }
    if (!in_range(*cd_off, *cd_size, *cd_end_limit))
        return ap_fail("%s: central directory [%llu, +%llu) extends past its end "
                       "record at %llu (file truncated or corrupted)",
                       z->path, (unsigned long long)*cd_off,
                       (unsigned long long)*cd_size, (unsigned long long)*cd_end_limit);
    if (*n > *cd_size / 46)
        return ap_fail("%s: central directory claims %llu entries but holds only "
                       "%llu bytes (46 or more per entry)",
                       z->path, (unsigned long long)*n, (unsigned long long)*cd_size);
    return 0;
}

/* Apply the ZIP64 extended-information extra field (id 0x0001): it holds, in
 * this order, the 64-bit values of the fields whose 32-bit slot is all ones. */
static int zip64_extra(const ap_zip *z, const char *name, const uint8_t *x,
                       uint32_t xlen, uint64_t *size, uint64_t *csize, uint64_t *off) {
    int need_u = *size == 0xFFFFFFFFu, need_c = *csize == 0xFFFFFFFFu,
        need_o = *off == 0xFFFFFFFFu;
    uint32_t p = 0;
    while (p + 4 <= xlen) {
        uint16_t id = rd16(x + p), sz = rd16(x + p + 2);
        if (p + 4 + (uint32_t)sz > xlen) break;
        if (id == 0x0001) {
            const uint8_t *d = x + p + 4;
            uint32_t need = 8u * (uint32_t)(need_u + need_c + need_o), q = 0;
            if (sz < need)
                return ap_fail("%s: entry '%s': ZIP64 extra field holds %u bytes, "
                               "needs %u", z->path, name, sz, need);
            if (need_u) *size = rd64(d + q), q += 8, need_u = 0;
            if (need_c) *csize = rd64(d + q), q += 8, need_c = 0;
            if (need_o) *off = rd64(d + q), q += 8, need_o = 0;
            break;
        }
        p += 4 + sz;
    }
    if (need_u || need_c || need_o)
        return ap_fail("%s: entry '%s': 32-bit size/offset is 0xFFFFFFFF but no ZIP64 "
                       "extra field gives the 64-bit value", z->path, name);
    return 0;
}

/* Parse one central-directory header at *pos, advance *pos. */
static int read_central(const ap_zip *z, uint64_t *pos, uint64_t cd_end, int idx,
                        ap_zip_entry *out) {
    if (!in_range(*pos, 46, cd_end) || rd32(z->buf + *pos) != SIG_CENTRAL)
        return ap_fail("%s: central directory entry %d at offset %llu is missing or "
                       "corrupted", z->path, idx, (unsigned long long)*pos);
    const uint8_t *c = z->buf + *pos;
    uint32_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    if (!in_range(*pos + 46, (uint64_t)nlen + xlen + clen, cd_end))
        return ap_fail("%s: central directory entry %d: name/extra/comment run past "
                       "the directory end", z->path, idx);
    const uint8_t *name = c + 46;
    if (nlen == 0 || memchr(name, 0, nlen))
        return ap_fail("%s: central directory entry %d: empty name or NUL in name",
                       z->path, idx);
    out->name = ap_malloc(nlen + 1, "zip entry name");
    if (!out->name) return AP_ERR;
    memcpy(out->name, name, nlen);
    out->name[nlen] = '\0';
    uint16_t flags = rd16(c + 8);
    out->method = rd16(c + 10);
    out->crc = rd32(c + 16);
    out->csize = rd32(c + 20);
    out->size = rd32(c + 24);
    uint64_t loc = rd32(c + 42);
    if (flags & 1)
        return ap_fail("%s: entry '%s' is encrypted", z->path, out->name);
    if (out->method != 0 && out->method != 8)
        return ap_fail("%s: entry '%s': compression method %d not supported (stored 0 "
                       "or deflated 8 expected)", z->path, out->name, out->method);
    if (rd16(c + 34) != 0 && rd16(c + 34) != 0xFFFF)
        return ap_fail("%s: entry '%s' starts on disk %u; multi-disk archives are "
                       "not supported", z->path, out->name, rd16(c + 34));
    AP_TRY(zip64_extra(z, out->name, name + nlen, xlen, &out->size, &out->csize, &loc));
    if (out->method == 0 && out->csize != out->size)
        return ap_fail("%s: stored entry '%s': compressed size %llu != size %llu",
                       z->path, out->name, (unsigned long long)out->csize,
                       (unsigned long long)out->size);
    /* Local header: same name, then the data. */
    if (!in_range(loc, 30, z->len) || rd32(z->buf + loc) != SIG_LOCAL)
        return ap_fail("%s: entry '%s': local header expected at offset %llu, not "
                       "found (file truncated or corrupted; %llu bytes)",
                       z->path, out->name, (unsigned long long)loc,
                       (unsigned long long)z->len);
    const uint8_t *l = z->buf + loc;
    uint32_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
    if (lnlen != nlen || !in_range(loc + 30, lnlen, z->len) ||
        memcmp(l + 30, name, nlen) != 0)
        return ap_fail("%s: entry '%s': local header name differs from the central "
                       "directory's", z->path, out->name);
    if (rd16(l + 8) != out->method)
        return ap_fail("%s: entry '%s': local header method %u differs from the "
                       "central directory's %d", z->path, out->name, rd16(l + 8),
                       out->method);
    out->data_off = loc + 30 + lnlen + lxlen;
    if (!in_range(out->data_off, out->csize, z->len))
        return ap_fail("%s: entry '%s': data [%llu, %llu) extends past the end of the "
                       "file (%llu bytes): file truncated",
                       z->path, out->name, (unsigned long long)out->data_off,
                       (unsigned long long)(out->data_off + out->csize),
                       (unsigned long long)z->len);
    *pos += 46 + (uint64_t)nlen + xlen + clen;
    return 0;
}

void ap_zip_free(ap_zip *z) {
    if (!z) return;
    for (int i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    z->e = NULL;
    z->n = 0;
}

int ap_zip_open(ap_zip *z, const uint8_t *buf, uint64_t len, const char *path) {
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    z->path = path;
    uint64_t eocd = 0, n = 0, cd_off = 0, cd_size = 0, cd_limit = 0;
    AP_TRY(find_eocd(z, &eocd));
    AP_TRY(read_eocd(z, eocd, &n, &cd_off, &cd_size, &cd_limit));
    if (n > 1000000)
        return ap_fail("%s: %llu ZIP entries, more than the 1000000 accepted", path,
                       (unsigned long long)n);
    z->e = ap_calloc((size_t)n, sizeof *z->e, "zip entries");
    if (!z->e) return AP_ERR;
    uint64_t pos = cd_off, cd_end = cd_off + cd_size;
    for (uint64_t i = 0; i < n; i++) {
        z->n = (int)i + 1; /* so ap_zip_free releases a partly filled entry */
        if (read_central(z, &pos, cd_end, (int)i, &z->e[i]) != 0) {
            ap_zip_free(z);
            return AP_ERR;
        }
    }
    return 0;
}

const ap_zip_entry *ap_zip_find(const ap_zip *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->e[i].name, name) == 0) return &z->e[i];
    return NULL;
}

/* CRC-32 of n bytes. Large records are split into 16 MiB chunks checksummed
 * in parallel and joined with crc32_combine (zlib's crc32 runs ~1 GB/s). */
static uint32_t crc_of(const uint8_t *p, uint64_t n) {
    const uint64_t chunk = 16u << 20;
    if (n <= 4 * chunk) return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
    int64_t nc = (int64_t)((n + chunk - 1) / chunk);
    uLong *part = malloc((size_t)nc * sizeof *part);
    if (!part) { /* serial fallback */
        uLong crc = crc32(0L, Z_NULL, 0);
        for (uint64_t o = 0; o < n; o += chunk)
            crc = crc32(crc, p + o, (uInt)(n - o < chunk ? n - o : chunk));
        return (uint32_t)crc;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nc; i++) {
        uint64_t o = (uint64_t)i * chunk, len = n - o < chunk ? n - o : chunk;
        part[i] = crc32(crc32(0L, Z_NULL, 0), p + o, (uInt)len);
    }
    uLong crc = part[0];
    for (int64_t i = 1; i < nc; i++) {
        uint64_t o = (uint64_t)i * chunk, len = n - o < chunk ? n - o : chunk;
        crc = crc32_combine(crc, part[i], (z_off_t)len);
    }
    free(part);
    return (uint32_t)crc;
}

/* Raw-deflate decode of e's data into a fresh buffer of e->size bytes. */
static int inflate_entry(const ap_zip *z, const ap_zip_entry *e, uint8_t **out) {
    /* Deflate expands at most ~1032:1; a larger claim is corruption. */
    if (e->size / 1032 > e->csize + 64)
        return ap_fail("%s: entry '%s': size %llu impossible for %llu deflated bytes",
                       z->path, e->name, (unsigned long long)e->size,
                       (unsigned long long)e->csize);
    uint8_t *dst = ap_malloc((size_t)e->size, "inflated zip entry");
    if (!dst) return ap_err_prefix("%s: entry '%s': ", z->path, e->name);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
        free(dst);
        return ap_fail("%s: entry '%s': zlib inflateInit2 failed", z->path, e->name);
    }
    const uint8_t *src = z->buf + e->data_off;
    uint64_t in_left = e->csize, out_done = 0, in_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
        uInt ci = in_left - in_done > (1u << 30) ? (1u << 30) : (uInt)(in_left - in_done);
        uInt co = e->size - out_done > (1u << 30) ? (1u << 30)
                                                   : (uInt)(e->size - out_done);
        s.next_in = (Bytef *)(uintptr_t)(src + in_done);
        s.avail_in = ci;
        s.next_out = dst + out_done;
        s.avail_out = co;
        rc = inflate(&s, Z_NO_FLUSH);
        in_done += ci - s.avail_in;
        out_done += co - s.avail_out;
        if (rc == Z_OK && ci == s.avail_in && co == s.avail_out) rc = Z_BUF_ERROR;
    }
    inflateEnd(&s);
    if (rc != Z_STREAM_END || out_done != e->size) {
        free(dst);
        return ap_fail("%s: entry '%s': deflate data corrupt or size mismatch (zlib "
                       "%d, %llu of %llu bytes)", z->path, e->name, rc,
                       (unsigned long long)out_done, (unsigned long long)e->size);
    }
    *out = dst;
    return 0;
}

int ap_zip_read(const ap_zip *z, const ap_zip_entry *e, const uint8_t **data,
                uint8_t **owned) {
    *owned = NULL;
    *data = NULL;
    if (e->method == 8) {
        AP_TRY(inflate_entry(z, e, owned));
        *data = *owned;
    } else {
        *data = z->buf + e->data_off;
    }
    if (e->size > 0 && e->crc != 0) {
        uint32_t got = crc_of(*data, e->size);
        if (got != e->crc) {
            free(*owned);
            *owned = NULL;
            *data = NULL;
            return ap_fail("%s: entry '%s': CRC-32 mismatch (stored %08x, data %08x): "
                           "file corrupted", z->path, e->name, e->crc, got);
        }
    }
    return 0;
}
