/* train_cmd.c: `alignprop-mpi CONFIG.yaml`: the training job (and the
 * evaluate / evaluate_soup modes a config selects). One process per rank
 * under mpirun or srun; a plain run is a single rank. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/err.h"
#include "ops/select.h"
#include "io/atomic.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/job.h"
#include "train/rundir.h"
#include "train/step_plan.h"

void ap_train_install_stop_handlers(void);

static void usage(FILE *f) {
    fprintf(f,
        "usage: [mpirun -np N] alignprop-mpi CONFIG.yaml [options]\n"
        "\n"
        "Fine-tunes LoRA adapters of Stable Diffusion by backpropagating a differentiable\n"
        "reward through the DDIM sampler (AlignProp). CONFIG.yaml: see configs/README.md\n"
        "(presets: configs/aesthetic.yaml, hps.yaml, *_k1.yaml, evaluate.yaml,\n"
        "evaluate_soup.yaml, demo.yaml). One MPI rank per GPU (or CPU process).\n"
        "\n"
        "  --set KEY=VALUE         override a config key (repeatable), e.g.\n"
        "                          --set train.learning_rate=1e-4 --set num_epochs=10\n"
        "  --resume auto|PATH      continue from the newest complete checkpoint of the run\n"
        "                          directory (auto: when there is none, from resume_from,\n"
        "                          else from step 0) or from the checkpoint directory PATH\n"
        "  --overwrite             a fresh run into a run directory that holds a run: move\n"
        "                          the old run aside (<dir>.old-<date>-<time>) and start\n"
        "  --restart               with --resume auto: when no checkpoint of the run\n"
        "                          verifies, start again from step 0 instead of refusing\n"
        "  --per-gpu-capacity N    micro-batch of this rank (overrides the config, its\n"
        "                          per-host map and $AP_PER_GPU_CAPACITY)\n"
        "  --threads N             CPU threads per rank (default: $AP_NUM_THREADS,\n"
        "                          $OMP_NUM_THREADS, else the node's cores / ranks on the node)\n"
        "  --dry-run               print the resolved config, the batch arithmetic and the measured\n"
        "                          workspaces of one micro-step (weights not loaded), exit\n"
        "  --help                  this help\n"
        "\n"
        "Outputs under <logdir>/<run_name>: checkpoints/checkpoint_<step>/ (state.h5 +\n"
        "pytorch_lora_weights.safetensors), log.h5 (HDF5, readable while running),\n"
        "eval_vis/ (PNG + grid). SIGUSR1 or SIGTERM: finish the step, checkpoint, exit 75\n"
        "(requeue); then run again with --resume auto. Exit 0 done, 1 failure, 2 bad\n"
        "usage or config.\n");
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "alignprop-mpi: %s: expected an integer in %d..%d, found \"%s\"\n", opt,
                lo, hi, s);
        return AP_ERR;
    }
    *out = (int)v;
    return AP_OK;
}

/* A fresh training run or an evaluation (no --resume) owns its run
 * directory: one that already holds a run is refused, naming the ways on, or
 * with --overwrite moved aside. Rank 0 decides; returns an AP_EXIT_* code. */
static int claim_run_dir(const ap_train_config *cfg, ap_dist *d, int overwrite) {
    int code = AP_EXIT_OK;
    if (d->rank == 0) {
        char dir[4096], what[512], aside[4200];
        int used = ap_run_dir_path(cfg, dir, sizeof dir) ? AP_ERR : ap_run_dir_used(dir, what, sizeof what);
        if (used < 0) {
            fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
            code = AP_EXIT_FAIL;
        } else if (used && !overwrite) {
            fprintf(stderr, "alignprop-mpi: %s: the run directory already holds a run (%s) and "
                    "this is a fresh run (no --resume). Expected one of: --resume auto (continue "
                    "that run), another run_name (--set run_name=NAME: a new run beside it), or "
                    "--overwrite (move the old run aside to %s.old-<date>-<time>, then start)\n",
                    dir, what, dir);
            code = AP_EXIT_USAGE;
        } else if (used) {
            if (ap_run_dir_move_aside(dir, aside, sizeof aside)) {
                fprintf(stderr, "alignprop-mpi: --overwrite: %s\n", ap_errmsg());
                code = AP_EXIT_FAIL;
            } else {
                fprintf(stderr, "--overwrite: the old run %s was moved to %s\n", dir, aside);
            }
        }
    }
    if (ap_dist_bcast(d, &code, sizeof code)) return AP_EXIT_FAIL;
    return code;
}

/* $AP_STOP_FILE (set by jobs/lib.sh): a stop (75) is written there by rank 0
 * and every rank exits 0, because mpirun answers any non-zero exit with its
 * abort sequence, which sleeps odls_base_sigkill_timeout (AP_STOP_GRACE)
 * before it returns. Returns the exit code to use. */
static int report_stop(const ap_dist *d) {
    const char *f = getenv("AP_STOP_FILE");
    if (!f || !*f) return AP_EXIT_REQUEUE;
    if (d->rank == 0 && ap_write_file_atomic(f, "75\n", 3)) {
        fprintf(stderr, "alignprop-mpi: AP_STOP_FILE: %s: exit 75 instead\n", ap_errmsg());
        return AP_EXIT_REQUEUE;
    }
    return AP_EXIT_OK;
}

int ap_cmd_train(int argc, char **argv) {
    static struct option opts[] = {
        {"set", required_argument, 0, 's'},      {"resume", required_argument, 0, 'r'},
        {"dry-run", no_argument, 0, 'd'},        {"per-gpu-capacity", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},  {"help", no_argument, 0, 'h'},
        {"overwrite", no_argument, 0, 'o'},      {"restart", no_argument, 0, 'R'},
        {0, 0, 0, 0}};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    const char *resume = NULL, *config = NULL;
    int n_sets = 0, dry = 0, cli_cap = 0, threads = 0, overwrite = 0, restart = 0, ch;
    if (!sets) return AP_EXIT_FAIL;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "alignprop-mpi: --set: expected KEY=VALUE, found \"%s\"\n", optarg);
                free(sets);
                return AP_EXIT_USAGE;
            }
            sets[n_sets++] = optarg;
            break;
        case 'r': resume = optarg; break;
        case 'd': dry = 1; break;
        case 'o': overwrite = 1; break;
        case 'R': restart = 1; break;
        case 'c':
            if (parse_int("--per-gpu-capacity", optarg, 1, 256, &cli_cap)) goto usage_err;
            break;
        case 't':
            if (parse_int("--threads", optarg, 1, 4096, &threads)) goto usage_err;
            break;
        case 'h': usage(stdout); free(sets); return AP_EXIT_OK;
        default: goto usage_err;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "alignprop-mpi: expected one CONFIG.yaml, found %d positional argument%s%s%s\n",
                argc - optind, argc - optind == 1 ? "" : "s", argc - optind > 1 ? ": " : "",
                argc - optind > 1 ? argv[optind + 1] : "");
        goto usage_err;
    }
    config = argv[optind];
    if (resume && !*resume) {
        fprintf(stderr, "alignprop-mpi: --resume: expected auto or a checkpoint path, found \"\"\n");
        goto usage_err;
    }

    if (overwrite && resume) {
        fprintf(stderr, "alignprop-mpi: --overwrite starts a fresh run and --resume %s continues "
                "one: give one of them\n", resume);
        goto usage_err;
    }
    if (restart && (!resume || strcmp(resume, "auto"))) {
        fprintf(stderr, "alignprop-mpi: --restart: expected together with --resume auto\n");
        goto usage_err;
    }

    const char *nt = getenv("AP_NUM_THREADS");
    if (nt && *nt) {
        int n_env = 0;
        if (parse_int("AP_NUM_THREADS (environment)", nt, 1, 4095, &n_env)) goto usage_err;
    }

    ap_dist d;
    if (ap_dist_init(&d, &argc, &argv)) {
        fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
        free(sets);
        return AP_EXIT_FAIL;
    }
    ap_train_config cfg;
    int code = AP_EXIT_OK;
    if (ap_config_load(&cfg, config, sets, n_sets)) {
        if (d.rank == 0) fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
        code = AP_EXIT_USAGE;
        goto done_nocfg;
    }
    int cap = 0;
    if (ap_config_capacity(&cfg, d.host, cli_cap, &cap)) {
        fprintf(stderr, "alignprop-mpi: rank %d (%s): %s\n", d.rank, d.host, ap_errmsg());
        code = AP_EXIT_USAGE;
        goto done;
    }
    /* before --dry-run: a dry run refuses what the run refuses (a GPU job
     * script checked with --dry-run must not start without its backend) */
    if (ap_backend_check(cfg.backend)) {
        fprintf(stderr, "alignprop-mpi: rank %d: %s: %s\n", d.rank, cfg.path, ap_errmsg());
        code = AP_EXIT_USAGE;
        goto done;
    }
    if (dry) {
        int *caps = calloc((size_t)d.world, sizeof *caps);
        ap_batch_plan plan;
        if (!caps || ap_dist_allgather_int(&d, cap, caps) ||
            ap_batch_plan_make(&plan, &cfg, d.world, caps)) {
            if (d.rank == 0) fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
            code = AP_EXIT_USAGE;
        } else {
            if (d.rank == 0) ap_config_print(stdout, &cfg, &plan);
            ap_batch_plan_free(&plan);
            ap_step_plan sp;
            if (d.rank == 0 && ap_step_plan_measure(&sp, &cfg, cap, threads)) {
                /* the config is valid; only the model to measure is missing
                 * or unreadable here (a login node without the weights) */
                printf("# measured plan: not available: %s\n", ap_errmsg());
            } else if (d.rank == 0) {
                ap_step_plan_print(stdout, &sp, cfg.reward == AP_REWARD_AESTHETIC ? "aesthetic"
                                                : cfg.reward == AP_REWARD_HPS ? "hps"
                                                : cfg.reward == AP_REWARD_MIX ? "mixture"
                                                : cfg.reward == AP_REWARD_PICKSCORE ? "pickscore" : "demo: none");
            }
        }
        free(caps);
        goto done;
    }
    /* bf16: frozen weights stored in bf16 as the models load (train/job.c).
     * fp16 (the presets' value, from the reference's CUDA runs) keeps fp32 on
     * the CPU: switching it to f16 storage would change every preset's run. */
    if (!strcmp(cfg.mixed_precision, "bf16")) {
        if (d.rank == 0)
            fprintf(stderr, "note: mixed_precision \"bf16\": frozen UNet, VAE decoder and reward "
                    "weights stored in bf16 (LoRA, gradients and AdamW in fp32)\n");
    } else if (d.rank == 0 && strcmp(cfg.mixed_precision, "no") != 0) {
        fprintf(stderr, "note: mixed_precision \"%s\" applies to the CUDA backend; the CPU backend "
                "computes in fp32 (bf16 stores the frozen weights in bf16)\n", cfg.mixed_precision);
    }
    if (ap_config_check_files(&cfg)) {
        if (d.rank == 0) fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
        code = AP_EXIT_USAGE;
        goto done;
    }
    if (!threads && !getenv("AP_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / (d.local_world > 0 ? d.local_world : 1));
        if (threads < 1) threads = 1;
    }
    /* an evaluation (only_eval, soup_inference) writes eval.h5 and eval_vis/
     * into its run directory just as a training run does */
    if (!resume && (code = claim_run_dir(&cfg, &d, overwrite))) goto done;
    ap_train_install_stop_handlers();
    ap_job job;
    if (ap_job_open(&job, &cfg, &d, cap, threads)) {
        fprintf(stderr, "alignprop-mpi: rank %d: %s\n", d.rank, ap_errmsg());
        code = AP_EXIT_FAIL;
    } else {
        ap_dist_print0(&d, "alignprop-mpi: %s on %d rank%s (%d threads on rank 0), reward %s, "
                       "model %s\n", cfg.mode == AP_RUN_TRAIN ? "training" : "evaluation",
                       d.world, d.world > 1 ? "s" : "", job.ctx.n_threads,
                       ap_reward_name(job.reward), job.model_dir);
        code = cfg.mode == AP_RUN_TRAIN ? ap_job_train(&job, resume, restart) : ap_job_evaluate_only(&job);
    }
    if (code == AP_EXIT_FAIL && d.world > 1) ap_dist_abort(&d, AP_EXIT_FAIL);
    if (code == AP_EXIT_REQUEUE) code = report_stop(&d);
    ap_job_close(&job);
done:
    ap_config_free(&cfg);
done_nocfg:
    ap_dist_finalize(&d);
    free(sets);
    return code;
usage_err:
    fprintf(stderr, "(alignprop-mpi --help lists the options)\n");
    free(sets);
    return AP_EXIT_USAGE;
}
