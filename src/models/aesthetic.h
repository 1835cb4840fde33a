/* aesthetic.h: AlignProp's aesthetic reward (docs/clip.md §4-§7),
 * forward and backward w.r.t. the generated image (all weights frozen):
 *
 *   p = preprocess(image)            clamp(x/2 + 0.5, 0, 1), Resize, Normalize (clip_common.h)
 *   e = CLIP get_image_features(p)   (B, 768)  (clip_vision.h)
 *   u = e / |e|_2                    no epsilon (torch.linalg.vector_norm)
 *   r = MLP(u)                       (B) Linear layers.0, .2, .4, .6, .7 in a row:
 *                                    dropouts are identities in eval, and there
 *                                    are NO activations between the Linears
 *   loss_b = |r_b - target|          target = aesthetic_target = 10 (grad_scale 1);
 *                                    target NAN: loss_b = -r_b
 *
 * The MLP's widths are read off its checkpoint (the real file
 * sac+logos+ava1-l14-linearMSE.pth: 768 -> 1024 -> 128 -> 64 -> 16 -> 1),
 * so scaled-down test models load the same way. AlignProp's training loss is
 * 0.01 * mean_b(loss_b): pass dloss_b = 0.01 / B (/ accumulation steps) to
 * backward.
 */
#ifndef AP_MODELS_AESTHETIC_H
#define AP_MODELS_AESTHETIC_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "io/weights.h"
#include "models/clip_vision.h"

#define AP_AESTHETIC_TARGET 10.0f

typedef struct ap_aesthetic {
    ap_clip_vision clip;   /* vision tower + visual_projection */
    ap_params mlp_params;  /* layers.{0,2,4,6,7}.{weight,bias} */
    int dims[6];           /* widths: in, 4 hidden, out (1) */
    ap_tensor w[5], b[5];  /* (dims[i+1], dims[i]), (dims[i+1]) */
    float target;          /* AP_AESTHETIC_TARGET, or NAN for loss = -reward */
} ap_aesthetic;

typedef struct ap_aesthetic_saved {
    ap_tape_rec rec;  /* the forward's stamp (core/tape.h) */
    ap_tensor image;  /* (B, 3, H, W) caller-owned */
    ap_tensor p;      /* (B, 3, S, S) preprocessed pixels */
    ap_vit_saved vit;
    ap_tensor e, norm, u; /* (B, P), (B), (B, P) */
    ap_tensor reward;     /* (B) */
} ap_aesthetic_saved;

/* Load the MLP from a torch.save'd state dict (.pth) or safetensors file;
 * widths from the tensors' shapes. */
int ap_aesthetic_mlp_load(ap_aesthetic *m, const char *path);
/* CLIPModel directory (openai/clip-vit-large-patch14 layout) + MLP file;
 * target = AP_AESTHETIC_TARGET. Fails unless the MLP's input width equals
 * the projection width. */
int ap_aesthetic_load(ap_aesthetic *m, const char *clip_dir, const char *mlp_path);
void ap_aesthetic_free(ap_aesthetic *m);

/* r (B) = MLP(u (B, dims[0])); scratch only. */
int ap_aesthetic_mlp_forward(ap_ctx *ctx, const ap_aesthetic *m, const ap_tensor *r,
                             const ap_tensor *u);
/* du (B, dims[0]) (=) from dr (B): the transposed chain g <- g W through
 * layers 7, 6, 4, 2, 0 (no activations). */
int ap_aesthetic_mlp_backward(ap_ctx *ctx, const ap_aesthetic *m, const ap_tensor *du,
                              const ap_tensor *dr);

/* reward (B) and loss (B) (either may be NULL) of image (B, 3, H, W), square,
 * nominally in [-1, 1]. tape NULL: inference. */
int ap_aesthetic_forward(ap_ctx *ctx, ap_tape *tape, const ap_aesthetic *m,
                         ap_aesthetic_saved *sv, const ap_tensor *reward, const ap_tensor *loss,
                         const ap_tensor *image);
/* dimage (B, 3, H, W) (=) from dloss (B) = d(objective)/d(loss_b), after a
 * forward with a tape. d|r - t|/dr = sign(r - t), 0 at r == t (PyTorch). */
int ap_aesthetic_backward(ap_ctx *ctx, ap_tape *tape, const ap_aesthetic *m,
                          const ap_aesthetic_saved *sv, const ap_tensor *dimage,
                          const ap_tensor *dloss);
/* The workspaces of an inference forward, a forward with tape and its
 * backward for images (B, 3, H, W), measured by a dry run of that code on
 * ctx's backend, kernel variant and threads. Weights are never read. */
int ap_aesthetic_plan_measure(ap_ctx *ctx, const ap_aesthetic *m, int64_t B, int64_t H, int64_t W,
                              ap_plan *p);

#endif
