/* st_write.h: writing safetensors files (F32), atomically.
 *
 * The file is written through io/atomic.h (temporary name in the same
 * directory, fsync, rename over the target), so a reader never sees half a file (LoRA
 * exports, the tiny demo model, test outputs). Tensors are written in the
 * order given, with data offsets in that order; metadata is an optional list
 * of key/value string pairs.
 */
#ifndef AP_ST_WRITE_H
#define AP_ST_WRITE_H

#include "core/tensor.h"
#include "io/atomic.h" /* ap_write_file_atomic, formerly declared here */

typedef struct ap_st_entry {
    const char *name;
    const ap_tensor *t; /* float32, contiguous */
} ap_st_entry;

/* meta: NULL or a NULL-terminated list {key0, value0, key1, value1, ..., NULL}. */
int ap_st_write(const char *path, const ap_st_entry *entries, int n, const char *const *meta);


#endif
