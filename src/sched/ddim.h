/* ddim.h: the DDIM sampler of diffusers 0.17.1 (DDIMScheduler) as AlignProp
 * uses it and AlignProp's truncated backprop rule.
 *
 * Notes: docs/ddim.md. The schedule (ap_ddim: betas, alphas_cumprod,
 * timesteps) is built once from a diffusers scheduler config; a step is a
 * pure elementwise function of (step index i, x, eps) and the schedule.
 * Forward and backward evaluate the same float32 expressions in the same
 * order as diffusers' step() and PyTorch autograd, so they agree bit for bit
 * with torch 1.13 on the CPU (tests/sched/test_ddim.c).
 *
 * Gradients here are activation gradients: outputs are overwritten (=).
 * The per-element arithmetic is the ap_ddim_update op (ops/ddim_step.h);
 * this file keeps the schedule and the host-side scalars of each step.
 */
#ifndef AP_SCHED_DDIM_H
#define AP_SCHED_DDIM_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "ops/ddim_step.h"

#define AP_DDIM_MAX_TRAIN 2048 /* largest num_train_timesteps supported */
#define AP_DDIM_NAME 32        /* room for a config string value */

/* A diffusers scheduler config (the DDIMScheduler.__init__ arguments). */
typedef struct ap_ddim_config {
    int num_train_timesteps;
    double beta_start, beta_end;         /* Python floats */
    char beta_schedule[AP_DDIM_NAME];    /* "scaled_linear" | "linear" */
    int trained_betas;                   /* 1: the config lists betas (unsupported) */
    int clip_sample;                     /* clamp predicted x0 to +-clip_sample_range */
    double clip_sample_range;
    int set_alpha_to_one;                /* final "previous" alpha: 1, or alphas_cumprod[0] */
    int steps_offset;
    char prediction_type[AP_DDIM_NAME];  /* "epsilon" | "v_prediction" */
    int thresholding;                    /* must be 0 */
    char timestep_spacing[AP_DDIM_NAME]; /* "leading" | "trailing" */
    int rescale_betas_zero_snr;          /* must be 0 */
    double eta; /* step()'s eta argument, not a diffusers config key; AlignProp: 0 */
} ap_ddim_config;

/* DDIMScheduler's own defaults (linear 1e-4..0.02, clip_sample and
 * set_alpha_to_one true, steps_offset 0, leading, eta 0). */
void ap_ddim_config_defaults(ap_ddim_config *c);
/* SD v1.5's scheduler config as AlignProp loads it (docs/ddim.md §1):
 * scaled_linear 0.00085..0.012, clip_sample false, set_alpha_to_one false,
 * steps_offset 1, epsilon, leading, eta 0. */
void ap_ddim_config_sd15(ap_ddim_config *c);
/* Read a diffusers scheduler_config.json (any scheduler class, e.g. SD's
 * PNDMScheduler file) over the DDIM defaults, as DDIMScheduler.from_config
 * does: keys DDIM does not take are ignored; a missing clip_sample stays TRUE
 * (DDIM's default, docs/ddim.md §1). Errors name the file, the key, the expected
 * type or values and what was found. eta is set to 0. */
int ap_ddim_config_from_json(ap_ddim_config *c, const char *path);
/* Check that a config is one this implementation runs (errors name the key
 * and the supported values); ap_ddim_init calls it. */
int ap_ddim_config_check(const ap_ddim_config *c);

/* The noise schedule and the sampling timesteps. */
typedef struct ap_ddim {
    int num_train_timesteps;
    int steps;                            /* inference steps (set_timesteps) */
    int step_ratio;                       /* num_train_timesteps // steps: t -> prev_t */
    int clip_sample;
    float clip_sample_range;
    float eta;
    int vpred;                            /* 1: the model predicts v (SD 2.x 768) */
    int timesteps[AP_DDIM_MAX_TRAIN];     /* (steps), loop order: noisiest first */
    float betas[AP_DDIM_MAX_TRAIN];       /* (num_train_timesteps) */
    float alphas_cumprod[AP_DDIM_MAX_TRAIN]; /* (num_train_timesteps) */
    float final_alpha_cumprod;            /* "previous" alpha of the last step */
} ap_ddim;

/* Build the schedule: the float32 betas and alphas_cumprod of __init__ and
 * the timesteps of set_timesteps(steps). 1 <= steps <= num_train_timesteps. */
int ap_ddim_init(ap_ddim *s, const ap_ddim_config *c, int steps);

/* The scalars of step i (0 <= i < steps), each a float32 as diffusers has it. */
typedef struct ap_ddim_coef {
    int t, prev_t;         /* timesteps[i], t - step_ratio (< 0 on the last step) */
    float alpha_t;         /* alphas_cumprod[t] */
    float alpha_prev;      /* alphas_cumprod[prev_t], or final_alpha_cumprod */
    float sqrt_alpha_t;    /* alpha_t ** 0.5 */
    float sqrt_beta_t;     /* (1 - alpha_t) ** 0.5 */
    float sqrt_alpha_prev; /* alpha_prev ** 0.5 */
    float sigma;           /* eta * variance ** 0.5 (0 when eta = 0) */
    float sqrt_dir;        /* (1 - alpha_prev - sigma**2) ** 0.5 */
    /* Epsilon prediction without clipping, x_prev = c_x * x + c_eps * eps
     * (+ sigma * noise):
     * c_x = sqrt_alpha_prev / sqrt_alpha_t,
     * c_eps = sqrt_dir - c_x * sqrt_beta_t (rounded once from double). The
     * step functions do not use them (they follow diffusers' op order). */
    float c_x, c_eps;
} ap_ddim_coef;
int ap_ddim_coeffs(const ap_ddim *s, int i, ap_ddim_coef *c);

/* One step at index i: x_prev = scheduler.step(eps, timesteps[i], x).prev_sample,
 *   x0 = (x - sqrt_beta_t * eps) / sqrt_alpha_t   [clamped when clip_sample]
 *   x_prev = sqrt_alpha_prev * x0 + sqrt_dir * eps [+ sigma * noise when eta > 0]
 * eps is the model output: with prediction_type "v_prediction" it is v and
 * x0 = sqrt_alpha_t x - sqrt_beta_t v, the eps above sqrt_alpha_t v +
 * sqrt_beta_t x (docs/ddim.md §4).
 * through ap_ddim_update_forward (ops/ddim_step.h) with step i's scalars.
 * x, eps, noise, x_prev: the same shape, e.g. (B, 4, 64, 64). x_prev may
 * alias x or eps. noise is read only when eta > 0 (diffusers'
 * variance_noise) and may be NULL otherwise. */
int ap_ddim_step(ap_ctx *ctx, const ap_ddim *s, int i, const ap_tensor *x_prev,
                 const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise);

/* Backward of ap_ddim_step given dx_prev = dL/dx_prev:
 *   dx = dL/dx, deps = dL/deps (each may be NULL: not wanted; overwritten).
 * For v prediction, deps is dL/dv and both follow ops/ddim_step.h. For
 * epsilon prediction without clipping these are dx = c_x * dx_prev, deps = c_eps * dx_prev up to
 * rounding; computed as autograd does: dx = (dx_prev * sqrt_alpha_prev) /
 * sqrt_alpha_t, deps = dx_prev * sqrt_dir - dx * sqrt_beta_t. With
 * clip_sample, x and eps (the step's inputs) give the clamp mask; otherwise
 * they may be NULL. dx may alias dx_prev. No gradient reaches the noise (a
 * constant). Classifier-free guidance is ap_guidance_forward/_backward in
 * ops/ddim_step.h. */
int ap_ddim_step_backward(ap_ctx *ctx, const ap_ddim *s, int i, const ap_tensor *dx,
                          const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x,
                          const ap_tensor *eps);

/* Truncated backpropagation (docs/ddim.md §8): at which steps gradients flow
 * through the UNet outputs (eps_u, eps_c). A detached step still passes
 * dx = c_x * dx_prev along the latent; it only skips the UNet backward. */
typedef struct ap_trunc_config {
    int truncated_backprop;      /* config.truncated_backprop */
    int truncated_backprop_rand; /* config.truncated_backprop_rand */
    int minmax[2];               /* config.truncated_backprop_minmax, both inclusive */
    int trunc_backprop_timestep; /* config.trunc_backprop_timestep */
    /* 0: AlignProp main.py at 7f4503f: a fresh draw for every step.
     * 1: one draw per trajectory (the paper's intent, AlignProp issue #15). */
    int per_trajectory;
} ap_trunc_config;

/* minmax[0] <= minmax[1]. */
int ap_trunc_check(const ap_trunc_config *c);
/* 1 when step i needs a fresh draw K before ap_trunc_attached: in main.py,
 * K = random.randint(minmax[0], minmax[1]) from Python's global `random`
 * (seeded by accelerate's set_seed(seed + process index); the prompt draws
 * random.choice come from the same stream), one per step i = 0..steps-1,
 * only when truncated_backprop and truncated_backprop_rand. With
 * per_trajectory, only step 0 draws. */
int ap_trunc_needs_draw(const ap_trunc_config *c, int i);
/* 1 when gradients flow through the UNet calls of step i, 0 when main.py
 * detaches them: not truncated -> 1; fixed -> i >= trunc_backprop_timestep;
 * random -> i >= K (K: the latest draw; ignored otherwise). */
int ap_trunc_attached(const ap_trunc_config *c, int i, int draw);
/* The whole plan for one trajectory: attached[i] for i < steps, drawing
 * through draw(rng, lo, hi) (inclusive bounds) in main.py's order. Returns the
 * number of draws consumed, or AP_ERR. */
typedef int (*ap_trunc_draw_fn)(void *rng, int lo, int hi);
int ap_trunc_plan(const ap_trunc_config *c, int steps, ap_trunc_draw_fn draw, void *rng,
                  unsigned char *attached);

#endif
