/* tokenizer.h: the CLIP byte-level BPE tokenizer in its two flavours.
 *
 *  - HF: transformers 4.30.2 CLIPTokenizer (the slow one, with ftfy present)
 *    as SD v1.5 uses it: tokenizer(text, padding="max_length", max_length=77,
 *    truncation=True). Files: the tokenizer folder's vocab.json + merges.txt.
 *    ids = [<|startoftext|>] + first (L-2) content ids + [<|endoftext|>],
 *    padded with <|endoftext|> (49407) to L, or with the folder's pad_token
 *    (ap_tokenizer_hf_pad_from_dir: SD 2.x pads with "!", id 0).
 *  - open_clip: SimpleTokenizer + tokenize() of open_clip (as vendored by
 *    HPSv2). File: bpe_simple_vocab_16e6.txt.gz. ids = [sot] + content +
 *    [eot]; longer than L: first L kept, the last overwritten with eot;
 *    padded with 0.
 *
 * Algorithm: docs/clip.md section 6 and docs/hps.md section 6. Text
 * clean-up (ftfy 6.1.1 fix_text with its defaults, mojibake repair and NFC
 * included; html.unescape; whitespace) is in textclean.h. Input is UTF-8;
 * invalid bytes are decoded as Python's errors="replace" does.
 */
#ifndef AP_TEXT_TOKENIZER_H
#define AP_TEXT_TOKENIZER_H

#include <stdint.h>

typedef struct ap_tokenizer ap_tokenizer;

/* Load the HF flavour from a tokenizer folder's vocab.json (flat object
 * token -> id) and merges.txt ("#version" line, then "a b" per line; the
 * first 48,894 merges are used, as CLIPTokenizer does). Errors name the file
 * and the place. */
int ap_tokenizer_load_hf(ap_tokenizer **out, const char *vocab_json, const char *merges_txt);
/* Set an HF tokenizer's padding id from the folder dir as
 * CLIPTokenizer.from_pretrained resolves pad_token: special_tokens_map.json,
 * else tokenizer_config.json, else <|endoftext|>. Errors name the file and
 * the key; a pad_token missing from the vocabulary is an error. */
int ap_tokenizer_hf_pad_from_dir(ap_tokenizer *t, const char *dir);

/* Load the open_clip flavour from bpe_simple_vocab_16e6.txt.gz (or a
 * shorter file of the same format): header line, then merges; the vocabulary
 * is rebuilt as SimpleTokenizer does (bytes, bytes+</w>, merges, then
 * <start_of_text>, <end_of_text>). */
int ap_tokenizer_load_openclip(ap_tokenizer **out, const char *bpe_gz);

/* Tokenize one NUL-terminated UTF-8 prompt into ids[context_len] (int32,
 * context_len >= 2; 77 for CLIP) with the padding and truncation of the
 * tokenizer's flavour (see above). */
int ap_tokenize(const ap_tokenizer *t, const char *text, int32_t *ids, int context_len);

/* Number of ids of the vocabulary (49408 for CLIP). */
int ap_tokenizer_vocab_size(const ap_tokenizer *t);

void ap_tokenizer_free(ap_tokenizer *t);

#endif
