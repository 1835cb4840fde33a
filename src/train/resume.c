/* resume.c: where a training run starts (resume.h). */
#include "train/resume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/path.h"
#include "core/rng.h"
#include "train/checkpoint.h"
#include "train/rundir.h"

/* Rank 0: read checkpoint path into the LoRA and Adam moments and check it
 * belongs to this run (base weights, seed, the identity keys of the config).
 * Returns AP_OK; AP_ERR with *foreign 0 (unreadable or damaged: another
 * checkpoint may do) or 1 (another run's: refuse). */
static int read_own(ap_job *j, const char *path, int64_t *step, int64_t *adam_step, int *foreign) {
    ap_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    *foreign = 0;
    int rc = ap_ckpt_read(path, &j->sd.unet.lora, j->opt.m, j->opt.v, &meta);
    char diff[2048];
    if (rc) {
        /* unreadable or damaged */
    } else if (meta.base_hash && strcmp(meta.base_hash, j->base_hash)) {
        rc = ap_fail("%s: trained on other base weights (content hash %s, this model %s): "
                     "resume with the model it was trained on", path, meta.base_hash, j->base_hash);
        *foreign = 1;
    } else if (meta.seed != j->cfg->seed) {
        rc = ap_fail("%s: written with seed %llu, the config says seed %llu: expected the same "
                     "seed to resume", path, (unsigned long long)meta.seed,
                     (unsigned long long)j->cfg->seed);
        *foreign = 1;
    } else if (ap_identity_diff(meta.config, j->cfg->text, diff, sizeof diff)) {
        rc = ap_fail("%s: written by a run with other settings: %s (checkpoint -> %s). Expected "
                     "the same values to resume (only keys such as num_epochs, save_freq, "
                     "vis_freq, per_gpu_capacity and paths may change); to train with the new "
                     "values start a new run (--set run_name=NAME, or --overwrite), or start "
                     "from its LoRA with resume_from: %s/pytorch_lora_weights.safetensors",
                     path, diff, j->cfg->path, path);
        *foreign = 1;
    }
    *step = meta.step, *adam_step = meta.adam_step;
    ap_ckpt_meta_free(&meta);
    return rc;
}

/* resume_from (a checkpoint directory, or a LoRA file or directory). */
static void from_resume_from(ap_job *j, ap_start *s, const char *why) {
    const char *p = j->cfg->resume_from;
    char st[4200];
    snprintf(st, sizeof st, "%s/state.h5", p);
    int foreign = 0;
    if (ap_is_file(st)) {
        if (read_own(j, p, &s->step, &s->adam_step, &foreign)) {
            fprintf(stderr, "alignprop-mpi: resume_from: %s\n", ap_errmsg());
            s->code = foreign ? AP_EXIT_USAGE : AP_EXIT_FAIL;
            return;
        }
        s->from = AP_FROM_CHECKPOINT;
        fprintf(stderr, "%s: starting from resume_from %s (step %lld)\n", why, p,
                (long long)s->step);
    } else {
        if (ap_unet_load_lora(&j->sd.unet, p)) {
            fprintf(stderr, "alignprop-mpi: resume_from: %s\n", ap_errmsg());
            s->code = AP_EXIT_FAIL;
            return;
        }
        s->from = AP_FROM_LORA;
        fprintf(stderr, "%s: starting from the LoRA of resume_from %s (step 0, fresh "
                "optimizer)\n", why, p);
    }
}

/* --resume auto: the newest checkpoint of the run that verifies; damaged
 * ones are set aside with a warning; none good: refuse unless restart. */
static void from_auto(ap_job *j, ap_start *s, int restart) {
    int64_t *steps = NULL;
    int n = 0, bad = 0;
    if (ap_run_dir_clean_tmp(j->run_dir) < 0)
        fprintf(stderr, "warning: %s\n", ap_errmsg());
    if (ap_ckpt_steps(j->run_dir, &steps, &n)) {
        fprintf(stderr, "alignprop-mpi: resume: %s\n", ap_errmsg());
        s->code = AP_EXIT_FAIL;
        return;
    }
    for (int i = n - 1; i >= 0; i--) {
        char p[4200], aside[4300];
        snprintf(p, sizeof p, "%s/checkpoints/checkpoint_%lld", j->run_dir, (long long)steps[i]);
        int foreign = 0;
        if (!read_own(j, p, &s->step, &s->adam_step, &foreign)) {
            s->from = AP_FROM_CHECKPOINT, s->own = 1;
            fprintf(stderr, "resumed from %s at step %lld\n", p, (long long)s->step);
            break;
        }
        if (foreign) {
            fprintf(stderr, "alignprop-mpi: resume: %s\n", ap_errmsg());
            s->code = AP_EXIT_USAGE;
            break;
        }
        bad++;
        fprintf(stderr, "warning: skipping %s: %s\n", p, ap_errmsg());
        if (ap_ckpt_set_aside(p, aside, sizeof aside))
            fprintf(stderr, "warning: %s\n", ap_errmsg());
        else
            fprintf(stderr, "warning: moved it aside to %s; trying the checkpoint before it\n", aside);
    }
    free(steps);
    if (s->code || s->from) return;
    if (bad && !restart) {
        fprintf(stderr, "alignprop-mpi: %s/checkpoints: none of its %d checkpoint%s verifies "
                "(see above; set aside as *.corrupt): refusing to start the run over; "
                "%s/log.h5 is left as it is. Expected a good checkpoint, or --restart to start "
                "again from step 0%s\n", j->run_dir, bad, bad == 1 ? "" : "s", j->run_dir,
                j->cfg->resume_from[0] ? " (from resume_from)" : "");
        s->code = AP_EXIT_FAIL;
        return;
    }
    const char *why = bad ? "--restart: no checkpoint verifies" : "no checkpoint in the run directory";
    if (j->cfg->resume_from[0]) from_resume_from(j, s, why);
    else fprintf(stderr, "%s (%s/checkpoints): starting from step 0\n", why, j->run_dir);
}

int ap_job_start(ap_job *j, const char *resume, int restart, int64_t total, ap_start *s) {
    memset(s, 0, sizeof *s);
    if (j->dist->rank == 0) {
        if (resume && !strcmp(resume, "auto")) {
            from_auto(j, s, restart);
        } else if (resume) {
            char st[4200];
            snprintf(st, sizeof st, "%s/state.h5", resume);
            size_t l = strlen(resume);
            int foreign = 0;
            if (!ap_is_dir(resume) && !(l > 3 && !strcmp(resume + l - 3, ".h5"))) {
                fprintf(stderr, "alignprop-mpi: --resume %s: expected auto, a checkpoint "
                        "directory (checkpoints/checkpoint_<N>/) or its state.h5, found %s; to "
                        "start from a LoRA file, set resume_from to it\n", resume,
                        ap_path_exists(resume) ? "a file that is not state.h5" : "nothing there");
                s->code = AP_EXIT_USAGE;
            } else if (read_own(j, resume, &s->step, &s->adam_step, &foreign)) {
                fprintf(stderr, "alignprop-mpi: resume: %s\n", ap_errmsg());
                s->code = foreign ? AP_EXIT_USAGE : AP_EXIT_FAIL;
            } else {
                s->from = AP_FROM_CHECKPOINT;
                fprintf(stderr, "resumed from %s at step %lld\n", resume, (long long)s->step);
            }
        } else if (j->cfg->resume_from[0]) {
            from_resume_from(j, s, "fresh run");
        }
        int64_t done = s->own ? ap_run_dir_done_step(j->run_dir) : -1;
        s->finished = s->from == AP_FROM_CHECKPOINT && s->own && done >= 0 && done == s->step &&
                      s->step >= total;
    }
    AP_TRY(ap_dist_bcast(j->dist, s, sizeof *s));
    if (s->code) return AP_OK;
    const int64_t bytes = (int64_t)(j->sd.unet.lora.total * sizeof(float));
    if (s->from == AP_FROM_SCRATCH) { /* also where rank 0 read a checkpoint that failed */
        AP_TRY(ap_unet_init_lora(&j->sd.unet, ap_key(j->cfg->seed, AP_KEY_LORA, 0, 0)));
    } else {
        AP_TRY(ap_dist_bcast(j->dist, j->sd.unet.lora.flat, bytes));
    }
    if (s->from == AP_FROM_CHECKPOINT) {
        AP_TRY(ap_dist_bcast(j->dist, j->opt.m, bytes));
        AP_TRY(ap_dist_bcast(j->dist, j->opt.v, bytes));
    } else {
        memset(j->opt.m, 0, (size_t)bytes), memset(j->opt.v, 0, (size_t)bytes);
        s->step = s->adam_step = 0;
    }
    j->step = s->step;
    j->opt.step = s->adam_step;
    return AP_OK;
}
