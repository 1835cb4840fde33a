/* rundir.h: the training run directory (<logdir>/<run_name>) as one run.
 *
 * A run directory holds one run: its identity is the resolved config minus
 * the keys that may change when a run is resumed (ap_identity_resumable:
 * num_epochs, save and evaluation frequencies, capacities, output and weight
 * paths, ...), plus the base weights' content hash and the seed (both part of
 * a checkpoint's attributes; the seed is also a config key). A fresh run
 * (no --resume) refuses a directory that already holds a run; --overwrite
 * moves the old one aside (<dir>.old-<date>-<time>), never deleting it.
 *
 * Files of the run directory besides checkpoints/ and log.h5:
 *   done       "step N\n": the run finished N optimizer steps, its final
 *              evaluation and final checkpoint are written (resuming it is a
 *              no-op until num_epochs grows)
 *   tiny-model the in-process tiny model (pretrained.model tiny:SEED)
 */
#ifndef AP_TRAIN_RUNDIR_H
#define AP_TRAIN_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

#include "train/config.h"

/* <logdir>/<run_name> (run_name "": the config file's name without .yaml). */
int ap_run_dir_path(const ap_train_config *c, char *out, size_t cap);
/* 1 when dir holds a run's outputs (anything but tiny-model/), 0 when it is
 * missing or empty; what is there is named in what (cap bytes). */
int ap_run_dir_used(const char *dir, char *what, size_t cap);
/* Rename dir to "<dir>.old-YYYYmmdd-HHMMSS" (then "-2", "-3", ... when that
 * exists); the new name into out. */
int ap_run_dir_move_aside(const char *dir, char *out, size_t cap);
/* Remove the temporaries of checkpoint writers that died
 * (checkpoints/checkpoint_<N>.tmp.*); returns how many, or AP_ERR. */
int ap_run_dir_clean_tmp(const char *dir);
/* The done marker: write "step N"; read it (-1: none). */
int ap_run_dir_mark_done(const char *dir, int64_t step);
int64_t ap_run_dir_done_step(const char *dir);

/* 1 when the dotted key (as the resolved YAML names it: "num_epochs",
 * "train.per_gpu_capacity") may change when a run is resumed. */
int ap_identity_resumable(const char *key);
/* Compare two resolved configs (ap_train_config.text) on the identity keys
 * present in both; the differing keys, with both values, into diff (cap
 * bytes: "train.learning_rate (0.01 -> 0.02), seed (42 -> 7)"). Returns how
 * many keys differ. */
int ap_identity_diff(const char *was, const char *now, char *diff, size_t cap);

#endif
