/* clip_vision.h: CLIP ViT image towers with their output projection
 * (docs/clip.md §3, docs/hps.md §3); forward and backward w.r.t. the
 * pixels (weights frozen).
 *
 *   x   = conv(pixels, patch_w, stride = kernel = patch, no bias)   (B, C, g, g)
 *   emb = [cls; x flattened row-major] + pos                       (B, T, C), T = g*g + 1
 *   h   = encoder layers (nn/encoder.h) over ln_pre(emb)
 *   out = ln_post(h[:, 0]) . projection                             (B, P)
 *
 * ap_vit holds the weights and runs; the projection is a Linear weight
 * (P, C) (transformers visual_projection, y = x Wᵀ) or an (C, P) matrix
 * (OpenCLIP visual.proj, y = x W). ap_clip_vision is transformers'
 * CLIPModel vision side (CLIPVisionModel + visual_projection), loaded from a
 * CLIPModel directory (config.json with vision_config and projection_dim;
 * model.safetensors or pytorch_model.bin; text_model.* is left unused).
 *
 * Tape of a forward with a tape: the embeddings, ln_pre's output and every
 * layer's output and saved activations (nn/encoder.h), the class tokens and
 * ln_post statistics; all carved from the tape arena (no malloc per call).
 */
#ifndef AP_MODELS_CLIP_VISION_H
#define AP_MODELS_CLIP_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/weights.h"
#include "nn/encoder.h"

typedef struct ap_vit {
    int image_size, patch, channels, C, F, layers, heads, proj_dim;
    float eps;
    ap_enc_act act;
    int proj_in_out;          /* 0: proj (P, C) Linear weight; 1: proj (C, P) */
    ap_tensor cls;            /* (C) class embedding */
    ap_tensor patch_w;        /* (C, channels, patch, patch) */
    ap_tensor pos;            /* (T, C) */
    ap_tensor pre_w, pre_b;   /* (C) ln_pre / pre_layrnorm */
    ap_enc_layer *layer;      /* (layers) */
    ap_tensor post_w, post_b; /* (C) ln_post / post_layernorm */
    ap_tensor proj;           /* (P, C) or (C, P), see proj_in_out */
} ap_vit;

/* Layers a forward with a tape can record (open_clip ViT-bigG has 48); the
 * records are host structs, kept in the saved struct, not on the tape. */
#define AP_VIT_MAX_LAYERS 48

typedef struct ap_vit_saved {
    ap_tensor pixels;               /* (B, ch, S, S) caller-owned */
    ap_tensor emb;                  /* (B, T, C) before ln_pre */
    ap_tensor pre_mean, pre_rstd;   /* (B*T) */
    ap_tape_rec rec;                /* the forward's stamp (core/tape.h) */
    ap_tensor h[AP_VIT_MAX_LAYERS + 1]; /* h[l] (B, T, C): input of layer l; h[layers] = last output */
    ap_enc_saved ls[AP_VIT_MAX_LAYERS]; /* (layers) */
    ap_tensor cls_tok;              /* (B, C) h[layers][:, 0] */
    ap_tensor post_mean, post_rstd; /* (B) */
    ap_tensor pooled;               /* (B, C) ln_post output */
} ap_vit_saved;

/* Tokens per image: (image_size / patch)^2 + 1. */
int64_t ap_vit_tokens(const ap_vit *v);

/* out (B, P) image features of pixels (B, ch, S, S), S = image_size. tape
 * NULL: inference (sv may be NULL). */
int ap_vit_forward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, ap_vit_saved *sv,
                   const ap_tensor *out, const ap_tensor *pixels);
/* dpixels (B, ch, S, S) (=) from dout (B, P), after a forward with a tape. */
int ap_vit_backward(ap_ctx *ctx, ap_tape *tape, const ap_vit *v, const ap_vit_saved *sv,
                    const ap_tensor *dpixels, const ap_tensor *dout);
/* The workspaces of an inference forward, a forward with tape and its
 * backward for B images, measured by a dry run of that code on ctx's
 * backend, kernel variant and threads. Weights are never read. */
int ap_vit_plan_measure(ap_ctx *ctx, const ap_vit *v, int64_t B, ap_plan *p);

typedef struct ap_clip_vision {
    ap_vit v;
    ap_params params; /* transformers key names */
} ap_clip_vision;

/* Dimensions from a CLIPModel config.json object (vision_config member +
 * projection_dim), transformers' defaults for absent keys. */
int ap_clip_vision_config(ap_clip_vision *m, const ap_json *cfg, const char *what);
/* Declare "vision_model.*" and "visual_projection.weight" in state-dict order
 * without allocating. */
int ap_clip_vision_declare(ap_clip_vision *m);
/* config.json + weights of a CLIPModel directory. */
int ap_clip_vision_load(ap_clip_vision *m, const char *dir);
void ap_clip_vision_free(ap_clip_vision *m);

#endif
