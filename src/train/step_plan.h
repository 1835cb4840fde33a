/* step_plan.h: the measured workspaces of one training micro-step at the
 * config's real model size, without loading weights (alignprop-mpi CONFIG
 * --dry-run). */
#ifndef AP_TRAIN_STEP_PLAN_H
#define AP_TRAIN_STEP_PLAN_H

#include <stdio.h>

#include "core/ctx.h"
#include "train/config.h"

typedef struct ap_step_plan {
    int cap, threads;     /* micro-batch capacity, threads measured with */
    ap_plan unet;         /* one sample's two CFG rows, one step (the chain's UNet call) */
    ap_plan vae;          /* decoder of the micro-batch (block checkpointing) */
    ap_plan text;         /* prompt encoding of the micro-batch (tmp, scratch) */
    ap_plan reward;       /* the reward model's step (zeros for demo) */
    size_t weights_bytes; /* every frozen weight in fp32 */
    size_t lora_bytes;    /* the LoRA parameters */
} ap_step_plan;

/* Build the config's models (pretrained.model: a diffusers directory, or
 * tiny:SEED written to a temporary directory) and its reward model from
 * their configs with unbacked weights, and measure the workspaces of one
 * micro-step of cap samples by dry runs on threads threads (0: the
 * default). */
int ap_step_plan_measure(ap_step_plan *p, const ap_train_config *c, int cap, int threads);
/* Bytes of every workspace together (scratch once: one context). */
size_t ap_step_plan_total(const ap_step_plan *p);
/* One line per arena and the total; reward names the reward. */
void ap_step_plan_print(FILE *f, const ap_step_plan *p, const char *reward);

#endif
