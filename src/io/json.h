/* json.h: a small strict JSON parser for the files models ship with
 * (safetensors headers, config.json, model_index.json, vocab.json).
 *
 * The parse tree owns all its memory; ap_json_free releases it. Objects keep
 * their keys in file order: keys[i] -> items[i], len entries. Arrays: items,
 * len entries. Strings are NUL-terminated UTF-8 (len bytes, may contain NUL
 * from \u0000). Nesting depth is limited to 64.
 */
#ifndef AP_JSON_H
#define AP_JSON_H

#include <stddef.h>

typedef enum {
    AP_JSON_NULL,
    AP_JSON_BOOL,
    AP_JSON_NUM,
    AP_JSON_STR,
    AP_JSON_ARR,
    AP_JSON_OBJ
} ap_json_type;

typedef struct ap_json {
    ap_json_type type;
    int boolean;
    double num;
    char *str;
    size_t len;
    struct ap_json *items;
    char **keys;
} ap_json;

/* Parse text[0..len). what names the source in errors ("config.json").
 * Errors give the byte offset and what was expected. */
int ap_json_parse(ap_json **out, const char *text, size_t len, const char *what);
/* Read and parse a whole file; errors name the path. */
int ap_json_parse_file(ap_json **out, const char *path);
void ap_json_free(ap_json *j);

/* Member of an object by key; NULL when absent or j is not an object. */
const ap_json *ap_json_get(const ap_json *obj, const char *key);
/* Typed getters: fail with "WHAT: key KEY: expected TYPE, found ..." */
int ap_json_get_num(const ap_json *obj, const char *key, const char *what, double *v);
int ap_json_get_str(const ap_json *obj, const char *key, const char *what,
                    const char **v);
const char *ap_json_type_name(ap_json_type t);

#endif
