/* prompts.h: reading prompt files (one prompt per line), as `sample
 * --prompts` and the training job's prompt files take them.
 *
 * A prompt file is UTF-8 text of at most AP_PROMPTS_MAX_BYTES: lines end in
 * "\n" (a "\r" before it is dropped), have no length limit, and are trimmed
 * of surrounding white space; blank lines are skipped; a leading UTF-8 BOM
 * is ignored. NUL bytes and invalid UTF-8 are refused with the file, line
 * and byte offset; a file without any prompt is refused naming the file.
 */
#ifndef AP_TEXT_PROMPTS_H
#define AP_TEXT_PROMPTS_H

#define AP_PROMPTS_MAX_BYTES (16 << 20)

/* Append the prompts of path to the array (*out, *n) (*out NULL and *n 0 for
 * a new one; each prompt and the array are malloc'd). On failure *out and *n
 * still hold the same prompts (the array may have moved, as with realloc) and
 * the message names the file, line and byte. Free with ap_prompts_free. */
int ap_prompts_read(const char *path, char ***out, int *n);
/* The same keeping blank lines as empty prompts "" (the training job's
 * prompt files, as AlignProp reads them: [l.strip() for l in f.readlines()],
 * so "a\n\nb\n" is "a", "", "b"); a file whose lines are all blank is still
 * refused. */
int ap_prompts_read_lines(const char *path, char ***out, int *n);

/* Check that s[0..len) is text: no NUL byte, valid UTF-8 (no overlong forms,
 * surrogates or code points above U+10FFFF). Returns -1 when it is, else the
 * offset of the first bad byte. */
long ap_text_check(const char *s, long len);

/* Free n prompts and the array. */
void ap_prompts_free(char **p, int n);

#endif
