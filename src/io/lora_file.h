/* lora_file.h: reading a UNet LoRA file of any layout (io/lora_layout.h)
 * into AlignProp's save_attn_procs names, and writing one in any layout.
 *
 * Reading folds kohya's alpha into the up matrices (up *= alpha / rank, the
 * scale current diffusers' kohya conversion and A1111 apply), so what is read
 * always means W' = W + up * down, as this port's LoRA does (docs/lora.md
 * §2, §7). The peft layout is read with alpha = rank (scale 1), as diffusers'
 * load_lora_weights reads a file without network alphas.
 */
#ifndef AP_IO_LORA_FILE_H
#define AP_IO_LORA_FILE_H

#include <stddef.h>

#include "io/lora_layout.h"
#include "io/weights.h"

typedef struct ap_lora_set {
    ap_params p;          /* save_attn_procs names in file order, f32, alpha folded */
    ap_lora_layout layout; /* the layout of the file read */
    int rank;             /* rows of the down matrices (the same for every adapter) */
    int alphas;           /* alpha entries folded (kohya) */
    int alphas_not_rank;  /* of those, how many differ from the rank */
    char file[4096];      /* the file read (a directory resolved to its file) */
} ap_lora_set;

/* A LoRA path (a file, or a directory holding pytorch_lora_weights.
 * safetensors or .bin) -> the file. AP_ERR naming what was looked for. */
int ap_lora_resolve(const char *path, char *file, size_t cap);
/* Read the LoRA at path (any layout, .safetensors or a torch pickle) into s.
 * Errors name the file and key: unknown keys, a down without its up, ranks
 * that differ, non-finite values. */
int ap_lora_read(ap_lora_set *s, const char *path);
void ap_lora_set_free(ap_lora_set *s);
/* Rank of the LoRA at path (rows of its first down matrix) from the shapes
 * only, without reading or checking the data. */
int ap_lora_rank(const char *path, int *rank);

/* Copy s into a model's LoRA slots (save_attn_procs names): every key of s
 * must be a slot and every slot be in s, shapes equal; AP_ERR listing the
 * keys that match nothing, the missing slots and wrong shapes. */
int ap_lora_fill(ap_params *slots, const ap_lora_set *s);

/* Write the LoRA p (save_attn_procs names, f32 data) as a safetensors file
 * of the given layout, atomically (io/st_write.h), with metadata
 * {"format": "pt"}; kohya adds each adapter's alpha (= its rank, scale 1). */
int ap_lora_write(const ap_params *p, ap_lora_layout layout, const char *path);

#endif
