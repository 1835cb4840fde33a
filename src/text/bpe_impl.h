/* bpe_impl.h: internals shared by tokenizer.c (BPE, tokenize) and
 * tokenizer_load.c (vocab.json / merges.txt / .txt.gz readers). Not a public API.
 *
 * Symbols are interned UTF-8 strings in the byte-to-unicode alphabet
 * ("a", "a</w>", "ĠðŁ", ...) exactly as the Python tokenizers hold them, so
 * merges and vocabulary behave as Python's string equality does.
 */
#ifndef AP_TEXT_BPE_IMPL_H
#define AP_TEXT_BPE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

enum { AP_TOK_HF = 1, AP_TOK_OPENCLIP = 2 };

typedef struct {
    uint32_t off, len; /* bytes in the arena */
    int32_t id;        /* vocabulary id, -1 when not in the vocabulary */
} ap_bpe_sym;

typedef struct {
    int32_t a, b;           /* left and right symbol */
    int32_t rank, merged;   /* merge rank, symbol of a+b; a == -1: empty slot */
} ap_bpe_pair;

struct ap_tokenizer {
    int flavour;
    char *arena; /* symbol bytes */
    size_t arena_n, arena_cap;
    ap_bpe_sym *syms; /* (nsym) */
    int32_t nsym, sym_cap;
    int32_t *sym_slot; /* hash slots -> symbol index, -1 empty; (slot_cap) */
    size_t slot_cap;
    ap_bpe_pair *pairs; /* hash slots; (pair_cap) */
    size_t pair_n, pair_cap;
    int32_t byte_sym[256], byte_sym_end[256]; /* symbol of byte b, of b + "</w>" */
    const char *special[2];                   /* start / end strings of the flavour */
    int32_t start_id, end_id, pad_id, unk_id; /* unk_id -1: unknown is an error */
    int32_t vocab_size;
};

/* Python's bytes_to_unicode(): the character byte b stands for. */
uint32_t ap_bpe_byte_char(int b);
/* The vocabulary order of open_clip: byte of the i-th vocabulary character. */
int ap_bpe_byte_order(int i);

ap_tokenizer *ap_bpe_new(int flavour);
/* Intern the n bytes at s; returns the symbol index or -1 (error set). */
int32_t ap_bpe_intern(ap_tokenizer *t, const char *s, size_t n);
/* Symbol index of the n bytes at s, or -1 when never interned. */
int32_t ap_bpe_find(const ap_tokenizer *t, const char *s, size_t n);
/* Record merge (a, b) with rank; a later rank for the same pair replaces it
 * (Python dict semantics). Interns a+b. */
int ap_bpe_add_merge(ap_tokenizer *t, int32_t a, int32_t b, int32_t rank);
/* Intern the 512 byte symbols (b and b+"</w>"). */
int ap_bpe_add_byte_syms(ap_tokenizer *t);

#endif
