/* config.h: the training job's configuration (alignprop-mpi CONFIG.yaml).
 *
 * A YAML file (libyaml) whose keys are AlignProp's config/align_prop.py
 * fields with the same names and nesting (`train.learning_rate`,
 * `pretrained.model`, ...), plus this port's own keys (reward weight paths,
 * per-node capacity, truncation mode, backend). Every key has a type, a
 * range and a default (the original's general() values); presets live in
 * configs/ (one YAML file each). Loading is strict: an unknown key (with the closest known
 * key suggested), a wrong type, an out-of-range value or a batch arithmetic
 * that does not divide is refused before any model is loaded, with a message
 *   "configs/x.yaml:12: train.learning_rate: expected a number > 0, found "abc""
 * naming file, line, key, value found and what would work. `--set key=value`
 * overrides (as if the key were in the file; line shown as "--set").
 * Relative paths in a config resolve against the config file's directory
 * (`--set` paths against the current directory).
 */
#ifndef AP_TRAIN_CONFIG_H
#define AP_TRAIN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define AP_CFG_PATH 4096
#define AP_CFG_MAX_HOSTS 64

/* MIX: a weighted sum of up to AP_REWARD_MAX_PARTS of the others (reward_fn
 * as a mapping {aesthetic: 1.0, hps: 2.0}) */
typedef enum {
    AP_REWARD_AESTHETIC = 0, AP_REWARD_HPS = 1, AP_REWARD_DEMO = 2, AP_REWARD_MIX = 3,
    AP_REWARD_PICKSCORE = 4
} ap_reward_kind;
#define AP_REWARD_MAX_PARTS 4
/* train: the AlignProp loop; evaluate: only_eval; evaluate_soup: soup_inference. */
typedef enum { AP_RUN_TRAIN = 0, AP_RUN_EVALUATE = 1, AP_RUN_EVALUATE_SOUP = 2 } ap_run_mode;
/* How random truncation draws K (docs/ddim.md §8): per_step = main.py at 7f4503f
 * (a fresh K_i for every step i, step attached when i >= K_i);
 * per_trajectory = the paper (one K per sample: the last K steps attached). */
typedef enum { AP_TRUNC_PER_STEP = 0, AP_TRUNC_PER_TRAJECTORY = 1 } ap_trunc_mode;

typedef struct ap_host_capacity {
    char host[256]; /* hostname as gethostname() reports it */
    int capacity;
} ap_host_capacity;

typedef struct ap_train_config {
    char path[AP_CFG_PATH];            /* the config file as given */

    /* general */
    ap_run_mode mode;                  /* derived: only_eval / soup_inference */
    char run_name[256];                /* run_name ("" -> date-time, as the original) */
    char logdir[AP_CFG_PATH];          /* logdir: runs go to logdir/run_name */
    uint64_t seed;                     /* seed (42) */
    int num_epochs;                    /* num_epochs (>= 1) */
    int save_freq;                     /* save_freq: checkpoint every N epochs (>= 1) */
    int num_checkpoint_limit;          /* num_checkpoint_limit (>= 1) */
    int vis_freq;                      /* vis_freq: evaluate every N epochs (>= 1) */
    int max_vis_images;                /* max_vis_images (>= 0) */
    int same_evaluation;               /* same_evaluation: fixed eval latents */
    int visualize_eval;                /* visualize_eval: write eval PNGs */
    int visualize_train;               /* visualize_train: write train PNGs */
    int log_tensorboard;               /* log_tensorboard: RUN/tb/ event files (this port) */
    char resume_from[AP_CFG_PATH];     /* resume_from: checkpoint dir, LoRA file or "" */
    char resume_from_2[AP_CFG_PATH];   /* resume_from_2: checkpoint dir, "stablediffusion" or "" */
    double mixing_coef_1;              /* mixing_coef_1 in [0, 1] */
    char mixed_precision[8];           /* mixed_precision: "no" | "fp16" | "bf16" (CPU: bf16 weights or fp32) */
    int allow_tf32;                    /* allow_tf32 */
    char backend[8];                   /* backend: "cpu" | "cuda" (this port) */
    int grad_checkpoint;               /* grad_checkpoint (always on; kept for the key set) */
    int checksum_every;                /* ranks compare a LoRA checksum every N steps (this port) */
    int max_nonfinite_steps;           /* skipped non-finite steps in a row that stop the run (this port) */

    /* prompts and reward */
    char prompt_file[AP_CFG_PATH];     /* prompt_fn as a file: one prompt per line */
    char eval_prompt_file[AP_CFG_PATH];/* eval_prompt_fn as a file ("" -> prompt_file) */
    ap_reward_kind reward;             /* reward_fn: "aesthetic" | "hps" | "demo" | a mapping (MIX) */
    int n_parts;                       /* MIX: components, in the mapping's order */
    ap_reward_kind part_kind[AP_REWARD_MAX_PARTS];
    double part_weight[AP_REWARD_MAX_PARTS];
    double aesthetic_target;           /* aesthetic_target (10) */
    double grad_scale;                 /* grad_scale (1) */
    char aesthetic_clip[AP_CFG_PATH];  /* reward.aesthetic_clip: openai/clip-vit-large-patch14 dir */
    char aesthetic_mlp[AP_CFG_PATH];   /* reward.aesthetic_mlp: sac+logos+ava1-l14-linearMSE.pth */
    char hps_checkpoint[AP_CFG_PATH];  /* reward.hps_checkpoint: HPS_v2_compressed.pt or HPS_v2.1_compressed.pt */
    char hps_version[8];               /* reward.hps_version: "v2.0" | "v2.1" (which HPS the checkpoint is) */
    char hps_config[AP_CFG_PATH];      /* reward.hps_config: open_clip ViT-H-14.json */
    char hps_tokenizer[AP_CFG_PATH];   /* reward.hps_tokenizer: bpe_simple_vocab_16e6.txt.gz */
    char pickscore_model[AP_CFG_PATH]; /* reward.pickscore_model: yuvalkirstain/PickScore_v1 dir */
    char pickscore_tokenizer[AP_CFG_PATH]; /* reward.pickscore_tokenizer: dir with vocab.json, merges.txt */

    /* sampling */
    char model[AP_CFG_PATH];           /* pretrained.model: diffusers dir, CompVis file, or "tiny:SEED" */
    char revision[64];                 /* pretrained.revision (accepted, unused: no hub) */
    int lora_rank;                     /* lora_rank (4) */
    int steps;                         /* steps: DDIM steps (50) */
    double eta;                        /* eta (0) */
    double guidance_scale;             /* sd_guidance_scale (7.5) */
    int resolution;                    /* resolution: image height = width (512; tiny 64) */

    /* truncated backprop (docs/ddim.md §8) */
    int truncated_backprop;            /* truncated_backprop */
    int truncated_backprop_rand;       /* truncated_backprop_rand */
    int truncated_backprop_minmax[2];  /* truncated_backprop_minmax, inclusive */
    int trunc_backprop_timestep;       /* trunc_backprop_timestep */
    ap_trunc_mode trunc_mode;          /* truncated_backprop_mode: per_step | per_trajectory */

    /* train.* */
    double learning_rate;              /* train.learning_rate */
    double adam_beta1, adam_beta2;     /* train.adam_beta1, train.adam_beta2 */
    double adam_weight_decay;          /* train.adam_weight_decay */
    double adam_epsilon;               /* train.adam_epsilon */
    double max_grad_norm;              /* train.max_grad_norm (> 0; clipping always on) */
    double loss_coeff;                 /* train.loss_coeff */
    int draft_lv_n;                    /* draft_lv_n: DRaFT-LV draws (0: off) */
    double kl_coeff;                   /* kl_coeff: regulariser toward the base model (>= 0, 0: off) */
    int total_samples_per_epoch;       /* train.total_samples_per_epoch */
    int total_batch_size;              /* train.total_batch_size: samples per optimizer step */
    int per_gpu_capacity;              /* train.per_gpu_capacity: micro-batch per rank (default) */
    int n_hosts;                       /* train.per_gpu_capacity_by_host: {hostname: capacity} */
    ap_host_capacity hosts[AP_CFG_MAX_HOSTS];

    char *text;                        /* the resolved config as YAML (owned) */
} ap_train_config;

/* Defaults (general()), then the file, then each "key=value" of sets (n_sets),
 * then relative paths resolved and every value checked. Nothing is loaded.
 * Errors: see the header comment. */
int ap_config_load(ap_train_config *c, const char *path, const char *const *sets, int n_sets);
void ap_config_free(ap_train_config *c);
/* Every file and directory the run mode needs exists and is readable (model
 * unless tiny:, prompt files, reward weights, resume_from): errors name the
 * key and the path. Called after --dry-run, before any model is loaded. */
int ap_config_check_files(const ap_train_config *c);

/* Per-rank micro-batch size: the config's per_gpu_capacity, overridden by
 * per_gpu_capacity_by_host[host], then by $AP_PER_GPU_CAPACITY, then by
 * cli (> 0: --per-gpu-capacity), each later one winning. Errors name the
 * source of a bad value. */
int ap_config_capacity(const ap_train_config *c, const char *host, int cli, int *capacity);

/* The batch arithmetic for world ranks with capacities cap[world]. An
 * optimizer step takes total_batch_size samples with global indices
 * [s*N, (s+1)*N); every rank runs the same number of micro-batches G =
 * ceil(N / sum(cap)); rank r takes share[r] <= G*cap[r] consecutive samples
 * starting at first[r] (ranks in order, each filled before the next), so the
 * global batch is exact for any capacities. */
typedef struct ap_batch_plan {
    int world;
    int global_batch;        /* N = total_batch_size */
    int steps_per_epoch;     /* total_samples_per_epoch / N */
    int micro_batches;       /* G, per rank per optimizer step */
    int *capacity;           /* (world) */
    int *share;              /* (world) samples per optimizer step */
    int *first;              /* (world) offset of the rank's first sample in the step */
} ap_batch_plan;
int ap_batch_plan_make(ap_batch_plan *p, const ap_train_config *c, int world, const int *cap);
void ap_batch_plan_free(ap_batch_plan *p);

/* --dry-run: the resolved config (YAML) and the batch arithmetic. */
void ap_config_print(FILE *f, const ap_train_config *c, const ap_batch_plan *p);

#endif
