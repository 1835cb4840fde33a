/* ddim.c: DDIM schedule and step (diffusers 0.17.1 DDIMScheduler), CFG
 * combination and truncated-backprop rule (CPU reference).
 *
 * Accumulation rule: no parameters; every gradient output is overwritten (=).
 *
 * Float order, matched bit for bit against torch 1.13 on the CPU:
 * - betas: torch.linspace in float32 as its AVX2 kernel evaluates it (see
 *   torch_linspace_f32), squared for scaled_linear (x ** 2 is x * x).
 * - alphas_cumprod: torch.cumprod over 1 - beta, accumulated in double (the
 *   CPU kernel's acc_type) and rounded to float at every index.
 * - step scalars: 0-dim float32 tensors; x ** 0.5 is sqrtf.
 * - elementwise: one float op per torch kernel, no contraction (this file is
 *   compiled as ISO C, where GCC keeps -ffp-contract=off).
 * Elementwise loops are serial: n = B*4*64*64 floats cost well under a
 * millisecond next to a UNet call.
 */
#include "ddim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "io/json.h"

/* ---------------------------------------------------------------- config */

static void set_name(char *dst, const char *src) {
    snprintf(dst, AP_DDIM_NAME, "%s", src);
}

void ap_ddim_config_defaults(ap_ddim_config *c) {
    memset(c, 0, sizeof *c);
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    set_name(c->beta_schedule, "linear");
    c->clip_sample = 1;
    c->clip_sample_range = 1.0;
    c->set_alpha_to_one = 1;
    c->steps_offset = 0;
    set_name(c->prediction_type, "epsilon");
    set_name(c->timestep_spacing, "leading");
}

void ap_ddim_config_sd15(ap_ddim_config *c) {
    ap_ddim_config_defaults(c);
    c->beta_start = 0.00085;
    c->beta_end = 0.012;
    set_name(c->beta_schedule, "scaled_linear");
    c->clip_sample = 0;
    c->set_alpha_to_one = 0;
    c->steps_offset = 1;
}

int ap_ddim_config_check(const ap_ddim_config *c) {
    const char *w = "DDIM config";
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > AP_DDIM_MAX_TRAIN)
        return ap_fail("%s: num_train_timesteps: expected 2..%d, found %d", w,
                       AP_DDIM_MAX_TRAIN, c->num_train_timesteps);
    if (strcmp(c->beta_schedule, "scaled_linear") != 0 && strcmp(c->beta_schedule, "linear") != 0)
        return ap_fail("%s: beta_schedule: expected \"scaled_linear\" or \"linear\", found "
                       "\"%s\" (not implemented here)",
                       w, c->beta_schedule);
    if (!(c->beta_start >= 0 && c->beta_start < 1))
        return ap_fail("%s: beta_start: expected a number in [0, 1) (0.00085 in SD v1.5), found %g",
                       w, c->beta_start);
    if (!(c->beta_end >= 0 && c->beta_end < 1))
        return ap_fail("%s: beta_end: expected a number in [0, 1) (0.012 in SD v1.5), found %g", w,
                       c->beta_end);
    if (c->steps_offset < 0 || c->steps_offset >= c->num_train_timesteps)
        return ap_fail("%s: steps_offset: expected 0..num_train_timesteps-1 (%d), found %d", w,
                       c->num_train_timesteps - 1, c->steps_offset);
    if (c->trained_betas)
        return ap_fail("%s: trained_betas: expected null, found a list (not implemented here)",
                       w);
    if (strcmp(c->prediction_type, "epsilon") != 0 &&
        strcmp(c->prediction_type, "v_prediction") != 0)
        return ap_fail("%s: prediction_type: expected \"epsilon\" or \"v_prediction\", found "
                       "\"%s\" (\"sample\" is not implemented here)",
                       w, c->prediction_type);
    if (c->thresholding)
        return ap_fail("%s: thresholding: expected false, found true (not implemented here)", w);
    if (c->rescale_betas_zero_snr)
        return ap_fail("%s: rescale_betas_zero_snr: expected false, found true (not "
                       "implemented here)",
                       w);
    if (strcmp(c->timestep_spacing, "leading") != 0 &&
        strcmp(c->timestep_spacing, "trailing") != 0)
        return ap_fail("%s: timestep_spacing: expected \"leading\" or \"trailing\", found "
                       "\"%s\"",
                       w, c->timestep_spacing);
    if (c->clip_sample && !(c->clip_sample_range > 0 && isfinite(c->clip_sample_range)))
        return ap_fail("%s: clip_sample_range: expected > 0, found %g", w, c->clip_sample_range);
    if (!(c->eta >= 0 && c->eta <= 1e6))
        return ap_fail("%s: eta: expected >= 0, found %g", w, c->eta);
    return 0;
}

/* JSON readers: absent key -> keep the default; present with the wrong
 * type -> error naming the key. */
static int json_bool(const ap_json *o, const char *key, int *v) {
    const ap_json *j = ap_json_get(o, key);
    if (!j) return 0;
    if (j->type != AP_JSON_BOOL)
        return ap_fail("key %s: expected true or false, found %s", key,
                       ap_json_type_name(j->type));
    *v = j->boolean;
    return 0;
}

static int json_num(const ap_json *o, const char *key, double *v) {
    const ap_json *j = ap_json_get(o, key);
    if (!j) return 0;
    if (j->type != AP_JSON_NUM)
        return ap_fail("key %s: expected a number, found %s", key, ap_json_type_name(j->type));
    *v = j->num;
    return 0;
}

static int json_int(const ap_json *o, const char *key, int *v) {
    double d = *v;
    AP_TRY(json_num(o, key, &d));
    if (d != floor(d) || fabs(d) > 1e9)
        return ap_fail("key %s: expected an integer, found %g", key, d);
    *v = (int)d;
    return 0;
}

static int json_name(const ap_json *o, const char *key, char *v) {
    const ap_json *j = ap_json_get(o, key);
    if (!j) return 0;
    if (j->type != AP_JSON_STR)
        return ap_fail("key %s: expected a string, found %s", key, ap_json_type_name(j->type));
    if (j->len >= AP_DDIM_NAME || strlen(j->str) != j->len)
        return ap_fail("key %s: unsupported value \"%.40s\"", key, j->str);
    set_name(v, j->str);
    return 0;
}

static int config_from_tree(ap_ddim_config *c, const ap_json *o) {
    if (o->type != AP_JSON_OBJ)
        return ap_fail("expected a JSON object, found %s", ap_json_type_name(o->type));
    AP_TRY(json_int(o, "num_train_timesteps", &c->num_train_timesteps));
    AP_TRY(json_num(o, "beta_start", &c->beta_start));
    AP_TRY(json_num(o, "beta_end", &c->beta_end));
    AP_TRY(json_name(o, "beta_schedule", c->beta_schedule));
    const ap_json *tb = ap_json_get(o, "trained_betas");
    if (tb && tb->type != AP_JSON_NULL) {
        if (tb->type != AP_JSON_ARR)
            return ap_fail("key trained_betas: expected null or a list, found %s",
                           ap_json_type_name(tb->type));
        c->trained_betas = 1;
    }
    AP_TRY(json_bool(o, "clip_sample", &c->clip_sample));
    AP_TRY(json_num(o, "clip_sample_range", &c->clip_sample_range));
    AP_TRY(json_bool(o, "set_alpha_to_one", &c->set_alpha_to_one));
    AP_TRY(json_int(o, "steps_offset", &c->steps_offset));
    AP_TRY(json_name(o, "prediction_type", c->prediction_type));
    AP_TRY(json_bool(o, "thresholding", &c->thresholding));
    AP_TRY(json_name(o, "timestep_spacing", c->timestep_spacing));
    AP_TRY(json_bool(o, "rescale_betas_zero_snr", &c->rescale_betas_zero_snr));
    return ap_ddim_config_check(c);
}

int ap_ddim_config_from_json(ap_ddim_config *c, const char *path) {
    ap_json *root = NULL;
    AP_TRY(ap_json_parse_file(&root, path));
    ap_ddim_config_defaults(c);
    int rc = config_from_tree(c, root);
    ap_json_free(root);
    if (rc) ap_err_prefix("%s: ", path);
    return rc;
}

/* ---------------------------------------------------------------- schedule */

/* torch.linspace(start, end, n, dtype=float32) of torch 1.13's CPU kernel as
 * the AVX2 build runs it. Element k is start + step*k below n/2 and
 * end - step*(n-1-k) above, with step = (end - start) / (n - 1) in float;
 * GCC contracts both to one FMA. The kernel is vectorised: blocks of 16 are
 * two 8-lane vectors whose lane j is base + (j*step) rounded twice (no FMA;
 * found by matching every lane of 32 random linspaces), from the lane-0 value
 * base of the scalar formula; the tail (< 16) uses the scalar formula. Other
 * CPU kernels (AVX512, no-FMA builds, newer scalar-only torch) differ by 1 ulp
 * on some elements. */
static float linspace_at(int64_t k, int64_t n, float start, float end, float step) {
    if (k < n / 2) return fmaf(step, (float)k, start);
    return fmaf(-step, (float)(n - 1 - k), end);
}

static void torch_linspace_f32(float *out, int64_t n, float start, float end) {
    if (n == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(n - 1);
    int64_t k = 0;
    for (; k + 16 <= n; k += 8) {
        float base = linspace_at(k, n, start, end, step);
        out[k] = base;
        for (int j = 1; j < 8; j++) out[k + j] = base + (float)j * step;
        k += 8;
        base = linspace_at(k, n, start, end, step);
        out[k] = base;
        for (int j = 1; j < 8; j++) out[k + j] = base + (float)j * step;
    }
    for (; k < n; k++) out[k] = linspace_at(k, n, start, end, step);
}

/* set_timesteps(steps): "leading" is (arange(steps) * (N // steps)) reversed
 * plus steps_offset; "trailing" is round(arange(N, 0, -N / steps)) - 1 with
 * numpy's float arange and round half to even.
 * 0.17.1's trailing list can hold steps + 1 entries (e.g. steps = 61): such
 * step counts are rejected. */
static int set_timesteps(ap_ddim *s, const ap_ddim_config *c, int steps) {
    int N = c->num_train_timesteps;
    if (strcmp(c->timestep_spacing, "leading") == 0) {
        for (int i = 0; i < steps; i++)
            s->timesteps[i] = (steps - 1 - i) * s->step_ratio + c->steps_offset;
    } else {
        /* numpy arange: length ceil((stop - start) / step), a[0] = start,
         * a[1] = start + step, then a[i] = start + i * (a[1] - a[0]) */
        double ratio = (double)N / steps, start = N, a1 = start + -ratio, delta = a1 - start;
        double len = ceil((0.0 - start) / -ratio);
        if (len != steps)
            return ap_fail("DDIM set_timesteps: timestep_spacing \"trailing\" with %d steps "
                           "gives %.0f timesteps in diffusers 0.17.1 (numpy arange rounding); "
                           "expected %d: choose another step count",
                           steps, len, steps);
        for (int i = 0; i < steps; i++) {
            double v = i == 0 ? start : i == 1 ? a1 : start + i * delta;
            s->timesteps[i] = (int)rint(v) - 1;
        }
    }
    for (int i = 0; i < steps; i++)
        if (s->timesteps[i] < 0 || s->timesteps[i] >= N)
            return ap_fail("DDIM set_timesteps: timestep %d at index %d is outside 0..%d "
                           "(steps_offset %d, %d steps)",
                           s->timesteps[i], i, N - 1, c->steps_offset, steps);
    return 0;
}

int ap_ddim_init(ap_ddim *s, const ap_ddim_config *c, int steps) {
    AP_TRY(ap_ddim_config_check(c));
    int N = c->num_train_timesteps;
    if (steps < 1 || steps > N)
        return ap_fail("DDIM set_timesteps: steps: expected 1..num_train_timesteps (%d), "
                       "found %d",
                       N, steps);
    memset(s, 0, sizeof *s);
    s->num_train_timesteps = N;
    s->steps = steps;
    s->step_ratio = N / steps;
    s->clip_sample = c->clip_sample;
    s->clip_sample_range = (float)c->clip_sample_range;
    s->eta = (float)c->eta;
    s->vpred = strcmp(c->prediction_type, "v_prediction") == 0;
    if (c->beta_schedule[0] == 's') {
        /* Python: beta_start ** 0.5 is C pow() in double; torch casts to float */
        torch_linspace_f32(s->betas, N, (float)pow(c->beta_start, 0.5),
                           (float)pow(c->beta_end, 0.5));
        for (int k = 0; k < N; k++) s->betas[k] = s->betas[k] * s->betas[k];
    } else {
        torch_linspace_f32(s->betas, N, (float)c->beta_start, (float)c->beta_end);
    }
    double acc = 1.0;
    for (int k = 0; k < N; k++) {
        acc *= (double)(1.0f - s->betas[k]);
        s->alphas_cumprod[k] = (float)acc;
    }
    for (int k = 0; k < N; k++)
        if (!(s->alphas_cumprod[k] > 0 && s->alphas_cumprod[k] <= 1))
            return ap_fail("DDIM config: alphas_cumprod[%d] = %g from beta_start %g, beta_end %g "
                           "(%s): expected in (0, 1]; use smaller betas",
                           k, s->alphas_cumprod[k], c->beta_start, c->beta_end, c->beta_schedule);
    s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return set_timesteps(s, c, steps);
}

int ap_ddim_coeffs(const ap_ddim *s, int i, ap_ddim_coef *c) {
    if (i < 0 || i >= s->steps)
        return ap_fail("DDIM step: index i: expected 0..%d, found %d", s->steps - 1, i);
    c->t = s->timesteps[i];
    c->prev_t = c->t - s->step_ratio;
    c->alpha_t = s->alphas_cumprod[c->t];
    c->alpha_prev = c->prev_t >= 0 ? s->alphas_cumprod[c->prev_t] : s->final_alpha_cumprod;
    float beta_t = 1.0f - c->alpha_t, beta_prev = 1.0f - c->alpha_prev;
    c->sqrt_alpha_t = sqrtf(c->alpha_t);
    c->sqrt_beta_t = sqrtf(beta_t);
    c->sqrt_alpha_prev = sqrtf(c->alpha_prev);
    /* _get_variance, then eta * variance ** 0.5 */
    float variance = (beta_prev / beta_t) * (1.0f - c->alpha_t / c->alpha_prev);
    c->sigma = s->eta * sqrtf(variance);
    c->sqrt_dir = sqrtf(1.0f - c->alpha_prev - c->sigma * c->sigma);
    double cx = (double)c->sqrt_alpha_prev / c->sqrt_alpha_t;
    c->c_x = (float)cx;
    c->c_eps = (float)(c->sqrt_dir - cx * c->sqrt_beta_t);
    return 0;
}

/* ---------------------------------------------------------------- step */

/* The update op's scalars of step i. */
static int scalars(const ap_ddim *s, int i, ap_ddim_scalars *k) {
    ap_ddim_coef c;
    AP_TRY(ap_ddim_coeffs(s, i, &c));
    *k = (ap_ddim_scalars){.sqrt_alpha_t = c.sqrt_alpha_t,
                           .sqrt_beta_t = c.sqrt_beta_t,
                           .sqrt_alpha_prev = c.sqrt_alpha_prev,
                           .sqrt_dir = c.sqrt_dir,
                           .sigma = c.sigma,
                           .clip = s->clip_sample,
                           .clip_range = s->clip_sample_range,
                           .vpred = s->vpred};
    return 0;
}

int ap_ddim_step(ap_ctx *ctx, const ap_ddim *s, int i, const ap_tensor *x_prev,
                 const ap_tensor *x, const ap_tensor *eps, const ap_tensor *noise) {
    ap_ddim_scalars k;
    AP_TRY(scalars(s, i, &k));
    int noisy = s->eta > 0;
    if (noisy && !ap_present(noise))
        return ap_fail("DDIM step: noise: expected a tensor shaped like x when eta > 0 (eta %g), "
                       "found none", s->eta);
    return ap_ddim_update_forward(ctx, x_prev, x, eps, noisy ? noise : NULL, &k);
}

int ap_ddim_step_backward(ap_ctx *ctx, const ap_ddim *s, int i, const ap_tensor *dx,
                          const ap_tensor *deps, const ap_tensor *dx_prev, const ap_tensor *x,
                          const ap_tensor *eps) {
    ap_ddim_scalars k;
    AP_TRY(scalars(s, i, &k));
    if (s->clip_sample && (!ap_present(x) || !ap_present(eps)))
        return ap_fail("DDIM step backward: x, eps: expected the step's inputs (shaped like "
                       "dx_prev) when clip_sample is set, found none");
    return ap_ddim_update_backward(ctx, dx, deps, dx_prev, x, eps, &k);
}

/* ---------------------------------------------------------------- truncation */

int ap_trunc_check(const ap_trunc_config *c) {
    if (c->truncated_backprop && c->truncated_backprop_rand && c->minmax[0] > c->minmax[1])
        return ap_fail("truncated backprop: truncated_backprop_minmax: expected (lo, hi) with "
                       "lo <= hi (random.randint bounds, inclusive), found (%d, %d)",
                       c->minmax[0], c->minmax[1]);
    return 0;
}

int ap_trunc_needs_draw(const ap_trunc_config *c, int i) {
    if (!c->truncated_backprop || !c->truncated_backprop_rand) return 0;
    return c->per_trajectory ? i == 0 : 1;
}

int ap_trunc_attached(const ap_trunc_config *c, int i, int draw) {
    if (!c->truncated_backprop) return 1;
    if (c->truncated_backprop_rand) return i >= draw;
    return i >= c->trunc_backprop_timestep;
}

int ap_trunc_plan(const ap_trunc_config *c, int steps, ap_trunc_draw_fn draw, void *rng,
                  unsigned char *attached) {
    AP_TRY(ap_trunc_check(c));
    int k = 0, draws = 0;
    for (int i = 0; i < steps; i++) {
        if (ap_trunc_needs_draw(c, i)) {
            if (!draw)
                return ap_fail("truncated backprop: draw: expected a random.randint source "
                               "for truncated_backprop_rand, found NULL");
            k = draw(rng, c->minmax[0], c->minmax[1]);
            draws++;
        }
        attached[i] = (unsigned char)ap_trunc_attached(c, i, k);
    }
    return draws;
}
