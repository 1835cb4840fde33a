#!/usr/bin/env python3
"""Puts OURS and TORCH benchmark lines side by side as a markdown table.
ratio = PyTorch time / our time (> 1: we are faster)."""
import sys


def parse(line):
    kind, rest = line.split(" ", 1)
    kv = dict(item.split("=", 1) for item in rest.split())
    return kind, kv


def main(path):
    rows = {}
    for line in open(path):
        if line.startswith(("OURS ", "TORCH ")):
            kind, kv = parse(line.strip())
            rows.setdefault(kv["case"], {})[kind] = kv
    print("| op (SD size) | threads | ours fwd ms | torch fwd ms | fwd ratio | ours fwd+bwd ms "
          "| torch fwd+bwd ms | fwd+bwd ratio | ours GFLOP/s fwd / fwd+bwd | ours / torch extra peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case, r in rows.items():
        o, t = r.get("OURS"), r.get("TORCH")
        if not o:
            continue
        def ratio(k):
            return f"{float(t[k]) / float(o[k]):.2f}x" if t else "n/a"
        print(f"| {case} | {o['threads']} | {o['fwd_ms']} | {t['fwd_ms'] if t else 'n/a'} | {ratio('fwd_ms')} "
              f"| {o['fb_ms']} | {t['fb_ms'] if t else 'n/a'} | {ratio('fb_ms')} "
              f"| {o['fwd_gflops']} / {o['fb_gflops']} | {o['peak_extra_mb']} / {t['peak_extra_mb'] if t else 'n/a'} |")


if __name__ == "__main__":
    main(sys.argv[1])
