/* textclean.h: the text clean-up the CLIP tokenizers apply before splitting:
 * ftfy.fix_text (ftfy 6.1.1, default options), html.unescape (Python 3.11)
 * and whitespace_clean. All work on code-point strings.
 *
 * ftfy.fix_text is followed step by step, per newline-terminated segment and
 * to ftfy's fixed point: unescape_html (with the "auto" rule: off from the
 * first segment containing '<' on), fix_encoding (textclean_encoding.c:
 * badness heuristic, the nine single-byte encodings, restore_byte_a0,
 * replace_lossy_sequences, utf-8-variants, decode_inconsistent_utf8, C1
 * controls), fix_c1_controls, fix_latin_ligatures, fix_character_width,
 * uncurl_quotes, fix_line_breaks, remove_terminal_escapes,
 * remove_control_chars and NFC (textclean_nfc.c). fix_surrogates is a no-op
 * here: decoded UTF-8 and every step above produce no surrogates.
 */
#ifndef AP_TEXT_TEXTCLEAN_H
#define AP_TEXT_TEXTCLEAN_H

#include "text/unicode.h"

/* ftfy.fix_text(s) into out (cleared first). */
int ap_ftfy_fix_text(ap_ustr *out, const ap_ustr *s);
/* ftfy.fix_encoding(s) into out (cleared first). */
int ap_ftfy_fix_encoding(ap_ustr *out, const ap_ustr *s);
/* unicodedata.normalize("NFC", s) into out (cleared first). */
int ap_nfc(ap_ustr *out, const ap_ustr *s);
/* Python html.unescape(s) into out (cleared first). */
int ap_html_unescape(ap_ustr *out, const ap_ustr *s);
/* whitespace_clean: runs of regex \s become one space, then str.strip(). In place. */
void ap_whitespace_clean(ap_ustr *s);
/* str.strip(): remove leading and trailing str.isspace() characters. In place. */
void ap_py_strip(ap_ustr *s);

#endif
