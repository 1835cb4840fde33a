/* tape.c: caller-owned, epoch-checked tapes (tape.h). */
#include "core/tape.h"

#include <string.h>

#include "core/err.h"

/* Epochs are unique in the process, so a tape made again at the same
 * address never revives an old stamp. Model code runs on one thread. */
static uint64_t next_epoch;

ap_tape ap_tape_on(ap_arena *mem) { return (ap_tape){mem, ++next_epoch}; }

void ap_tape_reset(ap_tape *t) {
    ap_arena_reset(t->mem);
    t->epoch = ++next_epoch;
}

void ap_tape_record(ap_tape_rec *rec, const ap_tape *tape, const void *model) {
    rec->tape = tape;
    rec->epoch = tape ? tape->epoch : 0;
    rec->model = model;
}

int ap_tape_check(const char *op, const ap_tape_rec *rec, const ap_tape *tape, const void *model) {
    if (!tape) return ap_fail("%s: backward needs the tape of its forward, found none", op);
    if (!rec->tape) {
        if (!rec->model)
            return ap_fail("%s: these saved activations were never recorded by a forward", op);
        return ap_fail("%s: the forward ran without a tape (inference): nothing was kept for "
                       "backward", op);
    }
    if (rec->tape != tape)
        return ap_fail("%s: foreign tape: the saved activations were recorded on another tape "
                       "(%s), not on %s", op, rec->tape->mem->what ? rec->tape->mem->what : "?",
                       tape->mem->what ? tape->mem->what : "this one");
    if (rec->model != model)
        return ap_fail("%s: foreign saved activations: recorded by a forward of another model",
                       op);
    if (rec->epoch != tape->epoch)
        return ap_fail("%s: stale tape: %s was reset after the forward (recorded in epoch %llu, "
                       "now %llu)", op, tape->mem->what ? tape->mem->what : "the tape",
                       (unsigned long long)rec->epoch, (unsigned long long)tape->epoch);
    return AP_OK;
}

ap_arena *ap_ctx_tmp(const ap_ctx *ctx, const char *op) {
    if (!ctx->tmp) ap_fail("%s: the context has no temporaries arena (ctx->tmp)", op);
    return ctx->tmp;
}
