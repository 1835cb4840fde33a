/* json.c: recursive-descent JSON parser (RFC 8259, strict). */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t n, i;
    const char *what;
} parser;

static int perr(parser *p, const char *expected) {
    if (p->i >= p->n)
        return ap_fail("%s: JSON: expected %s at byte %zu, found end of input",
                       p->what, expected, p->i);
    unsigned char c = (unsigned char)p->s[p->i];
    if (c >= 0x20 && c < 0x7f)
        return ap_fail("%s: JSON: expected %s at byte %zu, found '%c'", p->what,
                       expected, p->i, c);
    return ap_fail("%s: JSON: expected %s at byte %zu, found byte 0x%02x", p->what,
                   expected, p->i, c);
}

static void skip_ws(parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int hex4(parser *p, unsigned *v) {
    if (p->n - p->i < 4) return perr(p, "4 hex digits");
    unsigned x = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + k];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (unsigned)(c - 'A' + 10);
        else { p->i += (size_t)k; return perr(p, "a hex digit"); }
    }
    p->i += 4;
    *v = x;
    return AP_OK;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string starting at '"'; *out malloc'd, NUL-terminated. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    if (p->i >= p->n || p->s[p->i] != '"') return perr(p, "'\"'");
    p->i++;
    size_t start = p->i, cap = 0;
    /* Output is never longer than the input span (escapes shrink or keep). */
    while (p->i < p->n && p->s[p->i] != '"') {
        if (p->s[p->i] == '\\') p->i++;
        p->i++;
    }
    if (p->i >= p->n) { p->i = p->n; return perr(p, "closing '\"'"); }
    cap = p->i - start + 1;
    p->i = start;
    char *o = ap_malloc(cap, "JSON string");
    if (!o) return AP_ERR;
    size_t k = 0;
    while (p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) { free(o); return perr(p, "no control character in string"); }
        if (c != '\\') { o[k++] = (char)c; p->i++; continue; }
        p->i++;
        char e = p->s[p->i++];
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (hex4(p, &cp)) { free(o); return AP_ERR; }
            if (cp >= 0xD800 && cp < 0xDC00 && p->n - p->i >= 6 &&
                p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                size_t save = p->i;
                unsigned lo;
                p->i += 2;
                if (hex4(p, &lo)) { free(o); return AP_ERR; }
                if (lo >= 0xDC00 && lo < 0xE000)
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else
                    p->i = save;
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* lone surrogate */
            k += put_utf8(o + k, cp); /* \uXXXX is 6 bytes, UTF-8 at most 4 */
            break;
        }
        default:
            p->i--;
            free(o);
            return perr(p, "a valid escape");
        }
    }
    p->i++;
    o[k] = '\0';
    *out = o;
    if (out_len) *out_len = k;
    return AP_OK;
}

static int parse_value(parser *p, ap_json *v, int depth);

static int parse_number(parser *p, ap_json *v) {
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return perr(p, p->i == st ? "a value" : "a digit");
    if (p->s[p->i] == '0') p->i++;
    else while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return perr(p, "a digit after '.'");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return perr(p, "an exponent digit");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    char buf[64];
    size_t len = p->i - st;
    if (len >= sizeof buf) { p->i = st; return perr(p, "a number of at most 63 characters"); }
    memcpy(buf, p->s + st, len);
    buf[len] = '\0';
    v->type = AP_JSON_NUM;
    v->num = strtod(buf, NULL);
    return AP_OK;
}

static int literal(parser *p, const char *word) {
    size_t l = strlen(word);
    if (p->n - p->i < l || memcmp(p->s + p->i, word, l) != 0) return perr(p, word);
    p->i += l;
    return AP_OK;
}

/* Growable arrays of items/keys while parsing a container. */
static int grow(ap_json *v, size_t *cap, int with_keys) {
    if (v->len < *cap) return AP_OK;
    size_t nc = *cap ? *cap * 2 : 8;
    ap_json *items = realloc(v->items, nc * sizeof *items);
    if (!items) return ap_fail("out of memory: %zu JSON items", nc);
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, nc * sizeof *keys);
        if (!keys) return ap_fail("out of memory: %zu JSON keys", nc);
        v->keys = keys;
    }
    *cap = nc;
    return AP_OK;
}

static int parse_container(parser *p, ap_json *v, int depth, int is_obj) {
    char close = is_obj ? '}' : ']';
    size_t cap = 0;
    v->type = is_obj ? AP_JSON_OBJ : AP_JSON_ARR;
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) { p->i++; return AP_OK; }
    for (;;) {
        AP_TRY(grow(v, &cap, is_obj));
        ap_json *item = &v->items[v->len];
        memset(item, 0, sizeof *item);
        if (is_obj) {
            skip_ws(p);
            v->keys[v->len] = NULL;
            AP_TRY(parse_string(p, &v->keys[v->len], NULL));
            v->len++; /* key owned from here; item is empty until parsed */
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return perr(p, "':'");
            p->i++;
        } else {
            v->len++;
        }
        AP_TRY(parse_value(p, item, depth + 1));
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == close) { p->i++; return AP_OK; }
        return perr(p, is_obj ? "',' or '}'" : "',' or ']'");
    }
}

static int parse_value(parser *p, ap_json *v, int depth) {
    if (depth > MAX_DEPTH) return perr(p, "nesting of at most 64 levels");
    skip_ws(p);
    if (p->i >= p->n) return perr(p, "a value");
    switch (p->s[p->i]) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"': v->type = AP_JSON_STR; return parse_string(p, &v->str, &v->len);
    case 't': v->type = AP_JSON_BOOL; v->boolean = 1; return literal(p, "true");
    case 'f': v->type = AP_JSON_BOOL; v->boolean = 0; return literal(p, "false");
    case 'n': v->type = AP_JSON_NULL; return literal(p, "null");
    default: return parse_number(p, v);
    }
}

static void free_inner(ap_json *j) {
    if (j->type == AP_JSON_ARR || j->type == AP_JSON_OBJ) {
        for (size_t i = 0; i < j->len; i++) {
            free_inner(&j->items[i]);
            if (j->keys) free(j->keys[i]);
        }
        free(j->items);
        free(j->keys);
    }
    free(j->str);
}

void ap_json_free(ap_json *j) {
    if (!j) return;
    free_inner(j);
    free(j);
}

int ap_json_parse(ap_json **out, const char *text, size_t len, const char *what) {
    *out = NULL;
    parser p = {text, len, 0, what ? what : "JSON"};
    ap_json *root = ap_calloc(1, sizeof *root, "JSON root");
    if (!root) return AP_ERR;
    if (parse_value(&p, root, 0) != 0) { ap_json_free(root); return AP_ERR; }
    skip_ws(&p);
    if (p.i != p.n) { ap_json_free(root); return perr(&p, "end of input"); }
    *out = root;
    return AP_OK;
}

int ap_json_parse_file(ap_json **out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return ap_fail("%s: cannot seek", path); }
    long n = ftell(f);
    rewind(f);
    if (n < 0) { fclose(f); return ap_fail("%s: cannot tell size", path); }
    char *buf = ap_malloc((size_t)n + 1, path);
    if (!buf) { fclose(f); return AP_ERR; }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); return ap_fail("%s: short read (%zu of %ld bytes)", path, got, n); }
    int rc = ap_json_parse(out, buf, (size_t)n, path);
    free(buf);
    return rc;
}

const ap_json *ap_json_get(const ap_json *obj, const char *key) {
    if (!obj || obj->type != AP_JSON_OBJ) return NULL;
    for (size_t i = obj->len; i-- > 0;) /* last duplicate wins, as in Python */
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const char *ap_json_type_name(ap_json_type t) {
    static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
    return (unsigned)t < 6 ? names[t] : "?";
}

int ap_json_get_num(const ap_json *obj, const char *key, const char *what, double *v) {
    const ap_json *j = ap_json_get(obj, key);
    if (!j) return ap_fail("%s: key \"%s\": expected a number, found nothing", what, key);
    if (j->type != AP_JSON_NUM)
        return ap_fail("%s: key \"%s\": expected a number, found %s", what, key,
                       ap_json_type_name(j->type));
    *v = j->num;
    return AP_OK;
}

int ap_json_get_str(const ap_json *obj, const char *key, const char *what,
                    const char **v) {
    const ap_json *j = ap_json_get(obj, key);
    if (!j) return ap_fail("%s: key \"%s\": expected a string, found nothing", what, key);
    if (j->type != AP_JSON_STR)
        return ap_fail("%s: key \"%s\": expected a string, found %s", what, key,
                       ap_json_type_name(j->type));
    *v = j->str;
    return AP_OK;
}
