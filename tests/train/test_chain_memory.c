/* test_chain_memory: every tensor buffer of a training step comes from the
 * context's backend, planned once (docs/cuda.md §6, docs/backend.md §4).
 *
 * On the tiny saved pipeline of test_chain_golden with the demo reward:
 * ap_chain_init takes exactly planned_bytes through ap_arena_init_on (the
 * arenas that are device memory on CUDA, guarded mappings on the CPU) in 5
 * blocks (buffers, UNet/VAE phase, reward tape, reward temporaries, the
 * reward's saved tensors), and
 * three full steps (forward, backward through every attached step) then
 * allocate nothing: no further block, and the context's scratch neither
 * grows nor moves. The same counters hold on CUDA, where the chain's host
 * mallocs would otherwise be host pointers handed to a device backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "ops/backend.h"

#include "pipeline/sd.h"
#include "testutil.h"
#include "train/chain.h"

#define B 2
#define S 4
#define HW 16

int main(void) {
    printf("test_chain_memory: a step's tensor buffers all come from the backend, none inside the loop\n");
    const char *fx = tu_fixtures_dir();
    if (!fx) return tu_skip("AP_FIXTURES_DIR is not set");
    ap_st_file *g = tu_fixture_open("train_chain");
    if (!g) return tu_skip("fixture train_chain.safetensors missing");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    ap_sd sd;
    char dir[4096], lora[4200];
    snprintf(dir, sizeof dir, "%s/sd_tiny", fx);
    snprintf(lora, sizeof lora, "%s/sd_tiny/lora", fx);
    int rc = ap_sd_open(&sd, dir, lora);
    if (!tu_check(rc == 0, "open %s + LoRA%s%s", dir, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return tu_exit();
    ap_tensor t;
    float *noise = tu_fixture(g, "inputs.noise", &t), *cond = tu_fixture(g, "inputs.cond", &t);
    float *uncond = tu_fixture(g, "inputs.uncond", &t);
    ap_reward *demo = NULL;
    rc = ap_reward_open_kind(&demo, AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 10, 1);
    if (!tu_check(rc == 0, "demo reward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return tu_exit();

    long blocks0, blocks1, blocks2;
    size_t bytes0, bytes1, bytes2;
    ap_arena_on_stats(&blocks0, &bytes0);
    ap_chain ch;
    const ap_text_tower *tt = &sd.text.t;
    rc = ap_chain_init(&ch, &ctx, &sd.unet, &sd.vae, demo, &sd.sched, S, 7.5f, B, HW, HW,
                       tt->max_pos, tt->C);
    if (!tu_check(rc == 0, "chain init%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) return tu_exit();
    ap_arena_on_stats(&blocks1, &bytes1);
    tu_check(bytes1 - bytes0 == ch.planned_bytes && blocks1 - blocks0 == 5,
             "ap_chain_init: %ld blocks, %zu bytes through ap_arena_init_on; planned_bytes %zu in 5 "
             "blocks (exact)", blocks1 - blocks0, bytes1 - bytes0, ch.planned_bytes);
    tu_check(ch.device == ctx.device && ch.bufs.cap > 0,
             "chain buffers (%zu bytes) on the context's device (%s)", ch.bufs.cap, ctx.be->name);

    ap_ctx_fix_scratch(&ctx); /* as the job does after planning: a step may not grow it */
    const char *scratch = ctx.scratch;
    const size_t scratch_cap = ctx.scratch_cap;
    unsigned char att[B * S];
    memset(att, 1, sizeof att);
    float dloss[B] = {0.005f, 0.005f}, loss[B], reward[B];
    const char *prompts[B] = {"a photo of a cat", "a dog"};
    ap_chain_io io = {.b = B, .noise = noise, .cond = cond, .uncond = uncond, .prompts = prompts,
                      .attached = att, .dloss = dloss, .loss = loss, .reward = reward};
    ap_unet_zero_lora_grads(&sd.unet);
    for (int step = 0; step < 3 && !rc; step++) rc = ap_chain_run(&ch, &ctx, &io);
    tu_check(rc == 0, "three steps (forward and full backward)%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    ap_arena_on_stats(&blocks2, &bytes2);
    tu_check(blocks2 == blocks1 && bytes2 == bytes1 && ctx.scratch == scratch &&
                 ctx.scratch_cap == scratch_cap,
             "three steps allocate nothing: %ld new blocks (%zu bytes), scratch %zu -> %zu bytes, "
             "%s", blocks2 - blocks1, bytes2 - bytes1, scratch_cap, ctx.scratch_cap,
             ctx.scratch == scratch ? "same block" : "moved");
    ap_chain_free(&ch);
    ap_reward_free(demo);
    free(noise), free(cond), free(uncond);
    ap_sd_close(&sd);
    ap_st_close(g);
    ap_ctx_free(&ctx);
    return tu_exit();
}
