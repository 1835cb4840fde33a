/* killpoint.h: crash points for the recovery tests.
 *
 * AP_DEBUG_KILL_AT="PHASE:STEP" makes the process SIGKILL itself when it
 * reaches PHASE ("sample": half-way through the DDIM forward, "backward":
 * half-way back through the chain, "checkpoint": with the checkpoint's files
 * written but not yet published) during optimizer step STEP (1-based, the
 * step being computed or, for "checkpoint", the step being saved). Unset, it
 * costs one getenv per call site and step. Used by tests/train/resume.sh to
 * show that a run killed anywhere resumes to the same result. */
#ifndef AP_CORE_KILLPOINT_H
#define AP_CORE_KILLPOINT_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The optimizer step under way (set by the training loop). */
extern int64_t ap_killpoint_step;

static inline void ap_killpoint(const char *phase) {
    const char *s = getenv("AP_DEBUG_KILL_AT");
    if (!s) return;
    size_t n = strlen(phase);
    if (strncmp(s, phase, n) != 0 || s[n] != ':') return;
    if (strtoll(s + n + 1, NULL, 10) != ap_killpoint_step) return;
    fprintf(stderr, "AP_DEBUG_KILL_AT=%s: killing pid %d\n", s, (int)getpid());
    fflush(stderr);
    kill(getpid(), SIGKILL);
}

#endif
