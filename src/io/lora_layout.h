/* lora_layout.h: the key names of a UNet LoRA in the three layouts this port
 * reads and writes (docs/lora.md §6-7), as one table-driven mapping.
 *
 *   diffusers-attn-procs  diffusers 0.17.1 save_attn_procs (AlignProp's file):
 *       <module>.processor.to_q_lora.down.weight / .up.weight
 *       (to_q, to_k, to_v, to_out; an optional "unet." prefix is accepted)
 *   peft                  current diffusers save_lora_weights (peft backend):
 *       unet.<module>.to_q.lora_A.weight / .lora_B.weight
 *       (to_q, to_k, to_v, to_out.0)
 *   kohya                 sd-scripts / A1111 / ComfyUI:
 *       lora_unet_<module with '_'>_to_q.lora_down.weight / .lora_up.weight
 *       and .alpha (a scalar; the update is (alpha / rank) * up * down)
 *
 * <module> is an attention of the UNet ("down_blocks.0.attentions.0.
 * transformer_blocks.0.attn1"). One adapter matrix is an ap_lora_key
 * (module, projection, part), independent of the layout; parsing and
 * formatting go through it, so converting a key is parse then format.
 */
#ifndef AP_IO_LORA_LAYOUT_H
#define AP_IO_LORA_LAYOUT_H

#include <stddef.h>

typedef enum { AP_LORA_ATTN_PROCS = 0, AP_LORA_PEFT, AP_LORA_KOHYA, AP_LORA_LAYOUT_COUNT } ap_lora_layout;

typedef enum { AP_LORA_DOWN = 0, AP_LORA_UP, AP_LORA_ALPHA } ap_lora_part;

/* The projections adapted in each attention, in save_attn_procs order. */
enum { AP_LORA_TO_Q = 0, AP_LORA_TO_K, AP_LORA_TO_V, AP_LORA_TO_OUT, AP_LORA_PROJ_COUNT };

typedef struct ap_lora_key {
    char module[200]; /* attention module path with dots */
    int proj;         /* AP_LORA_TO_Q .. AP_LORA_TO_OUT */
    ap_lora_part part;
} ap_lora_key;

/* "diffusers-attn-procs", "peft", "kohya". */
const char *ap_lora_layout_name(ap_lora_layout l);
/* Name (as above) -> layout; AP_ERR naming the value and the choices. */
int ap_lora_layout_parse(const char *s, ap_lora_layout *out);

/* Parse a stored key of layout l into k. Returns 0, or -1 when the key is
 * not an attention projection adapter of that layout (no error recorded). */
int ap_lora_key_parse(ap_lora_layout l, const char *key, ap_lora_key *k);
/* Write k's name in layout l (peft: with the "unet." prefix). AP_ERR when it
 * does not fit in cap, or an alpha asked of a layout without alphas. */
int ap_lora_key_format(ap_lora_layout l, const ap_lora_key *k, char *out, size_t cap);

/* The layout of a file from its n keys: the one every key parses in. AP_ERR
 * naming file, the layout the keys look like and up to four keys that are no
 * attention adapter of it (text-encoder LoRA, adapters of other layers). */
int ap_lora_layout_detect(const char *const *keys, int n, const char *file, ap_lora_layout *out);

#endif
