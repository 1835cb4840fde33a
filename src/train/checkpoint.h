/* checkpoint.h: training checkpoints and the LoRA export (rank 0 writes).
 *
 * A checkpoint is a directory RUN/checkpoints/checkpoint_<step>/ published
 * atomically (io/atomic.h: written as a temporary directory, every file
 * fsync'ed, renamed) holding
 *   state.h5                           HDF5: everything to resume exactly
 *   pytorch_lora_weights.safetensors   the LoRA under diffusers save_attn_procs
 *                                      names (sample --lora and diffusers load it)
 *   peft/pytorch_lora_weights.safetensors  the same LoRA under current diffusers'
 *                                      peft names (load_lora_weights; docs/lora.md §7)
 * state.h5 layout:
 *   /lora/<save_attn_procs name>       float32 LoRA tensors (their shapes)
 *   /adam/m, /adam/v                   float32 (n) flat, lora order
 *   attributes on /: step, epoch (int64: the next epoch to run and optimizer
 *     steps done), adam_step (int64), seed (uint64), next_sample (int64: global
 *     sample counter), config (string: the resolved YAML), model (string),
 *     base_hash (string: content hash of the frozen base weights), lora_hash
 *     and adam_hash (strings: ap_hash_floats of the LoRA in lora order, and
 *     of m then v, as 16 hex digits), version (int64, 1). Strings are
 *     variable-length UTF-8 (h5py reads str).
 * A directory without its final name, or whose state.h5 does not open, is
 * not a checkpoint: ap_ckpt_latest skips it (and says so). ap_ckpt_read
 * verifies the content hashes (a checkpoint written before they existed is
 * read with a warning). Temporaries of a writer killed with SIGKILL
 * ("checkpoint_<N>.tmp.<pid>.<n>") are never read or pruned; the training
 * job removes them when it starts (rundir.h ap_run_dir_clean_tmp).
 */
#ifndef AP_TRAIN_CHECKPOINT_H
#define AP_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "io/weights.h"

/* Fast 64-bit content hash of a float buffer, continued from *h (0: start). */
void ap_hash_floats(const float *x, size_t n, uint64_t *h);

typedef struct ap_ckpt_meta {
    int64_t step;        /* optimizer steps done */
    int64_t epoch;       /* epochs completed (the next epoch to run) */
    int64_t adam_step;
    uint64_t seed;
    int64_t next_sample; /* global sample counter */
    const char *config;  /* resolved YAML text (read: owned by the caller after ap_ckpt_read, free()) */
    const char *model;
    const char *base_hash;
} ap_ckpt_meta;

/* Write RUN/checkpoints/checkpoint_<meta->step>/ from lora (names, shapes,
 * data) and the Adam moments m, v (lora->total floats each); an existing
 * directory of that step is replaced as a whole. Then, when limit > 0, keep
 * only `limit` final-named checkpoints of that folder, removing the lowest
 * steps first but never the one just written (each removed directory is
 * renamed aside first, so none is ever half deleted under its name); a
 * pruning failure is a warning on stderr, not an error. path_out (may be
 * NULL) receives the published directory. */
int ap_ckpt_write(const char *run_dir, const ap_params *lora, const float *m, const float *v,
                  const ap_ckpt_meta *meta, int limit, char *path_out, size_t cap);
/* Read a checkpoint directory (or its state.h5) into lora (allocated, same
 * names and shapes: a missing tensor, a wrong shape, or tensors in the file
 * that lora lacks are errors naming the file, tensor, expected and found; a
 * truncated or non-HDF5 file is an error naming the file), m and v
 * (NULL to skip: a LoRA-only read, as evaluate/soup need), and meta (strings
 * malloc'ed; free with ap_ckpt_meta_free). What is read is checked against
 * the stored content hashes (lora_hash; adam_hash when m and v are read): a
 * mismatch is an error naming the file, the hash stored and the one found. */
int ap_ckpt_read(const char *path, ap_params *lora, float *m, float *v, ap_ckpt_meta *meta);
void ap_ckpt_meta_free(ap_ckpt_meta *meta);
/* The newest complete checkpoint of RUN/checkpoints into path (cap bytes);
 * returns 1 when found, 0 when there is none, AP_ERR on an error. */
int ap_ckpt_latest(const char *run_dir, char *path, size_t cap);
/* Steps of the final-named checkpoint_<N> directories of RUN/checkpoints,
 * ascending (*steps malloc'ed, *n of them; none when the folder is missing). */
int ap_ckpt_steps(const char *run_dir, int64_t **steps, int *n);
/* Move a checkpoint that failed to load out of the way, to
 * "<path>.corrupt" (or .corrupt-2, ...), keeping it for inspection; the
 * new name into out. */
int ap_ckpt_set_aside(const char *path, char *out, size_t cap);

#endif
