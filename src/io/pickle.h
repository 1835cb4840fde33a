/* pickle.h: a restricted unpickler for the data.pkl of torch.save archives.
 *
 * It interprets the opcodes torch.save emits (protocol 2, plus the cheap
 * protocol 3-5 ones) into a tree of plain values and never executes
 * anything: GLOBAL/STACK_GLOBAL resolve only names on an allow-list
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, the torch.<Type>Storage classes), REDUCE
 * only "calls" those (building a dict, a tensor descriptor, or unwrapping a
 * Parameter), BINPERSID only accepts ('storage', <StorageClass>, key,
 * location, numel). Any other global is refused with its name; any other
 * opcode is refused with its byte and offset. Every read is bounds-checked
 * against the pickle length and memory use is O(pickle length).
 *
 * Values live in an arena owned by ap_pk_doc, freed at once by
 * ap_pk_free(); strings point into the pickle bytes, which must outlive the
 * doc.
 */
#ifndef AP_PICKLE_H
#define AP_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "io/dtype.h" /* ap_file_dtype of a storage */

typedef enum {
    AP_PK_NONE,
    AP_PK_BOOL,
    AP_PK_INT,
    AP_PK_FLOAT,
    AP_PK_STR,
    AP_PK_TUPLE,
    AP_PK_LIST,
    AP_PK_DICT,    /* items = key, value, key, value ... */
    AP_PK_GLOBAL,  /* an allowed callable or storage class */
    AP_PK_STORAGE, /* a resolved persistent id */
    AP_PK_TENSOR,  /* result of _rebuild_tensor_v2 */
} ap_pk_kind;

typedef enum {
    AP_PK_G_ORDERED_DICT,
    AP_PK_G_REBUILD_TENSOR_V2,
    AP_PK_G_REBUILD_PARAMETER,
    AP_PK_G_STORAGE, /* g.dtype says which */
} ap_pk_global;

typedef struct ap_pk_value ap_pk_value;
struct ap_pk_value {
    ap_pk_kind kind;
    ap_pk_value *arena_next;
    union {
        int64_t i; /* BOOL, INT */
        double f;
        struct {
            const char *s; /* not NUL-terminated */
            size_t len;
        } str;
        struct {
            ap_pk_value **items;
            int64_t n, cap; /* for DICT n counts items (2 per pair) */
            int ordered;    /* DICT made by OrderedDict(): BUILD allowed */
        } seq;
        struct {
            ap_pk_global which;
            int dtype;
        } g;
        struct {
            int dtype;
            const char *key;
            size_t key_len;
            int64_t numel;
        } storage;
        struct {
            ap_pk_value *storage; /* AP_PK_STORAGE */
            int64_t offset;       /* in elements */
            int ndim;
            int64_t shape[AP_MAX_DIMS];
            int64_t stride[AP_MAX_DIMS]; /* in elements */
        } tensor;
    } u;
};

typedef struct ap_pk_doc {
    ap_pk_value *root;
    ap_pk_value *arena; /* every value, linked */
    int64_t n_values;
} ap_pk_doc;

/* Run the restricted VM over data[0..len). what names the source in errors
 * ("file.pth: archive/data.pkl"). */
int ap_pk_load(ap_pk_doc *doc, const uint8_t *data, size_t len, const char *what);
void ap_pk_free(ap_pk_doc *doc);

#endif
