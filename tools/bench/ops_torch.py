#!/usr/bin/env python3
"""PyTorch side of tools/bench-ops: the same cases as bench_ops.c, same sizes,
same thread count, same timing rule (median of reps after a warm-up), printing
the same BENCH line. Attention is computed as diffusers 0.17.1 does on the CPU
(baddbmm scores, softmax, bmm) since torch 1.13 has no fused SDPA."""
import argparse
import os
import sys
import resource
import time

import torch


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(name, threads, reps, make, fwd_flop, fb_flop):
    inputs = make()
    base = peak_rss_mb()

    def fwd():
        with torch.no_grad():
            return inputs["f"]()

    def fb():
        out = inputs["f"]()
        out.backward(inputs["dout"])
        for t in inputs["leaves"]:
            t.grad = None

    fwd(), fb()
    tf, tb = [], []
    for _ in range(reps):
        t0 = time.perf_counter(); fwd(); t1 = time.perf_counter(); fb(); t2 = time.perf_counter()
        tf.append((t1 - t0) * 1e3); tb.append((t2 - t1) * 1e3)
    tf.sort(); tb.sort()
    f, b = tf[reps // 2], tb[reps // 2]
    print(f"BENCH case={name} threads={threads} fwd_ms={f:.2f} fb_ms={b:.2f} "
          f"fwd_gflops={fwd_flop / f * 1e-6:.1f} fb_gflops={fb_flop / b * 1e-6:.1f} "
          f"peak_extra_mb={peak_rss_mb() - base:.1f}", flush=True)


def leaf(*shape):
    return torch.randn(*shape).requires_grad_(True)


def conv():
    x, w, b = leaf(2, 320, 64, 64), leaf(320, 320, 3, 3), leaf(320)
    return {"f": lambda: torch.nn.functional.conv2d(x, w, b, 1, 1),
            "dout": torch.randn(2, 320, 64, 64), "leaves": [x, w, b]}


def conv_din():
    """conv with frozen weight and bias: backward computes the input grad only."""
    x = leaf(2, 320, 64, 64)
    w, b = torch.randn(320, 320, 3, 3), torch.randn(320)
    return {"f": lambda: torch.nn.functional.conv2d(x, w, b, 1, 1),
            "dout": torch.randn(2, 320, 64, 64), "leaves": [x]}


def linear():
    x, w, b = leaf(4096, 320), leaf(1280, 320), leaf(1280)
    return {"f": lambda: torch.nn.functional.linear(x, w, b),
            "dout": torch.randn(4096, 1280), "leaves": [x, w, b]}


def attention():
    B, L, H, D = 2, 4096, 8, 40
    q, k, v = leaf(B * H, L, D), leaf(B * H, L, D), leaf(B * H, L, D)

    def f():
        s = torch.baddbmm(torch.zeros(B * H, L, L), q, k.transpose(1, 2), beta=0,
                          alpha=D ** -0.5)
        return torch.bmm(s.softmax(dim=-1), v)

    return {"f": f, "dout": torch.randn(B * H, L, D), "leaves": [q, k, v]}


def group_norm():
    x, g, b = leaf(2, 320, 64, 64), leaf(320), leaf(320)
    return {"f": lambda: torch.nn.functional.group_norm(x, 32, g, b, 1e-5),
            "dout": torch.randn(2, 320, 64, 64), "leaves": [x, g, b]}


CASES = {
    "conv": (conv, 2.0 * 2 * 320 * 64 * 64 * 320 * 9),
    "conv_din": (conv_din, 2.0 * 2 * 320 * 64 * 64 * 320 * 9),
    "linear": (linear, 2.0 * 4096 * 320 * 1280),
    "attention": (attention, 4.0 * 2 * 8 * 4096 * 4096 * 40),
    "group_norm": (group_norm, 8.0 * 2 * 320 * 64 * 64),
}


def info():
    cap = [l.split(":", 1)[1].strip() for l in torch.__config__.show().splitlines()
           if "CPU capability usage" in l]
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "best")
    print(f"torch {torch.__version__}: ATen CPU capability {cap[0] if cap else '?'}, "
          f"oneDNN max ISA {isa}, OPENBLAS_CORETYPE {os.environ.get('OPENBLAS_CORETYPE', 'auto')}")


def main():
    if "--info" in sys.argv:
        info()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for c in a.cases:
        make, fl = CASES[c]
        fb = {"group_norm": fl * 20.0 / 8.0, "conv_din": 2 * fl}.get(c, 3 * fl)  # as bench_ops.c
        run(c, a.threads, a.reps, make, fl, fb)


if __name__ == "__main__":
    main()
