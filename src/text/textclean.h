/* textclean.h: the text clean-up the CLIP tokenizers apply before splitting:
 * ftfy.fix_text (ftfy 6.1.1 defaults, a documented subset), html.unescape
 * (Python 3.11) and whitespace_clean. All work on code-point strings.
 *
 * ftfy subset. Implemented exactly, in ftfy's order and to its fixed point,
 * per newline-terminated segment: unescape_html (including the "auto" rule:
 * off from the first segment containing '<' on), fix_c1_controls,
 * fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
 * remove_terminal_escapes, remove_control_chars (fix_surrogates cannot apply:
 * decoded UTF-8 holds no surrogates).
 * NOT implemented, so the result differs from ftfy where they would change
 * the text: fix_encoding (mojibake repair, e.g. "cafÃ©" -> "café") and the
 * final NFC normalisation (decomposed accents, compatibility singletons such
 * as U+212B). For text that is already NFC and not mojibake - every prompt
 * of the project, and all precomposed Latin, CJK and emoji text - the result
 * is ftfy's.
 */
#ifndef AP_TEXT_TEXTCLEAN_H
#define AP_TEXT_TEXTCLEAN_H

#include "text/unicode.h"

/* ftfy.fix_text(s) (subset above) into out (cleared first). */
int ap_ftfy_fix_text(ap_ustr *out, const ap_ustr *s);
/* Python html.unescape(s) into out (cleared first). */
int ap_html_unescape(ap_ustr *out, const ap_ustr *s);
/* whitespace_clean: runs of regex \s become one space, then str.strip(). In place. */
void ap_whitespace_clean(ap_ustr *s);
/* str.strip(): remove leading and trailing str.isspace() characters. In place. */
void ap_py_strip(ap_ustr *s);

#endif
