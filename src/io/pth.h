/* pth.h: safe reader of PyTorch zip checkpoints (torch.save, PyTorch >= 1.6):
 * `.pth`, `.pt`, `.bin`, `.ckpt` state dicts. Nothing in the file is ever
 * executed: the pickle is interpreted by a restricted VM (pickle.h) that only
 * knows dicts, lists, tuples, scalars, strings and tensors.
 *
 * Tensor names flatten nested containers with '.': a top-level
 * {'state_dict': {'visual.proj': T}} exposes "state_dict.visual.proj"; list
 * and tuple items use their index ("params.0"); int dict keys their decimal
 * form. Non-tensor leaves (global_step, hyper-parameters) are not listed.
 * Model loaders strip the prefixes they expect (see ap_pth_strip_prefix).
 * A name occurring twice after flattening is an error at open.
 *
 * The file is mmap'd; every offset and size is validated against the file
 * size at open (a truncated file fails then, naming the file and the record
 * that was cut); a record's CRC-32 is checked when a tensor is loaded.
 * Big-endian archives (a 'byteorder' record saying "big") and the legacy
 * non-zip format are refused with a clear message.
 */
#ifndef AP_PTH_H
#define AP_PTH_H

#include <stdint.h>

#include "core/tensor.h"
#include "io/dtype.h" /* ap_file_dtype: AP_DT_F32, AP_DT_F16, ... */

typedef struct ap_pth_file ap_pth_file;

/* Open and index `path`. Errors name the file and what is wrong. */
int ap_pth_open(ap_pth_file **out, const char *path);
void ap_pth_close(ap_pth_file *f);

const char *ap_pth_path(const ap_pth_file *f);
/* Number of tensors; names in the order the pickle lists them. */
int ap_pth_count(const ap_pth_file *f);
const char *ap_pth_name(const ap_pth_file *f, int i);
/* Index of tensor `name`, or -1 (no error recorded). */
int ap_pth_find(const ap_pth_file *f, const char *name);

/* dtype (ap_file_dtype), ndim and shape (room for AP_MAX_DIMS) of tensor `name`;
 * any output pointer may be NULL. Fails naming the file if absent. */
int ap_pth_info(const ap_pth_file *f, const char *name, int *dtype, int *ndim,
                int64_t *shape);
/* Storage view of `name`: strides (AP_MAX_DIMS room) and offset in elements. */
int ap_pth_layout(const ap_pth_file *f, const char *name, int64_t *stride,
                  int64_t *offset);

/* Copy tensor `name` as float32 (converting f16/bf16/f64/integers/bool,
 * gathering non-contiguous views) into a fresh malloc'd buffer and fill *t
 * with it and the tensor's shape. When ndim > 0 the shape must equal
 * (ndim, shape): the error names file, tensor, expected and found. The
 * caller frees t->data. */
int ap_pth_load_f32(const ap_pth_file *f, const char *name, int ndim,
                    const int64_t *shape, ap_tensor *t);

/* If `name` starts with `prefix` return the rest, else NULL:
 * ap_pth_strip_prefix("state_dict.visual.proj", "state_dict.") -> "visual.proj". */
const char *ap_pth_strip_prefix(const char *name, const char *prefix);

#endif
