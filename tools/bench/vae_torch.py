"""diffusers 0.17.1 AutoencoderKL decode on CPU (not a test): the reference
for tools/bench/bench_vae.c with the same config, batch, latent and threads.
Times vae.decode(x / scaling_factor) under no_grad, and forward plus
backward of sum(image * g) w.r.t. x; median of --reps after a warm-up.

usage: .venv-ref/bin/python tools/bench/vae_torch.py [--threads N] [--reps N]
       [--batch B] [--latent H W] [--channels 64,128,256,256] [--layers 2]
       [--groups 32]
"""
import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--latent", type=int, nargs=2, default=[64, 64])
    ap.add_argument("--channels", default="128,256,512,512")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--groups", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ch = tuple(int(c) for c in a.channels.split(","))
    vae = AutoencoderKL(block_out_channels=ch, layers_per_block=a.layers, norm_num_groups=a.groups,
                        down_block_types=("DownEncoderBlock2D",) * len(ch),
                        up_block_types=("UpDecoderBlock2D",) * len(ch)).eval()
    vae.requires_grad_(False)
    x = torch.randn(a.batch, 4, *a.latent)
    sf = vae.config.scaling_factor
    inf, fb = [], []
    for _ in range(a.reps + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            img = vae.decode(x / sf).sample
        inf.append(time.perf_counter() - t0)
        g = torch.randn_like(img)
        xg = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        (vae.decode(xg / sf).sample * g).sum().backward()
        fb.append(time.perf_counter() - t0)
    print(f"TORCH vae decode {ch} B {a.batch} latent {a.latent} threads {a.threads}: "
          f"fwd_ms={1e3 * statistics.median(inf[1:]):.0f} "
          f"fwd+bwd_ms={1e3 * statistics.median(fb[1:]):.0f}")


if __name__ == "__main__":
    main()
