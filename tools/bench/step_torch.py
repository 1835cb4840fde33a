#!/usr/bin/env python3
"""PyTorch side of tools/bench-step: one AlignProp optimizer step as the
original trainer (AlignProp main.py at 7f4503f) runs it, on diffusers 0.17.1.

  step_torch.py write --dir D --config tiny|mid|sd [--layers N] [--steps N] [--seed S]
  step_torch.py run --dir D --trunc k1|rand [--threads N] [--reps N]

write: the model files both sides load, in diffusers layout under D:
  tiny: D/unet and D/vae exist already (the C side's ap_tiny_write, the demo
        model); only the LoRA is added.
  mid:  D/unet = UNet2DConditionModel block_out_channels (64, 128, 256),
        layers_per_block --layers, 8-channel heads, cross_attention_dim 768;
        D/vae = AutoencoderKL block_out_channels (64, 128, 128, 128),
        layers_per_block 2 (decoder only is used): latent 32x32 -> 256x256.
  sd:   D/unet and D/vae with SD v1.5's configs (random weights of the real
        shapes): latent 64x64 -> 512x512, context 77x768. Memory does not
        depend on the step count, so --steps (the DDIM steps, 50 by default)
        can be small for a memory measurement.
  D/pytorch_lora_weights.bin: LoRAAttnProcessor rank 4 on every attention,
        installed as AlignProp does (save_attn_procs), `up` randomised
        N(0, 0.02) so the LoRA path changes the result;
  D/scheduler/scheduler_config.json: SD v1.5's DDIM settings;
  D/io.safetensors: noise (1, 4, h, w), cond (1, L, D), uncond (L, D) random
        embeddings, and the attached masks att_k1 / att_rand (50,) as 0/1
        floats: K = 1 (only the last step) and main.py's per-step draws
        K_i = random.randint(0, steps), step i attached unless i < K_i; the
        masks' length is the step count both sides run.

run: one optimizer step per rep (first rep also a warm-up when reps > 1):
  per DDIM step two checkpointed UNet calls (uncond, cond; use_reentrant=False),
  detach both when the step is not attached, CFG 7.5, DDIM step (eta 0),
  image = vae.decode(x / scaling_factor), reward = colourfulness (the demo
  reward, src/train/reward.h), loss = loss_coeff * mean(-reward), backward,
  clip_grad_norm_(5), AdamW step, zero_grad. Prints one BENCH line with the
  seconds per sample (best rep), the peak RSS of the process (ru_maxrss),
  and the first rep's reward and LoRA grad norm (for the cross-check)."""
import argparse
import json
import os
import random
import resource
import sys
import time
import pathlib

import torch
import torch.utils.checkpoint as checkpoint
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders import AttnProcsLayers
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fixtures"))
import unet as fixtures_unet  # noqa: E402

# configs/aesthetic.yaml (the original 7f4503f values), as bench_step.c
STEPS, GUIDANCE, LOSS_COEFF, MAX_GRAD_NORM = 50, 7.5, 0.01, 5.0
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.1, eps=1e-8)
SD15_SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                  steps_offset=1, prediction_type="epsilon")
MID_UNET = dict(block_out_channels=(64, 128, 256),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SD15_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
MID_VAE = dict(block_out_channels=(64, 128, 128, 128), layers_per_block=2, norm_num_groups=32,
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def install_lora(unet):
    """AlignProp main.py: LoRAAttnProcessor (rank 4) on every attention
    (tools/fixtures/unet.py builds the processors)."""
    fixtures_unet.install_lora(unet, rank=4)
    return AttnProcsLayers(unet.attn_processors)


def write(a):
    torch.manual_seed(a.seed)
    if a.config == "mid":
        unet = UNet2DConditionModel(sample_size=32, layers_per_block=a.layers, **MID_UNET)
        unet.save_pretrained(f"{a.dir}/unet", safe_serialization=True)
        AutoencoderKL(sample_size=256, **MID_VAE).save_pretrained(f"{a.dir}/vae", safe_serialization=True)
        h = 32
    elif a.config == "sd":
        unet = UNet2DConditionModel(sample_size=64, **SD15_UNET)
        unet.save_pretrained(f"{a.dir}/unet", safe_serialization=True)
        AutoencoderKL(sample_size=512, latent_channels=4, **SD15_VAE).save_pretrained(
            f"{a.dir}/vae", safe_serialization=True)
        h = 64
    else:
        unet = UNet2DConditionModel.from_pretrained(f"{a.dir}/unet", low_cpu_mem_usage=False)
        vcfg = json.load(open(f"{a.dir}/vae/config.json"))
        h = a.tiny_res // 2 ** (len(vcfg["block_out_channels"]) - 1)
    os.makedirs(f"{a.dir}/scheduler", exist_ok=True)
    with open(f"{a.dir}/scheduler/scheduler_config.json", "w") as f:
        json.dump(dict(_class_name="DDIMScheduler", **SD15_SCHED), f, indent=1)
    layers = install_lora(unet)
    with torch.no_grad():
        for k, p in layers.named_parameters():
            if k.endswith("up.weight"):
                p.normal_(0, 0.02)
    unet.save_attn_procs(a.dir)
    L, D = 77, unet.config.cross_attention_dim
    rng = random.Random(a.seed)
    n = a.steps
    k1 = [1.0 if i >= n - 1 else 0.0 for i in range(n)]
    rand = [1.0 if i >= rng.randint(0, n) else 0.0 for i in range(n)]
    save_file({"noise": torch.randn(1, 4, h, h), "cond": torch.randn(1, L, D),
               "uncond": torch.randn(L, D), "att_k1": torch.tensor(k1),
               "att_rand": torch.tensor(rand)}, f"{a.dir}/io.safetensors")
    print(f"step_torch: wrote {a.config} model in {a.dir}: latent {h}x{h}, context {L}x{D}, "
          f"random K attaches {int(sum(rand))} of {n} steps", file=sys.stderr)


def colourfulness(img):
    """The demo reward (src/train/reward.h) of images (B, 3, H, W) in [-1, 1]."""
    x = img * 0.5 + 0.5
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    s = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    m = (rg.mean(1) ** 2 + yb.mean(1) ** 2).sqrt()
    return s + 0.3 * m


def ddim_step(sched, eps, t, x):
    """ddim_step_with_logprob's prev_sample at eta 0 (DDIMScheduler.step)."""
    prev = t - sched.config.num_train_timesteps // sched.num_inference_steps
    a_t = sched.alphas_cumprod[t]
    a_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


def run(a):
    torch.set_num_threads(a.threads)
    unet = UNet2DConditionModel.from_pretrained(f"{a.dir}/unet", low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(f"{a.dir}/vae", low_cpu_mem_usage=False)
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    layers = install_lora(unet)
    unet.load_attn_procs(a.dir)  # the written LoRA values into AlignProp's processors
    layers = AttnProcsLayers(unet.attn_processors)
    params = list(layers.parameters())
    for p in params:
        p.requires_grad_(True)
    sched = DDIMScheduler.from_pretrained(f"{a.dir}/scheduler")
    io = load_file(f"{a.dir}/io.safetensors")
    sched.set_timesteps(io[f"att_{a.trunc}"].numel())
    noise, cond = io["noise"], io["cond"]
    uncond = io["uncond"][None].expand_as(cond)
    attached = [bool(v) for v in io[f"att_{a.trunc}"].tolist()]
    opt = torch.optim.AdamW(params, **ADAMW)
    sf = vae.config.scaling_factor
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def step():
        latent = noise.clone()
        for i, t in enumerate(sched.timesteps):
            tt = torch.tensor([t], dtype=torch.float32).repeat(latent.shape[0])
            e_u = checkpoint.checkpoint(unet, latent, tt, uncond, use_reentrant=False).sample
            e_c = checkpoint.checkpoint(unet, latent, tt, cond, use_reentrant=False).sample
            if not attached[i]:
                e_u, e_c = e_u.detach(), e_c.detach()
            eps = e_u + GUIDANCE * (e_c - e_u)
            latent = ddim_step(sched, eps, int(t), latent)
        ims = vae.decode(latent / sf).sample
        reward = colourfulness(ims)
        loss = LOSS_COEFF * (-reward).mean()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad()
        return float(reward.mean()), float(gnorm)

    times, first = [], None
    for r in range(a.reps):
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
        first = first or out
    best = min(times[1:]) if len(times) > 1 else times[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    case = f"{a.name}_{a.trunc}"
    print(f"BENCH case={case} threads={a.threads} attached={sum(attached)} s_per_sample={best:.3f} "
          f"s_all={','.join(f'{t:.3f}' for t in times)} rss_load_mb={rss_load:.0f} "
          f"peak_rss_mb={peak:.0f} reward={first[0]:.6g} gnorm={first[1]:.6g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--dir", required=True)
    w.add_argument("--config", choices=("tiny", "mid", "sd"), required=True)
    w.add_argument("--steps", type=int, default=STEPS)
    w.add_argument("--layers", type=int, default=2)
    w.add_argument("--tiny-res", type=int, default=64)
    w.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--dir", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--trunc", choices=("k1", "rand"), required=True)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    write(a) if a.cmd == "write" else run(a)


if __name__ == "__main__":
    main()
