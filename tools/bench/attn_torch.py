#!/usr/bin/env python3
"""PyTorch CPU baseline for src/ops/attention.c (compare with tools/bench/attn_bench.c).

Usage: .venv-ref/bin/python tools/bench/attn_torch.py [B L H D THREADS REPS]
       (default 2 4096 8 40 2 3: SD UNet self-attention at 64x64 latents)

torch 1.13 has no scaled_dot_product_attention, so this is the diffusers 0.17.1
path: baddbmm(zeros, q, k^T, beta=0, alpha=scale) -> softmax -> bmm on
(B*H, L, D), with autograd, loss = sum(out * proj). Peak extra memory is the
growth of the process's max RSS over what inputs and grads already hold, so run
one configuration per process.
"""
import resource
import sys
import time

import torch


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def attn(q, k, v, heads, scale):
    b, l, c = q.shape
    d = c // heads

    def split(x):  # diffusers head_to_batch_dim
        return x.reshape(b, x.shape[1], heads, d).permute(0, 2, 1, 3).reshape(b * heads, x.shape[1], d)

    qh, kh, vh = split(q), split(k), split(v)
    s = torch.baddbmm(torch.zeros(b * heads, l, kh.shape[1]), qh, kh.transpose(-1, -2),
                      beta=0, alpha=scale)
    p = s.softmax(dim=-1)
    o = torch.bmm(p, vh)
    return o.reshape(b, heads, l, d).permute(0, 2, 1, 3).reshape(b, l, c)


def main():
    a = [int(x) for x in sys.argv[1:]] + [None] * 6
    B, L, H, D, T, R = [x if x is not None else d for x, d in zip(a[:6], (2, 4096, 8, 40, 2, 3))]
    torch.set_num_threads(T)
    torch.manual_seed(0)
    scale = D ** -0.5
    q, k, v = (torch.randn(B, L, H * D, requires_grad=True) for _ in range(3))
    proj = torch.randn(B, L, H * D)
    base = rss_mb()
    with torch.no_grad():
        attn(q, k, v, H, scale)  # warm-up
    tf, cf = [], []
    for _ in range(R):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            out = attn(q, k, v, H, scale)
        tf.append(time.perf_counter() - t0)
        cf.append(time.process_time() - c0)
    del out
    peak_f = maxrss_mb() - base
    tfb, cfb = [], []
    for _ in range(R):
        q.grad = k.grad = v.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        out = attn(q, k, v, H, scale)
        (out * proj).sum().backward()
        tfb.append(time.perf_counter() - t0)
        cfb.append(time.process_time() - c0)
    peak_fb = maxrss_mb() - base
    scores = B * H * L * L * 4 / 2**20
    print(f"torch {torch.__version__} threads={T} B={B} L={L} H={H} D={D}: "
          f"forward {min(tf) * 1e3:.0f} ms, forward+backward {min(tfb) * 1e3:.0f} ms "
          f"(best of {R}); CPU s forward {min(cf):.2f}, fwd+bwd {min(cfb):.2f}; peak extra RSS forward {peak_f:.0f} MiB, fwd+bwd {peak_fb:.0f} MiB; "
          f"one (B*H, L, L) score tensor = {scores:.0f} MiB")


if __name__ == "__main__":
    main()
