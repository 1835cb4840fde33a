/* tiny.h: a tiny Stable Diffusion built in-process from a seed.
 *
 * ap_tiny_write(dir, seed) writes a complete diffusers-format model directory
 * (model_index.json; unet/, vae/, text_encoder/ with config.json and
 * safetensors; tokenizer/ vocab.json + merges.txt; scheduler/
 * scheduler_config.json) with random weights, so `alignprop-mpi sample` and
 * tools/demo run the very code paths a real SD v1.5 directory takes, with no
 * download. Sizes: UNet (32, 64) channels, VAE (32, 64), text encoder 2 layers
 * of width 32, byte-level BPE vocabulary of 514 tokens, 77 positions.
 * Weights: GroupNorm/LayerNorm weights 1, biases 0, other tensors uniform in
 * +-1/sqrt(fan_in) (PyTorch's default bound), embeddings normal(0, 0.02),
 * from a splitmix64 stream of the seed.
 */
#ifndef AP_PIPELINE_TINY_H
#define AP_PIPELINE_TINY_H

#include <stdint.h>

/* dir is created if missing; existing files in it are replaced atomically. */
int ap_tiny_write(const char *dir, uint64_t seed);

#endif
