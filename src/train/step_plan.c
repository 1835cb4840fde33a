/* step_plan.c: the measured workspaces of one training micro-step at the
 * config's real model size, from the configs and the weights' shapes only
 * (alignprop-mpi CONFIG --dry-run). Every model is built from its
 * config.json with unbacked weights (io/weights.h:
 * ap_params_alloc_unbacked), so an SD v1.5 config is measured in seconds
 * without its 4 GB of weights; the measurements are the dry runs the job
 * itself plans with (ap_chain_init, ap_reward_plan_measure, the text encoder). */
#define _XOPEN_SOURCE 700
#include "train/step_plan.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/path.h"
#include "io/json.h"
#include "models/aesthetic.h"
#include "models/clip_text.h"
#include "models/hps.h"
#include "models/pickscore.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/tiny.h"

typedef struct {
    ap_unet unet;
    ap_vae vae;
    ap_clip_text text;
    ap_aesthetic aes;
    ap_hps hps;
    ap_pickscore ps;
} models;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int json_file(ap_json **j, const char *dir, const char *file, char *path, size_t n) {
    snprintf(path, n, "%s/%s", dir, file);
    return ap_json_parse_file(j, path);
}

/* Whether the config's reward is kind, or a mixture holding it. */
static int uses(const ap_train_config *c, ap_reward_kind kind) {
    if (c->reward != AP_REWARD_MIX) return c->reward == kind;
    for (int i = 0; i < c->n_parts; i++)
        if (c->part_kind[i] == kind) return 1;
    return 0;
}

/* The models of dir (a diffusers directory) and of the reward, declared
 * from their configs, weights unbacked (the aesthetic MLP, a few MB, is
 * read: its widths come from its tensors). */
static int build(models *m, const ap_train_config *c, const char *dir) {
    char path[4200];
    ap_unet_config uc;
    ap_vae_config vc;
    ap_json *j = NULL;
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    AP_TRY(ap_unet_config_read(&uc, path));
    AP_TRY(ap_unet_build(&m->unet, &uc, c->lora_rank));
    AP_TRY(ap_unet_alloc_unbacked(&m->unet));
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    AP_TRY(ap_vae_config_load(&vc, path));
    AP_TRY(ap_vae_declare(&m->vae, &vc));
    AP_TRY(ap_params_alloc_unbacked(&m->vae.params, "VAE decoder (unbacked)"));
    AP_TRY(json_file(&j, dir, "text_encoder/config.json", path, sizeof path));
    int rc = ap_clip_text_config(&m->text, j, path);
    ap_json_free(j), j = NULL;
    AP_TRY(rc);
    AP_TRY(ap_clip_text_declare(&m->text));
    AP_TRY(ap_params_alloc_unbacked(&m->text.params, "text encoder (unbacked)"));
    if (uses(c, AP_REWARD_AESTHETIC)) {
        m->aes.target = AP_AESTHETIC_TARGET;
        AP_TRY(json_file(&j, c->aesthetic_clip, "config.json", path, sizeof path));
        rc = ap_clip_vision_config(&m->aes.clip, j, path);
        ap_json_free(j), j = NULL;
        AP_TRY(rc);
        AP_TRY(ap_clip_vision_declare(&m->aes.clip));
        AP_TRY(ap_params_alloc_unbacked(&m->aes.clip.params, "CLIP vision (unbacked)"));
        AP_TRY(ap_aesthetic_mlp_load(&m->aes, c->aesthetic_mlp));
    }
    if (uses(c, AP_REWARD_PICKSCORE)) {
        AP_TRY(ap_pickscore_declare(&m->ps, c->pickscore_model));
        AP_TRY(ap_params_alloc_unbacked(&m->ps.vis.params, "PickScore vision (unbacked)"));
        AP_TRY(ap_params_alloc_unbacked(&m->ps.text.params, "PickScore text (unbacked)"));
    }
    if (uses(c, AP_REWARD_HPS)) {
        AP_TRY(ap_json_parse_file(&j, c->hps_config));
        rc = ap_hps_config(&m->hps, j, c->hps_config);
        ap_json_free(j);
        AP_TRY(rc);
        AP_TRY(ap_hps_declare(&m->hps));
        AP_TRY(ap_params_alloc_unbacked(&m->hps.params, "HPS (unbacked)"));
    }
    return AP_OK;
}

static void release(models *m) {
    ap_unet_free(&m->unet);
    ap_vae_free(&m->vae);
    ap_clip_text_free(&m->text);
    ap_aesthetic_free(&m->aes);
    ap_hps_free(&m->hps);
    ap_pickscore_free(&m->ps);
}

static int measure(ap_step_plan *p, models *m, const ap_train_config *c, int cap, int threads) {
    ap_ctx ctx;
    AP_TRY(ap_ctx_init(&ctx, threads));
    p->threads = ctx.n_threads;
    int f = 1 << (m->vae.cfg.n_blocks - 1), res = c->resolution;
    int64_t h = res / f, w = res / f, L = m->text.t.max_pos;
    int rc = res % f ? ap_fail("resolution %d: expected a multiple of %d", res, f) : AP_OK;
    /* as ap_chain_init: one sample's two CFG rows per UNet call */
    if (!rc) rc = ap_unet_plan_measure(&ctx, &m->unet, 2, h, w, L, &p->unet);
    if (!rc) rc = ap_vae_plan_measure(&ctx, &m->vae, cap, h, w, &p->vae);
    if (!rc) rc = ap_text_tower_plan_measure(&ctx, &m->text.t, cap, L, &p->text);
    /* a mixture keeps every part's tape and runs them one after the other,
     * plus one image-sized d(image) for the parts after the first (reward.c) */
    ap_plan part = {0};
    if (!rc && uses(c, AP_REWARD_AESTHETIC))
        rc = ap_aesthetic_plan_measure(&ctx, &m->aes, cap, res, res, &part);
    if (!rc) p->reward = part;
    if (!rc && uses(c, AP_REWARD_HPS)) {
        rc = ap_hps_plan_measure(&ctx, &m->hps, cap, res, res, m->hps.text.max_pos, &part);
        if (!rc) {
            p->reward.tape_bytes += part.tape_bytes;
            if (part.tmp_bytes > p->reward.tmp_bytes) p->reward.tmp_bytes = part.tmp_bytes;
            if (part.scratch_bytes > p->reward.scratch_bytes) p->reward.scratch_bytes = part.scratch_bytes;
        }
    }
    if (!rc && uses(c, AP_REWARD_PICKSCORE)) {
        rc = ap_pickscore_plan_measure(&ctx, &m->ps, cap, res, res, m->ps.text.t.max_pos, &part);
        if (!rc) {
            p->reward.tape_bytes += part.tape_bytes;
            if (part.tmp_bytes > p->reward.tmp_bytes) p->reward.tmp_bytes = part.tmp_bytes;
            if (part.scratch_bytes > p->reward.scratch_bytes) p->reward.scratch_bytes = part.scratch_bytes;
        }
    }
    if (!rc && c->reward == AP_REWARD_MIX && c->n_parts > 1)
        p->reward.tmp_bytes += (size_t)cap * 3 * (size_t)res * (size_t)res * sizeof(float);
    ap_ctx_free(&ctx);
    p->weights_bytes = (m->unet.params.total + m->vae.params.total + m->text.params.total +
                        m->aes.clip.params.total + m->aes.mlp_params.total + m->hps.params.total +
                        m->ps.vis.params.total + m->ps.text.params.total) *
                       sizeof(float);
    p->lora_bytes = m->unet.lora.total * sizeof(float);
    return rc;
}

int ap_step_plan_measure(ap_step_plan *p, const ap_train_config *c, int cap, int threads) {
    memset(p, 0, sizeof *p);
    p->cap = cap;
    char tmpdir[] = "/tmp/alignprop-plan-XXXXXX";
    const char *dir = c->model;
    int tiny = !strncmp(c->model, "tiny:", 5);
    if (tiny) { /* the job writes it into the run directory; a dry run into a temporary one */
        if (!mkdtemp(tmpdir)) return ap_fail("dry run: cannot make a temporary directory in /tmp");
        if (ap_tiny_write(tmpdir, strtoull(c->model + 5, NULL, 10))) {
            nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            return AP_ERR;
        }
        dir = tmpdir;
    } else if (!ap_is_dir(dir)) {
        return ap_fail("pretrained.model: %s: expected a diffusers model directory (a CompVis "
                       "file is not measured by --dry-run) or tiny:SEED", dir);
    }
    models m;
    memset(&m, 0, sizeof m);
    int rc = build(&m, c, dir);
    if (!rc) rc = measure(p, &m, c, cap, threads);
    release(&m);
    if (tiny) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc) return ap_err_prefix("measuring one micro-step of %s: ", c->model);
    return AP_OK;
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

size_t ap_step_plan_total(const ap_step_plan *p) {
    size_t s = zmax(zmax(p->unet.scratch_bytes, p->vae.scratch_bytes),
                    zmax(p->text.scratch_bytes, p->reward.scratch_bytes));
    return p->unet.tape_bytes + p->unet.tmp_bytes + p->vae.tape_bytes + p->vae.tmp_bytes +
           p->text.tmp_bytes + p->reward.tape_bytes + p->reward.tmp_bytes + s;
}

void ap_step_plan_print(FILE *f, const ap_step_plan *p, const char *reward) {
    const double MB = 1e6;
    size_t s = zmax(zmax(p->unet.scratch_bytes, p->vae.scratch_bytes),
                    zmax(p->text.scratch_bytes, p->reward.scratch_bytes));
    fprintf(f, "measured plan of one micro-step (%d sample%s, %d threads; dry run, weights "
            "unbacked):\n", p->cap, p->cap == 1 ? "" : "s", p->threads);
    fprintf(f, "  UNet tape      %10.1f MB   (one sample's two CFG rows, one step)\n",
            p->unet.tape_bytes / MB);
    fprintf(f, "  UNet tmp       %10.1f MB\n", p->unet.tmp_bytes / MB);
    fprintf(f, "  VAE tape       %10.1f MB   (block checkpoints of the micro-batch)\n",
            p->vae.tape_bytes / MB);
    fprintf(f, "  VAE tmp        %10.1f MB\n", p->vae.tmp_bytes / MB);
    fprintf(f, "  text tmp       %10.1f MB\n", p->text.tmp_bytes / MB);
    fprintf(f, "  reward tape    %10.1f MB   (%s)\n", p->reward.tape_bytes / MB, reward);
    fprintf(f, "  reward tmp     %10.1f MB\n", p->reward.tmp_bytes / MB);
    fprintf(f, "  scratch        %10.1f MB   (largest of UNet %.1f, VAE %.1f, text %.1f, "
            "reward %.1f)\n", s / MB, p->unet.scratch_bytes / MB, p->vae.scratch_bytes / MB,
            p->text.scratch_bytes / MB, p->reward.scratch_bytes / MB);
    fprintf(f, "  total          %10.1f MB   of workspaces; weights %.1f MB fp32, LoRA %.1f MB "
            "(+ its gradient and AdamW state)\n", ap_step_plan_total(p) / MB,
            p->weights_bytes / MB, p->lora_bytes / MB);
}
