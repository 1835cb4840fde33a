/* prompts.h: prompt files (one prompt per line, as in AlignProp's assets/ folder).
 * Lines are stripped of surrounding white space; empty lines are skipped. */
#ifndef AP_TEXT_PROMPTS_H
#define AP_TEXT_PROMPTS_H

/* Read every prompt of path into *out (n strings, malloc'ed). A missing or
 * unreadable file, one with no prompt, a NUL byte or invalid UTF-8 fails
 * with a message naming the file (and line). */
int ap_prompts_read(const char *path, char ***out, int *n);
void ap_prompts_free(char **p, int n);

#endif
