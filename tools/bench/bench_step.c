/* bench_step.c: our side of tools/bench-step (a benchmark, not a test): one
 * AlignProp optimizer step through the training chain (train/chain.h).
 *
 *   bench_step --dir D --trunc k1|rand --name NAME [--threads N] [--reps N]
 *              [--precision fp32|bf16|fp16]
 *   bench_step --write-tiny D [--seed S]
 *   bench_step --weights-sd15 UNET_CONFIG_JSON
 *
 * The first form loads what tools/bench/step_torch.py wrote into D: the UNet
 * (D/unet) with its LoRA (D/pytorch_lora_weights.bin, rank 4), the VAE
 * (D/vae), the DDIM config (D/scheduler), and D/io.safetensors (noise, cond,
 * uncond, the attached masks att_k1 / att_rand drawn in Python), then runs
 * --reps optimizer steps exactly as the training job does for one sample:
 * zero LoRA grads, ap_chain_run (50 DDIM steps, CFG 7.5, demo reward,
 * dloss = loss_coeff / 1), clip_grad_norm_(5), AdamW. The time is the best
 * rep after the first (the first alone with --reps 1). Prints one
 * "BENCH case=... s_per_sample=... peak_rss_mb=..." line (VmHWM of this
 * process) with the first step's reward and grad norm, which must match
 * PyTorch's (same weights, noise and mask).
 * --precision stores the frozen UNet and VAE weights in that dtype
 * (mixed_precision; io/weights.h): the case is then named NAME_TRUNC_bf16 and
 * the line carries precision= and weights_mb= (UNet + VAE decoder block).
 * --weights-sd15 prints, without allocating, the weight bytes of the SD v1.5
 * UNet (its config.json, e.g. tests/fixtures/manifests/sd15_unet_config.json)
 * and VAE decoder in fp32 and bf16: "WEIGHTS model=... precision=... mb=...".
 * The second form writes the demo's tiny model (pipeline/tiny.h) into D;
 * --variant prints the CPU, its features, the kernel variant (core/isa.h) and the
 * conv2d path (ops/conv2d.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/isa.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/unet.h"
#include "models/vae.h"
#include "ops/conv2d.h"
#include "pipeline/tiny.h"
#include "sched/ddim.h"
#include "train/adamw.h"
#include "train/chain.h"
#include "train/reward.h"

/* The same constants as tools/bench/step_torch.py (configs/aesthetic.yaml values). */
enum { MAX_STEPS = 1000 }; /* the DDIM steps are the masks' length (step_torch.py --steps) */
static const float GUIDANCE = 7.5f;
static const double LOSS_COEFF = 0.01, MAX_GRAD_NORM = 5.0;
static const ap_adamw_hp ADAMW = {1e-3, 0.9, 0.999, 1e-8, 0.1};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* VmHWM (peak resident set) of this process in MB, -1 if unreadable. */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

#define CHECK(x)                                                                   \
    do {                                                                           \
        if ((x) != 0) {                                                            \
            fprintf(stderr, "bench_step: %s\n", ap_errmsg());                      \
            return 1;                                                              \
        }                                                                          \
    } while (0)

static void usage(FILE *o) {
    fprintf(o, "usage: bench_step --dir D --trunc k1|rand --name NAME [--threads N] [--reps N]\n"
               "                  [--precision fp32|bf16|fp16]\n"
               "       bench_step --write-tiny D [--seed S]\n"
               "       bench_step --weights-sd15 UNET_CONFIG_JSON\n"
               "       bench_step --variant   (the CPU, kernel variant and conv2d path)\n");
}

/* SD v1.5 UNet (config at path) and VAE decoder weight blocks, fp32 and bf16. */
static int weights_sd15(const char *path) {
    ap_unet_config uc;
    ap_vae_config vc;
    CHECK(ap_unet_config_read(&uc, path));
    ap_vae_config_sd15(&vc);
    const ap_dtype dts[2] = {AP_F32, AP_BF16};
    for (int k = 0; k < 2; k++) {
        ap_unet m;
        ap_vae v;
        memset(&v, 0, sizeof v);
        ap_weights_set_frozen_dtype(dts[k]);
        CHECK(ap_unet_build(&m, &uc, 4));
        CHECK(ap_vae_declare(&v, &vc));
        ap_unet_store_frozen(&m), ap_vae_store_frozen(&v);
        printf("WEIGHTS model=sd15_unet precision=%s mb=%.1f\n", dts[k] ? "bf16" : "fp32",
               ap_params_bytes(&m.params) / 1048576.0);
        printf("WEIGHTS model=sd15_vae_decoder precision=%s mb=%.1f\n", dts[k] ? "bf16" : "fp32",
               ap_params_bytes(&v.params) / 1048576.0);
        ap_unet_free(&m), ap_vae_free(&v);
    }
    ap_weights_set_frozen_dtype(AP_F32);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *trunc = NULL, *name = "step", *tiny = NULL, *sd15 = NULL;
    ap_dtype precision = AP_F32;
    int threads = 2, reps = 1;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--trunc") && i + 1 < argc) trunc = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--write-tiny") && i + 1 < argc) tiny = argv[++i];
        else if (!strcmp(argv[i], "--weights-sd15") && i + 1 < argc) sd15 = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            if (ap_weights_precision_parse(argv[++i], &precision))
                return fprintf(stderr, "bench_step: --%s\n", ap_errmsg()), 2;
        }
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--variant")) {
            char cpu[512];
            ap_ctx vc;
            if (ap_ctx_init(&vc, 1)) return fprintf(stderr, "bench_step: %s\n", ap_errmsg()), 2;
            printf("%s; conv2d: %s\n", ap_cpu_describe(cpu, sizeof cpu), ap_conv2d_variant(&vc));
            ap_ctx_free(&vc);
            return 0;
        }
        else if (!strcmp(argv[i], "--help")) return usage(stdout), 0;
        else return usage(stderr), 2;
    }
    if (tiny) {
        CHECK(ap_tiny_write(tiny, seed));
        return 0;
    }
    if (sd15) return weights_sd15(sd15);
    if (!dir || !trunc || (strcmp(trunc, "k1") && strcmp(trunc, "rand")) || reps < 1)
        return usage(stderr), 2;

    ap_ctx ctx;
    CHECK(ap_ctx_init(&ctx, threads));
    ap_ctx_pin_threads(&ctx);
    char path[4096];
    ap_weights_set_frozen_dtype(precision);
    ap_unet m;
    snprintf(path, sizeof path, "%s/unet", dir);
    CHECK(ap_unet_open(&m, path, 4));
    CHECK(ap_unet_load_lora(&m, dir));
    ap_vae v;
    snprintf(path, sizeof path, "%s/vae", dir);
    CHECK(ap_vae_load(&v, path));
    ap_ddim_config sc;
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    CHECK(ap_ddim_config_from_json(&sc, path));
    ap_reward *rw;
    CHECK(ap_reward_open_kind(&rw, AP_REWARD_DEMO, NULL, NULL, NULL, NULL, NULL, 0.0, 1.0));

    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    ap_st_file *f;
    CHECK(ap_st_open(&f, path));
    ap_tensor noise, cond, uncond, att;
    char key[16];
    snprintf(key, sizeof key, "att_%s", trunc);
    CHECK(ap_st_load_f32(f, "noise", 0, NULL, &noise));
    CHECK(ap_st_load_f32(f, "cond", 0, NULL, &cond));
    CHECK(ap_st_load_f32(f, "uncond", 0, NULL, &uncond));
    CHECK(ap_st_load_f32(f, key, 0, NULL, &att));
    ap_st_close(f);
    const int STEPS = (int)ap_numel(&att);
    if (STEPS < 1 || STEPS > MAX_STEPS || noise.shape[0] != 1) {
        fprintf(stderr, "bench_step: %s/io.safetensors: expected %s of 1..%d steps and one "
                "sample\n", dir, key, MAX_STEPS);
        return 1;
    }
    unsigned char attached[STEPS];
    int n_att = 0;
    for (int i = 0; i < STEPS; i++) n_att += attached[i] = att.data[i] != 0;

    const int64_t f8 = (int64_t)1 << (v.cfg.n_blocks - 1);
    const int64_t H = noise.shape[2] * f8, W = noise.shape[3] * f8;
    const int64_t L = cond.shape[1], D = cond.shape[2];
    ap_chain ch;
    CHECK(ap_chain_init(&ch, &ctx, &m, &v, rw, &sc, STEPS, GUIDANCE, 1, H, W, L, D));
    ap_adamw opt;
    const int64_t nl = (int64_t)m.lora.total;
    CHECK(ap_adamw_init(&opt, nl));
    const double rss_load = peak_rss_mb();
    fprintf(stderr, "bench_step: %s: image %lldx%lld, latent %lldx%lld, context %lldx%lld, "
            "%zu UNet + %zu VAE weights, %lld LoRA floats, %d of %d steps attached, "
            "%d threads; planned %.1f MB; conv2d: %s\n", name, (long long)H, (long long)W,
            (long long)noise.shape[2], (long long)noise.shape[3], (long long)L, (long long)D,
            m.params.total, v.params.total, (long long)nl, n_att, STEPS, ctx.n_threads,
            ch.planned_bytes / 1e6, ap_conv2d_variant(&ctx));

    const float dloss = (float)(LOSS_COEFF / 1);
    float loss, reward, reward0 = 0;
    double gnorm0 = 0, best = 1e30, all[64];
    const char *prompts[1] = {""};
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        ap_unet_zero_lora_grads(&m);
        ap_chain_io io = {.b = 1, .noise = noise.data, .cond = cond.data, .uncond = uncond.data,
                          .prompts = prompts, .attached = attached, .dloss = &dloss,
                          .loss = &loss, .reward = &reward};
        CHECK(ap_chain_run(&ch, &ctx, &io));
        double gn = ap_clip_grad_norm(m.lora_grad, nl, MAX_GRAD_NORM);
        ap_adamw_step(&opt, &ADAMW, m.lora.flat, m.lora_grad);
        double t = now_s() - t0;
        if (r < 64) all[r] = t;
        if (r == 0) reward0 = reward, gnorm0 = gn;
        if ((reps == 1 || r > 0) && t < best) best = t;
    }
    const char *pname = precision == AP_BF16 ? "bf16" : precision == AP_F16 ? "fp16" : "fp32";
    printf("BENCH case=%s_%s%s%s precision=%s threads=%d attached=%d s_per_sample=%.3f s_all=",
           name, trunc, precision ? "_" : "", precision ? pname : "", pname, ctx.n_threads, n_att,
           best);
    for (int r = 0; r < reps && r < 64; r++) printf("%s%.3f", r ? "," : "", all[r]);
    printf(" weights_mb=%.1f rss_load_mb=%.0f peak_rss_mb=%.0f reward=%.6g gnorm=%.6g\n",
           (ap_params_bytes(&m.params) + ap_params_bytes(&v.params)) / 1048576.0, rss_load,
           peak_rss_mb(), reward0, gnorm0);

    ap_adamw_free(&opt);
    ap_chain_free(&ch);
    free(noise.data), free(cond.data), free(uncond.data), free(att.data);
    ap_reward_free(rw);
    ap_vae_free(&v);
    ap_unet_free(&m);
    ap_ctx_free(&ctx);
    return 0;
}
