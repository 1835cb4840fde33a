/* tape.h: caller-owned tapes, the one ownership rule of forward and backward.
 *
 * Every layer and model forward has the argument order
 *     (ctx, tape, model, saved, outputs..., inputs...)
 * and every backward
 *     (ctx, tape, model, saved, input gradients..., output gradients...).
 * The model is const: it holds weights (and pointers to gradient buffers),
 * never per-call state. What a forward keeps for its backward lives in two
 * caller-owned places: the tape's arena (activations, device memory of the
 * context's backend) and the saved struct (host descriptors pointing into
 * the tape). Temporaries of a call come from ctx->tmp and are released on
 * return. tape NULL: inference (nothing kept; saved holds only scratch
 * descriptors).
 *
 * Tapes are epoch-checked: a forward stamps its saved struct with the tape,
 * the tape's epoch and the model; backward refuses saved activations that
 * came from another tape or model (foreign), from an inference forward, or
 * from a recording the tape has since been reset over (stale:
 * ap_tape_reset bumps the epoch). See docs/backend.md "Tapes".
 */
#ifndef AP_CORE_TAPE_H
#define AP_CORE_TAPE_H

#include <stdint.h>

#include "core/ctx.h"

typedef struct ap_tape {
    ap_arena *mem;  /* saved activations: the caller's arena (owned, a view, or measuring) */
    uint64_t epoch; /* unique in the process; ap_tape_reset moves it on */
} ap_tape;

/* The stamp a forward leaves in its saved struct. */
typedef struct ap_tape_rec {
    const ap_tape *tape; /* NULL: the forward kept nothing */
    uint64_t epoch;
    const void *model;
} ap_tape_rec;

/* A tape over mem (which must outlive it), in a fresh epoch. */
ap_tape ap_tape_on(ap_arena *mem);
/* Forget every recording: the arena is emptied, the epoch moves on, and
 * backward refuses saved structs stamped before. */
void ap_tape_reset(ap_tape *t);

/* Forward: stamp rec (tape may be NULL: inference). */
void ap_tape_record(ap_tape_rec *rec, const ap_tape *tape, const void *model);
/* Backward: AP_OK when rec was stamped by a forward of model on tape in
 * its current epoch, else an error naming op and what is wrong. */
int ap_tape_check(const char *op, const ap_tape_rec *rec, const ap_tape *tape, const void *model);

/* ctx->tmp, or an error naming op when the caller gave the context none. */
ap_arena *ap_ctx_tmp(const ap_ctx *ctx, const char *op);

#endif
