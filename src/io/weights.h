/* weights.h: two-phase model loading.
 *
 * Phase 1 (ap_wsrc): index every tensor of every checkpoint file given
 * (.safetensors, or PyTorch zip-pickle .pth/.pt/.bin/.ckpt told apart by
 * their first bytes), without
 * reading data. Phase 2 (ap_params_fill): a model declares its named slots
 * (checkpoint key, shape, destination) in an ap_params list; filling copies
 * each tensor converted to float32 into its slot and reports, in one message,
 * every missing tensor, every wrong shape, and (as a warning) every tensor of
 * the files that no slot used. Missing or wrong-shape tensors are fatal.
 *
 * Parameters of a model live in one flat float buffer carved by the list
 * (llm.c style), so optimizers and all-reduces are one loop over one buffer.
 */
#ifndef AP_WEIGHTS_H
#define AP_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct ap_param {
    char *name;     /* checkpoint key */
    ap_tensor t;    /* shape and dtype (f32 unless ap_params_store_frozen chose a
                     * 2-byte one); data points into the flat buffer once allocated */
    size_t offset;  /* in floats, inside the flat buffer (a 2-byte slot of n
                     * elements takes (n + 1) / 2 floats) */
    ap_tensor *dst; /* the model's field bound to this slot (may be NULL) */
} ap_param;

typedef struct ap_params {
    ap_param *items;
    int count, cap;
    size_t total; /* floats */
    float *flat;  /* one allocation for every slot, after ap_params_alloc */
    int unbacked; /* flat from ap_params_alloc_unbacked */
    void *dev;    /* a copy of flat on a device, where the slots point after
                   * ops/memory.h's ap_params_place (NULL on the CPU) */
} ap_params;

/* Storage of frozen weights (mixed_precision): the dtype models keep their
 * big frozen matrices in, AP_F32 (the default), AP_BF16 or AP_F16. Process-
 * wide like the kernel variant: set once at start (train's mixed_precision,
 * sample's --precision, the benchmarks' --precision) before models load. The
 * ops widen such weights to f32 on the fly (ops/backend.h AP_WEIGHT_DTYPES). */
void ap_weights_set_frozen_dtype(ap_dtype dt);
ap_dtype ap_weights_frozen_dtype(void);
/* "fp32" / "bf16" / "fp16" -> dtype; AP_ERR naming the value otherwise. */
int ap_weights_precision_parse(const char *s, ap_dtype *dt);

/* Before ap_params_alloc: every slot of rank >= 2 whose name ends in
 * "weight" and contains none of the NULL-terminated substrings in keep_f32
 * (embeddings, weights read by code that wants f32) is stored in
 * ap_weights_frozen_dtype(); offsets and total shrink accordingly. A no-op
 * for AP_F32. Filling rounds to nearest even (an f32 file), or keeps the
 * stored bits when the file has that dtype already (bf16 -> f32 -> bf16 is
 * exact); a value beyond f16's range fails naming the tensor. */
void ap_params_store_frozen(ap_params *p, const char *const *keep_f32);
/* Bytes of the flat buffer (what the model's weights occupy). */
size_t ap_params_bytes(const ap_params *p);

void ap_params_init(ap_params *p);
void ap_params_free(ap_params *p);
/* Declare a slot; name is printf-formatted. dst (may be NULL) is the model's
 * tensor field for this parameter: it gets the shape now and its data pointer
 * at ap_params_alloc, so a model declares each parameter with one call and
 * never looks it up again (dst must not move until then).
 * Returns the slot's index or -1. */
int ap_params_add(ap_params *p, ap_tensor *dst, int ndim, const int64_t *shape,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Allocate the flat buffer, point every slot (and its dst) at its part (zeroed). */
int ap_params_alloc(ap_params *p, const char *what);
/* Point every slot at address space that is never backed (touching it
 * faults): a model whose weights a dry run only needs the shapes of
 * (measured plans at real size without the memory). ap_params_free
 * releases it. */
int ap_params_alloc_unbacked(ap_params *p, const char *what);
/* Slot by name or NULL. */
ap_param *ap_params_find(const ap_params *p, const char *name);

typedef struct ap_wsrc ap_wsrc;

/* Index the tensors of one checkpoint file (format from its contents). */
int ap_wsrc_open(ap_wsrc **out, const char *path);
/* Add another file to the same index (sharded checkpoints). */
int ap_wsrc_add(ap_wsrc *w, const char *path);
void ap_wsrc_close(ap_wsrc *w);
int ap_wsrc_count(const ap_wsrc *w);
/* Entry i (sorted by name): the name slots look it up by, and the key stored
 * in the file (the same string unless a rename hook renamed it). */
const char *ap_wsrc_name(const ap_wsrc *w, int i);
const char *ap_wsrc_key(const ap_wsrc *w, int i);
/* Stored shape of the entry called name, as a descriptor without data; fails
 * when absent. */
int ap_wsrc_shape(const ap_wsrc *w, const char *name, ap_tensor *shape);
/* Files of the index, joined with ", " (for messages). */
const char *ap_wsrc_files(const ap_wsrc *w);

/* Rename hook: lets a model load checkpoints whose keys follow another
 * layout (legacy diffusers names, single-file CompVis checkpoints). Given a
 * key as stored in a file, write the name slots should find it under into
 * name (cap bytes, NUL-terminated) and return a combination of
 *   AP_WSRC_RENAMED  the entry is known by name instead of its key;
 *   AP_WSRC_SQUEEZE  the stored tensor may also fill a slot whose shape is
 *                    its shape without trailing size-1 dims (a 1x1 conv
 *                    weight (O, I, 1, 1) filling a linear weight (O, I));
 * 0 keeps the key as the name; -1 is an error (after ap_fail). */
enum { AP_WSRC_RENAMED = 1, AP_WSRC_SQUEEZE = 2 };
typedef int (*ap_wsrc_rename_fn)(void *ctx, const char *key, char *name, size_t cap);
/* Apply fn (ctx must outlive w) to every entry of the index and to those of
 * files added later; fn NULL restores the stored keys. Two keys renamed to
 * one name are an error naming both; after an error the index is back to
 * the stored keys without a hook. */
int ap_wsrc_set_rename(ap_wsrc *w, ap_wsrc_rename_fn fn, void *ctx);

/* Fill every slot from the index. prefix is prepended to slot names when
 * looking them up ("" or e.g. "state_dict."). ignore: NULL-terminated list of
 * key suffixes that are known and unused (e.g. "position_ids") and therefore
 * not reported; an entry ending in '*' matches a key prefix instead
 * ("text_model.*"). Only index names under prefix are reported, and patterns
 * match those names with prefix removed. On success prints nothing unless
 * unused tensors remain, in * which case a one-line warning goes to stderr. */
int ap_params_fill(ap_params *p, const ap_wsrc *w, const char *prefix,
                   const char *const *ignore);

#endif
