/* clip_text.h: CLIP text towers (docs/clip.md §2, docs/hps.md §4), forward only (frozen).
 *
 *   h = token_embedding[ids] + position_embedding[0..N-1]      (B, N, C)
 *   h = causal pre-LN encoder layers (nn/encoder.h)
 *   out = final LayerNorm(h)                                   (B, N, C)
 *
 * ap_text_tower holds the weights and runs the forward; ap_clip_text is the
 * transformers CLIPTextModel around it (SD v1.5's text_encoder/: config.json +
 * model.safetensors or pytorch_model.bin; `position_ids` ignored), whose
 * output is last_hidden_state. The HPSv2 text tower (models/hps.h) is the same
 * ap_text_tower declared with OpenCLIP names. Token ids are int32 (B, N), N <=
 * the position table (77), every id < vocab.
 */
#ifndef AP_MODELS_CLIP_TEXT_H
#define AP_MODELS_CLIP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/weights.h"
#include "nn/encoder.h"

typedef struct ap_text_tower {
    int vocab, max_pos, C, F, layers, heads;
    float eps;
    ap_enc_act act;
    ap_tensor tok_emb;      /* (vocab, C) */
    ap_tensor pos_emb;      /* (max_pos, C) */
    ap_enc_layer *layer;    /* (layers), causal */
    ap_tensor lnf_w, lnf_b; /* (C) final LayerNorm */
} ap_text_tower;

/* out (B, N, C) = final_layer_norm(encoder(embeddings(ids))); ids (B, N) int32. */
int ap_text_tower_forward(ap_ctx *ctx, const ap_text_tower *t,
                          const ap_tensor *out, const int32_t *ids, int64_t B, int64_t N);
/* The ctx->tmp and scratch ap_text_tower_forward takes for (B, N),
 * measured by a dry run of it on ctx's backend, kernel variant and threads
 * (tape_bytes 0: forward only). Weights are never read. */
int ap_text_tower_plan_measure(ap_ctx *ctx, const ap_text_tower *t, int64_t B, int64_t N,
                               ap_plan *p);

typedef struct ap_clip_text {
    ap_text_tower t;
    ap_params params; /* one flat buffer, transformers key names */
} ap_clip_text;

/* Dimensions from a CLIPTextConfig object (config.json of CLIPTextModel, or the
 * "text_config" member of a CLIPModel config), with transformers' defaults for
 * absent keys; hidden_act "quick_gelu" or "gelu". what names the file. */
int ap_clip_text_config(ap_clip_text *m, const ap_json *cfg, const char *what);
/* Declare every parameter ("text_model.embeddings.token_embedding.weight", ...)
 * in state-dict order without allocating (m's dims set by ap_clip_text_config). */
int ap_clip_text_declare(ap_clip_text *m);
/* Read dir/config.json, declare, allocate and fill from the weights file. */
int ap_clip_text_load(ap_clip_text *m, const char *dir);
void ap_clip_text_free(ap_clip_text *m);

#endif
