/* pickle.c: the restricted unpickler VM (see pickle.h).
 *
 * Stack machine as in CPython's _Unpickler: a value stack, a stack of MARK
 * positions (an opcode can never pop below the innermost mark), and a memo.
 * Each opcode allocates at most one value and containers only copy pointers,
 * so memory is O(pickle length): shared sub-objects cannot blow up here (the
 * flattener in pth.c bounds its own walk). Cycles are possible (a list
 * appended to itself); consumers must bound their recursion.
 */
#include "pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* The allow-list: module, name, meaning. */
static const struct {
    const char *module, *name;
    ap_pk_global which;
    int dtype;
} g_allowed[] = {
    {"collections", "OrderedDict", AP_PK_G_ORDERED_DICT, -1},
    {"torch._utils", "_rebuild_tensor_v2", AP_PK_G_REBUILD_TENSOR_V2, -1},
    {"torch._utils", "_rebuild_parameter", AP_PK_G_REBUILD_PARAMETER, -1},
    {"torch", "FloatStorage", AP_PK_G_STORAGE, AP_DT_F32},
    {"torch", "HalfStorage", AP_PK_G_STORAGE, AP_DT_F16},
    {"torch", "BFloat16Storage", AP_PK_G_STORAGE, AP_DT_BF16},
    {"torch", "DoubleStorage", AP_PK_G_STORAGE, AP_DT_F64},
    {"torch", "LongStorage", AP_PK_G_STORAGE, AP_DT_I64},
    {"torch", "IntStorage", AP_PK_G_STORAGE, AP_DT_I32},
    {"torch", "ShortStorage", AP_PK_G_STORAGE, AP_DT_I16},
    {"torch", "CharStorage", AP_PK_G_STORAGE, AP_DT_I8},
    {"torch", "ByteStorage", AP_PK_G_STORAGE, AP_DT_U8},
    {"torch", "BoolStorage", AP_PK_G_STORAGE, AP_DT_BOOL},
};

typedef struct vm {
    const uint8_t *p;
    size_t len, pos, op_pos;
    int op;
    const char *what;
    ap_pk_doc *doc;
    ap_pk_value **stack;
    int64_t sp, scap;
    int64_t *marks;
    int64_t nmarks, mcap;
    ap_pk_value **memo;
    int64_t memo_cap, memo_count;
} vm;

static int vfail(vm *m, const char *fmt, ...) AP_PRINTF(2, 3);
static int vfail(vm *m, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ap_fail("%s: pickle opcode 0x%02x at offset %zu: %s", m->what, m->op,
                   m->op_pos, msg);
}

static int grow(void **arr, int64_t *cap, int64_t need, size_t elem, const char *what) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return ap_fail("out of memory: %lld x %zu bytes for %s", (long long)nc, elem,
                           what);
    *arr = p;
    *cap = nc;
    return 0;
}

static ap_pk_value *newv(vm *m, ap_pk_kind kind) {
    ap_pk_value *v = ap_calloc(1, sizeof *v, "pickle value");
    if (!v) return NULL;
    v->kind = kind;
    v->arena_next = m->doc->arena;
    m->doc->arena = v;
    m->doc->n_values++;
    return v;
}

static int push(vm *m, ap_pk_value *v) {
    if (!v) return AP_ERR;
    AP_TRY(grow((void **)&m->stack, &m->scap, m->sp + 1, sizeof *m->stack,
                "pickle stack"));
    m->stack[m->sp++] = v;
    return 0;
}

static int64_t mark_base(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int pop(vm *m, ap_pk_value **out) {
    if (m->sp <= mark_base(m)) return vfail(m, "stack underflow (malformed pickle)");
    *out = m->stack[--m->sp];
    return 0;
}

static int top(vm *m, ap_pk_value **out) {
    if (m->sp <= mark_base(m)) return vfail(m, "stack underflow (malformed pickle)");
    *out = m->stack[m->sp - 1];
    return 0;
}

/* Pop the innermost mark; items are stack[*from .. sp). */
static int pop_mark(vm *m, int64_t *from) {
    if (m->nmarks == 0) return vfail(m, "no MARK on the stack (malformed pickle)");
    *from = m->marks[--m->nmarks];
    return 0;
}

static int need(vm *m, size_t n) {
    if (n > m->len - m->pos)
        return vfail(m, "needs %zu more bytes, only %zu left (data.pkl truncated)", n,
                     m->len - m->pos);
    return 0;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int seq_append(ap_pk_value *c, ap_pk_value *v) {
    AP_TRY(grow((void **)&c->u.seq.items, &c->u.seq.cap, c->u.seq.n + 1,
                sizeof *c->u.seq.items, "pickle container"));
    c->u.seq.items[c->u.seq.n++] = v;
    return 0;
}

/* Make a TUPLE/LIST from stack[from..sp) and truncate the stack. */
static ap_pk_value *seq_from(vm *m, ap_pk_kind kind, int64_t from) {
    ap_pk_value *t = newv(m, kind);
    if (!t) return NULL;
    for (int64_t i = from; i < m->sp; i++)
        if (seq_append(t, m->stack[i]) != 0) return NULL;
    m->sp = from;
    return t;
}

static int op_int(vm *m, int64_t v) {
    ap_pk_value *x = newv(m, AP_PK_INT);
    if (x) x->u.i = v;
    return push(m, x);
}

static int op_str(vm *m, int lenbytes) {
    AP_TRY(need(m, (size_t)lenbytes));
    uint64_t n = le(m->p + m->pos, lenbytes);
    m->pos += (size_t)lenbytes;
    if (n > m->len - m->pos)
        return vfail(m, "string of %llu bytes runs past the end (%zu left)",
                     (unsigned long long)n, m->len - m->pos);
    ap_pk_value *s = newv(m, AP_PK_STR);
    if (s) {
        s->u.str.s = (const char *)m->p + m->pos;
        s->u.str.len = (size_t)n;
    }
    m->pos += (size_t)n;
    return push(m, s);
}

static int str_is(const ap_pk_value *v, const char *s) {
    return v->kind == AP_PK_STR && v->u.str.len == strlen(s) &&
           memcmp(v->u.str.s, s, v->u.str.len) == 0;
}

/* Resolve module.name against the allow-list, or refuse naming it. */
static int resolve_global(vm *m, const char *mod, size_t mlen, const char *name,
                          size_t nlen) {
    for (size_t i = 0; i < sizeof g_allowed / sizeof g_allowed[0]; i++) {
        if (strlen(g_allowed[i].module) == mlen && strlen(g_allowed[i].name) == nlen &&
            memcmp(g_allowed[i].module, mod, mlen) == 0 &&
            memcmp(g_allowed[i].name, name, nlen) == 0) {
            ap_pk_value *g = newv(m, AP_PK_GLOBAL);
            if (g) {
                g->u.g.which = g_allowed[i].which;
                g->u.g.dtype = g_allowed[i].dtype;
            }
            return push(m, g);
        }
    }
    int ml = mlen > 200 ? 200 : (int)mlen, nl = nlen > 200 ? 200 : (int)nlen;
    return vfail(m, "refusing global '%.*s.%.*s': not on the allow-list "
                    "(collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                    "torch._utils._rebuild_parameter, torch.<Type>Storage); nothing "
                    "was executed",
                 ml, mod, nl, name);
}

static int op_global(vm *m) {
    const char *line[2];
    size_t n[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *s = m->p + m->pos;
        const uint8_t *nl = memchr(s, '\n', m->len - m->pos);
        if (!nl) return vfail(m, "GLOBAL name not terminated by a newline");
        line[k] = (const char *)s;
        n[k] = (size_t)(nl - s);
        m->pos += n[k] + 1;
    }
    return resolve_global(m, line[0], n[0], line[1], n[1]);
}

static int op_stack_global(vm *m) {
    ap_pk_value *name = NULL, *mod = NULL;
    AP_TRY(pop(m, &name));
    AP_TRY(pop(m, &mod));
    if (mod->kind != AP_PK_STR || name->kind != AP_PK_STR)
        return vfail(m, "STACK_GLOBAL expects two strings");
    return resolve_global(m, mod->u.str.s, mod->u.str.len, name->u.str.s,
                          name->u.str.len);
}

static int is_int(const ap_pk_value *v) { return v->kind == AP_PK_INT; }

/* torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
 * requires_grad, backward_hooks[, metadata]). */
static int rebuild_tensor(vm *m, const ap_pk_value *args) {
    int64_t n = args->u.seq.n;
    ap_pk_value **a = args->u.seq.items;
    if (n != 6 && n != 7)
        return vfail(m, "_rebuild_tensor_v2 expects 6 or 7 arguments, found %lld",
                     (long long)n);
    if (a[0]->kind != AP_PK_STORAGE || !is_int(a[1]) || a[2]->kind != AP_PK_TUPLE ||
        a[3]->kind != AP_PK_TUPLE || a[4]->kind != AP_PK_BOOL ||
        a[5]->kind != AP_PK_DICT || (n == 7 && a[6]->kind != AP_PK_NONE &&
                                     a[6]->kind != AP_PK_DICT))
        return vfail(m, "_rebuild_tensor_v2 arguments are not (storage, int, tuple, "
                        "tuple, bool, dict[, dict])");
    int64_t nd = a[2]->u.seq.n;
    if (nd > AP_MAX_DIMS || a[3]->u.seq.n != nd)
        return vfail(m, "tensor with %lld dims and %lld strides (at most %d dims "
                        "supported, counts must match)",
                     (long long)nd, (long long)a[3]->u.seq.n, AP_MAX_DIMS);
    ap_pk_value *t = newv(m, AP_PK_TENSOR);
    if (!t) return AP_ERR;
    t->u.tensor.storage = a[0];
    t->u.tensor.offset = a[1]->u.i;
    t->u.tensor.ndim = (int)nd;
    int64_t numel = 1, last = t->u.tensor.offset;
    for (int i = 0; i < nd; i++) {
        ap_pk_value *s = a[2]->u.seq.items[i], *st = a[3]->u.seq.items[i];
        if (!is_int(s) || !is_int(st) || s->u.i < 0 || st->u.i < 0)
            return vfail(m, "tensor size/stride %d is not a non-negative int", i);
        t->u.tensor.shape[i] = s->u.i;
        t->u.tensor.stride[i] = st->u.i;
        if (__builtin_mul_overflow(numel, s->u.i, &numel))
            return vfail(m, "tensor element count overflows int64");
    }
    if (t->u.tensor.offset < 0) return vfail(m, "negative storage offset");
    if (numel > 0) {
        for (int i = 0; i < nd; i++) {
            int64_t span;
            if (__builtin_mul_overflow(t->u.tensor.shape[i] - 1, t->u.tensor.stride[i],
                                       &span) ||
                __builtin_add_overflow(last, span, &last))
                return vfail(m, "tensor extent overflows int64");
        }
        if (last >= a[0]->u.storage.numel)
            return vfail(m, "tensor view (offset %lld, last element %lld) exceeds its "
                            "storage '%.*s' of %lld elements",
                         (long long)t->u.tensor.offset, (long long)last,
                         (int)a[0]->u.storage.key_len, a[0]->u.storage.key,
                         (long long)a[0]->u.storage.numel);
    }
    return push(m, t);
}

static int op_reduce(vm *m) {
    ap_pk_value *args = NULL, *fn = NULL;
    AP_TRY(pop(m, &args));
    AP_TRY(pop(m, &fn));
    if (fn->kind != AP_PK_GLOBAL) return vfail(m, "REDUCE of a non-callable value");
    if (args->kind != AP_PK_TUPLE) return vfail(m, "REDUCE arguments are not a tuple");
    switch (fn->u.g.which) {
    case AP_PK_G_ORDERED_DICT: {
        if (args->u.seq.n != 0)
            return vfail(m, "OrderedDict called with %lld arguments (0 expected)",
                         (long long)args->u.seq.n);
        ap_pk_value *d = newv(m, AP_PK_DICT);
        if (d) d->u.seq.ordered = 1;
        return push(m, d);
    }
    case AP_PK_G_REBUILD_TENSOR_V2:
        return rebuild_tensor(m, args);
    case AP_PK_G_REBUILD_PARAMETER:
        if (args->u.seq.n != 3 || args->u.seq.items[0]->kind != AP_PK_TENSOR)
            return vfail(m, "_rebuild_parameter expects (tensor, requires_grad, hooks)");
        return push(m, args->u.seq.items[0]);
    case AP_PK_G_STORAGE:
        break;
    }
    return vfail(m, "a torch storage class cannot be called");
}

/* BINPERSID: ('storage', <StorageClass>, key, location, numel). */
static int op_persid(vm *m) {
    ap_pk_value *pid = NULL;
    AP_TRY(pop(m, &pid));
    ap_pk_value **a = pid->u.seq.items;
    if (pid->kind != AP_PK_TUPLE || pid->u.seq.n != 5 || !str_is(a[0], "storage") ||
        a[1]->kind != AP_PK_GLOBAL || a[1]->u.g.which != AP_PK_G_STORAGE ||
        a[2]->kind != AP_PK_STR || a[3]->kind != AP_PK_STR || !is_int(a[4]) ||
        a[4]->u.i < 0)
        return vfail(m, "persistent id is not ('storage', <torch Storage class>, key, "
                        "location, numel)");
    size_t kl = a[2]->u.str.len;
    if (kl == 0 || kl > 64) return vfail(m, "storage key of %zu bytes", kl);
    for (size_t i = 0; i < kl; i++) {
        char c = a[2]->u.str.s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_'))
            return vfail(m, "storage key has a character outside [0-9A-Za-z_]");
    }
    ap_pk_value *s = newv(m, AP_PK_STORAGE);
    if (!s) return AP_ERR;
    s->u.storage.dtype = a[1]->u.g.dtype;
    s->u.storage.key = a[2]->u.str.s;
    s->u.storage.key_len = kl;
    s->u.storage.numel = a[4]->u.i;
    return push(m, s);
}

static int memo_put(vm *m, uint64_t idx) {
    ap_pk_value *v = NULL;
    AP_TRY(top(m, &v));
    /* Picklers number memo slots 0, 1, 2...: an index beyond the pickle's
     * length is corruption and would only waste memory. */
    if (idx > m->len + 256) return vfail(m, "memo index %llu out of range",
                                         (unsigned long long)idx);
    AP_TRY(grow((void **)&m->memo, &m->memo_cap, (int64_t)idx + 1, sizeof *m->memo,
                "pickle memo"));
    if (m->memo_count <= (int64_t)idx) {
        memset(m->memo + m->memo_count, 0,
               (size_t)((int64_t)idx + 1 - m->memo_count) * sizeof *m->memo);
        m->memo_count = (int64_t)idx + 1;
    }
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx) {
    if (idx >= (uint64_t)m->memo_count || !m->memo[idx])
        return vfail(m, "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static int op_setitems(vm *m, int64_t from) {
    int64_t n = m->sp - from;
    if (n % 2) return vfail(m, "SETITEMS with an odd number of items");
    ap_pk_value *d = NULL;
    m->sp = from; /* so top() sees the dict below the mark */
    AP_TRY(top(m, &d));
    if (d->kind != AP_PK_DICT) return vfail(m, "SETITEM(S) on a non-dict");
    for (int64_t i = 0; i < n; i++) AP_TRY(seq_append(d, m->stack[from + i]));
    return 0;
}

static int op_appends(vm *m, int64_t from) {
    int64_t n = m->sp - from;
    ap_pk_value *l = NULL;
    m->sp = from;
    AP_TRY(top(m, &l));
    if (l->kind != AP_PK_LIST) return vfail(m, "APPEND(S) on a non-list");
    for (int64_t i = 0; i < n; i++) AP_TRY(seq_append(l, m->stack[from + i]));
    return 0;
}

/* One opcode; *done set by STOP. */
static int step(vm *m, int *done) {
    ap_pk_value *a = NULL, *b = NULL, *v = NULL;
    int64_t from = 0;
    m->op_pos = m->pos;
    m->op = m->p[m->pos++];
    switch (m->op) {
    case 0x80: /* PROTO */
        AP_TRY(need(m, 1));
        if (m->p[m->pos] < 2 || m->p[m->pos] > 5)
            return vfail(m, "pickle protocol %d (2..5 supported)", m->p[m->pos]);
        m->pos++;
        return 0;
    case 0x95: /* FRAME: framing is only a hint for buffered readers */
        AP_TRY(need(m, 8));
        m->pos += 8;
        return 0;
    case '.': /* STOP */
        if (m->nmarks != 0 || m->sp != 1)
            return vfail(m, "STOP with %lld values and %lld marks on the stack (1 and 0 "
                            "expected)", (long long)m->sp, (long long)m->nmarks);
        m->doc->root = m->stack[0];
        *done = 1;
        return 0;
    case '(': /* MARK */
        AP_TRY(grow((void **)&m->marks, &m->mcap, m->nmarks + 1, sizeof *m->marks,
                    "pickle marks"));
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case '}': return push(m, newv(m, AP_PK_DICT));
    case ']': return push(m, newv(m, AP_PK_LIST));
    case ')': return push(m, newv(m, AP_PK_TUPLE));
    case 't': /* TUPLE */
        AP_TRY(pop_mark(m, &from));
        return push(m, seq_from(m, AP_PK_TUPLE, from));
    case 'l': /* LIST */
        AP_TRY(pop_mark(m, &from));
        return push(m, seq_from(m, AP_PK_LIST, from));
    case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
        from = m->sp - (m->op - 0x84);
        if (from < mark_base(m)) return vfail(m, "stack underflow (malformed pickle)");
        return push(m, seq_from(m, AP_PK_TUPLE, from));
    case 'X': return op_str(m, 4);    /* BINUNICODE */
    case 0x8c: return op_str(m, 1);   /* SHORT_BINUNICODE */
    case 0x8d: return op_str(m, 8);   /* BINUNICODE8 */
    case 'J': /* BININT */
        AP_TRY(need(m, 4));
        m->pos += 4;
        return op_int(m, (int32_t)(uint32_t)le(m->p + m->pos - 4, 4));
    case 'K': /* BININT1 */
        AP_TRY(need(m, 1));
        return op_int(m, m->p[m->pos++]);
    case 'M': /* BININT2 */
        AP_TRY(need(m, 2));
        m->pos += 2;
        return op_int(m, (int64_t)le(m->p + m->pos - 2, 2));
    case 0x8a: { /* LONG1: little-endian two's complement of n bytes */
        AP_TRY(need(m, 1));
        int n = m->p[m->pos++];
        if (n > 8) return vfail(m, "LONG1 of %d bytes does not fit int64", n);
        AP_TRY(need(m, (size_t)n));
        uint64_t u = le(m->p + m->pos, n);
        if (n > 0 && n < 8 && (m->p[m->pos + n - 1] & 0x80)) u |= ~0ull << (8 * n);
        m->pos += (size_t)n;
        return op_int(m, (int64_t)u);
    }
    case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
        v = newv(m, AP_PK_BOOL);
        if (v) v->u.i = m->op == 0x88;
        return push(m, v);
    case 'N': return push(m, newv(m, AP_PK_NONE));
    case 'G': { /* BINFLOAT, big-endian */
        AP_TRY(need(m, 8));
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = u << 8 | m->p[m->pos + i];
        m->pos += 8;
        v = newv(m, AP_PK_FLOAT);
        if (v) memcpy(&v->u.f, &u, 8);
        return push(m, v);
    }
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 'b': /* BUILD: only OrderedDict's _metadata attribute, ignored */
        AP_TRY(pop(m, &a));
        AP_TRY(top(m, &b));
        if (b->kind != AP_PK_DICT || !b->u.seq.ordered)
            return vfail(m, "BUILD (set object state) is only accepted on an "
                            "OrderedDict");
        return 0;
    case 'Q': return op_persid(m);
    case 's': /* SETITEM */
        if (m->sp - 3 < mark_base(m)) return vfail(m, "stack underflow (malformed pickle)");
        return op_setitems(m, m->sp - 2);
    case 'u': /* SETITEMS */
        AP_TRY(pop_mark(m, &from));
        return op_setitems(m, from);
    case 'd': /* DICT */
        AP_TRY(pop_mark(m, &from));
        if ((m->sp - from) % 2) return vfail(m, "DICT with an odd number of items");
        v = newv(m, AP_PK_DICT);
        if (!v) return AP_ERR;
        for (int64_t i = from; i < m->sp; i++) AP_TRY(seq_append(v, m->stack[i]));
        m->sp = from;
        return push(m, v);
    case 'a': /* APPEND */
        if (m->sp - 2 < mark_base(m)) return vfail(m, "stack underflow (malformed pickle)");
        return op_appends(m, m->sp - 1);
    case 'e': /* APPENDS */
        AP_TRY(pop_mark(m, &from));
        return op_appends(m, from);
    case 'q': AP_TRY(need(m, 1)); return memo_put(m, m->p[m->pos++]);
    case 'r': AP_TRY(need(m, 4)); m->pos += 4; return memo_put(m, le(m->p + m->pos - 4, 4));
    case 0x94: return memo_put(m, (uint64_t)m->memo_count); /* MEMOIZE */
    case 'h': AP_TRY(need(m, 1)); return memo_get(m, m->p[m->pos++]);
    case 'j': AP_TRY(need(m, 4)); m->pos += 4; return memo_get(m, le(m->p + m->pos - 4, 4));
    case '0': return pop(m, &a); /* POP */
    case '1': /* POP_MARK */
        AP_TRY(pop_mark(m, &from));
        m->sp = from;
        return 0;
    case '2': AP_TRY(top(m, &a)); return push(m, a); /* DUP */
    default:
        return vfail(m, "opcode not supported by this restricted unpickler");
    }
}

void ap_pk_free(ap_pk_doc *doc) {
    ap_pk_value *v = doc->arena;
    while (v) {
        ap_pk_value *next = v->arena_next;
        if (v->kind == AP_PK_TUPLE || v->kind == AP_PK_LIST || v->kind == AP_PK_DICT)
            free(v->u.seq.items);
        free(v);
        v = next;
    }
    memset(doc, 0, sizeof *doc);
}

int ap_pk_load(ap_pk_doc *doc, const uint8_t *data, size_t len, const char *what) {
    memset(doc, 0, sizeof *doc);
    vm m = {.p = data, .len = len, .what = what, .doc = doc};
    int done = 0, rc = 0;
    while (!done && rc == 0) {
        if (m.pos >= m.len) {
            m.op_pos = m.pos;
            m.op = 0;
            rc = ap_fail("%s: pickle ends at byte %zu without STOP (data.pkl "
                         "truncated)", what, m.len);
            break;
        }
        rc = step(&m, &done);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc != 0) ap_pk_free(doc);
    return rc;
}
