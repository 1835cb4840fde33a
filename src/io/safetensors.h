/* safetensors.h: strict reader of .safetensors files (mmap, read-only).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {str: str}},
 * then the data block. Opening validates everything up front: header length
 * against the file size, JSON syntax, every dtype, shape and offset, that each
 * tensor's byte count equals numel * dtype size, that tensors do not overlap and
 * lie inside the data block. Errors name the file, the tensor and expected vs found.
 */
#ifndef AP_SAFETENSORS_H
#define AP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "io/dtype.h"

typedef struct ap_st_tensor {
    char *name;
    ap_file_dtype dtype;
    int ndim;
    int64_t shape[AP_MAX_DIMS];
    int64_t numel;
    const unsigned char *data; /* inside the mapping */
    size_t nbytes;
} ap_st_tensor;

typedef struct ap_st_file ap_st_file;

int ap_st_open(ap_st_file **out, const char *path);
void ap_st_close(ap_st_file *f);

const char *ap_st_path(const ap_st_file *f);
int ap_st_count(const ap_st_file *f);
const ap_st_tensor *ap_st_at(const ap_st_file *f, int i);
/* NULL when absent (no error recorded). */
const ap_st_tensor *ap_st_find(const ap_st_file *f, const char *name);
/* __metadata__ value or NULL. */
const char *ap_st_meta(const ap_st_file *f, const char *key);

/* Copy tensor `name` converted to float32 into dst (numel floats). When ndim > 0
 * the stored shape must equal (ndim, shape). */
int ap_st_read_f32(const ap_st_file *f, const char *name, int ndim,
                   const int64_t *shape, float *dst);
/* Same into a fresh malloc'd buffer; *t gets the data and the stored shape. */
int ap_st_load_f32(const ap_st_file *f, const char *name, int ndim,
                   const int64_t *shape, ap_tensor *t);

#endif
