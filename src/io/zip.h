/* zip.h: a strict reader of a ZIP archive held in memory (an mmap'd file).
 *
 * Reads the central directory (ZIP64 records and extra fields included, as
 * torch.save writes for archives over 4 GB) and locates each entry's data by
 * its local header. Every offset and size is validated against the buffer
 * length before use, so a truncated or corrupted file yields an error that
 * names the file and what was cut, never an out-of-bounds read. Entries may be
 * stored (method 0, what PyTorch writes) or deflated (method 8, inflated with
 * zlib); anything else, encryption or multi-disk archives are refused.
 */
#ifndef AP_ZIP_H
#define AP_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ap_zip_entry {
    char *name;        /* NUL-terminated copy of the entry name */
    uint64_t data_off; /* file offset of the (possibly compressed) data */
    uint64_t csize;    /* compressed size (== size when stored) */
    uint64_t size;     /* uncompressed size */
    uint32_t crc;      /* CRC-32 from the central directory */
    int method;        /* 0 stored, 8 deflated */
} ap_zip_entry;

typedef struct ap_zip {
    const uint8_t *buf; /* the whole file, not owned */
    uint64_t len;
    const char *path; /* for messages, not owned */
    int n;
    ap_zip_entry *e; /* (n) in central-directory order */
} ap_zip;

/* Parse the central directory of buf[0..len) and locate every entry's data.
 * path is only used in messages. On failure *z is left empty (ap_zip_free is
 * still safe). */
int ap_zip_open(ap_zip *z, const uint8_t *buf, uint64_t len, const char *path);
void ap_zip_free(ap_zip *z);

/* The entry named exactly `name`, or NULL. */
const ap_zip_entry *ap_zip_find(const ap_zip *z, const char *name);

/* The uncompressed bytes of an entry, CRC-checked (a stored CRC of 0 on a
 * non-empty entry is taken as "not computed" and skipped). Stored entries
 * point into the buffer and *owned is NULL; deflated ones are inflated into
 * *owned (malloc'd, caller frees). */
int ap_zip_read(const ap_zip *z, const ap_zip_entry *e, const uint8_t **data,
                uint8_t **owned);

#endif
