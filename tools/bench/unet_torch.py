#!/usr/bin/env python3
"""PyTorch side of tools/bench-unet: a mid-sized diffusers 0.17.1
UNet2DConditionModel with AlignProp's LoRA (rank 4 on every attention).

  unet_torch.py --dir D [--threads N] [--reps N] [--batch B] [--size S] [--ctx L]

Writes the model into D exactly as the C side loads it (save_pretrained +
save_attn_procs, LoRA `up` randomised so the LoRA path does real work), plus
D/io.safetensors (x, t, context, eps) for a sanity check of the C output, then
times forward (no grad) and forward + backward (grads of x and of the LoRA
matrices; base weights frozen) and prints one BENCH line."""
import argparse
import json
import resource
import sys
import time
import pathlib

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fixtures"))
import unet as fixtures_unet  # noqa: E402

CONFIG = dict(block_out_channels=(64, 128, 256), layers_per_block=2,
              down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
              cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=77)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=a.size, **CONFIG)
    unet.requires_grad_(False)
    unet.save_pretrained(a.dir, safe_serialization=True)
    fixtures_unet.install_lora(unet, rank=4)
    lora = [p for k, p in unet.named_parameters() if "lora" in k]
    with torch.no_grad():
        for k, p in unet.named_parameters():
            if "lora" in k and k.endswith("up.weight"):
                p.normal_(0, 0.02)
    unet.save_attn_procs(a.dir)
    B, S, L = a.batch, a.size, a.ctx
    x = torch.randn(B, 4, S, S)
    t = torch.full((B,), 501.0)
    c = torch.randn(B, L, 768)
    with torch.no_grad():
        eps = unet(x, t, encoder_hidden_states=c).sample
    save_file({"x": x, "t": t, "context": c, "eps": eps}, f"{a.dir}/io.safetensors")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def fwd():
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=c)

    xg = x.clone().requires_grad_(True)
    proj = torch.randn_like(eps)

    def fb():
        for p in lora:
            p.grad = None
        xg.grad = None
        (unet(xg, t, encoder_hidden_states=c).sample * proj).sum().backward()

    def best(fn):
        fn()  # warm-up
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts) * 1e3

    f, b = best(fwd), best(fb)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(f"BENCH case=unet_b{B}_{S}x{S}_ctx{L} threads={a.threads} fwd_ms={f:.1f} fb_ms={b:.1f} "
          f"fwd_gflops=- fb_gflops=- peak_extra_mb={peak:.0f}")
    print(f"torch {torch.__version__}, eps finite: {bool(torch.isfinite(eps).all())}, "
          f"config {json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()})}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
