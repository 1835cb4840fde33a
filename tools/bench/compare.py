#!/usr/bin/env python3
"""Puts OURS and TORCH benchmark lines side by side as a markdown table.
ratio = PyTorch time / our time (> 1: we are faster). Where a case ran at
several thread counts, a second table gives each side's thread scaling:
speed-up = time at 1 thread / time at t threads, efficiency = speed-up / t."""
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
            rows.setdefault((kv["case"], int(kv["threads"])), {})[kind] = kv
    print("| op (SD size) | threads | ours fwd ms | torch fwd ms | fwd ratio | ours fwd+bwd ms "
          "| torch fwd+bwd ms | fwd+bwd ratio | ours GFLOP/s fwd / fwd+bwd | ours / torch extra peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (case, _), r in rows.items():
        o, t = r.get("OURS"), r.get("TORCH")
        if not o:
            continue
        def ratio(k):
            return f"{float(t[k]) / float(o[k]):.2f}x" if t else "n/a"
        print(f"| {case} | {o['threads']} | {o['fwd_ms']} | {t['fwd_ms'] if t else 'n/a'} | {ratio('fwd_ms')} "
              f"| {o['fb_ms']} | {t['fb_ms'] if t else 'n/a'} | {ratio('fb_ms')} "
              f"| {o['fwd_gflops']} / {o['fb_gflops']} | {o['peak_extra_mb']} / {t['peak_extra_mb'] if t else 'n/a'} |")


    # ours with the frozen weights in fp32 and in bf16 / fp16 (--precision)
    prec = [(c, t) for (c, t) in rows if "OURS" in rows[(c, t)]
            and rows[(c, t)]["OURS"].get("precision", "fp32") != "fp32"]
    if prec:
        print()
        print("| case | threads | weights | fwd ms | fwd+bwd ms | weights MB | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for c, t in prec:
            o = rows[(c, t)]["OURS"]
            base = rows.get((c.rsplit("_", 1)[0], t), {}).get("OURS")
            for r in ([base] if base else []) + [o]:
                print(f"| {c.rsplit('_', 1)[0]} | {t} | {r.get('precision', 'fp32')} | {r['fwd_ms']} "
                      f"| {r['fb_ms']} | {r.get('weights_mb', 'n/a')} | {r.get('peak_rss_mb', 'n/a')} |")

    scaling = [(c, t) for (c, t) in rows if t > 1 and (c, 1) in rows]
    if not scaling:
        return
    print()
    print("| op | threads | ours fwd speed-up (eff.) | ours fwd+bwd speed-up (eff.) "
          "| torch fwd speed-up (eff.) | torch fwd+bwd speed-up (eff.) |")
    print("|---|---|---|---|---|---|")
    for c, t in scaling:
        def sp(kind, k):
            one, many = rows[(c, 1)].get(kind), rows[(c, t)].get(kind)
            if not one or not many:
                return "n/a"
            s = float(one[k]) / float(many[k])
            return f"{s:.2f}x ({100 * s / t:.0f}%)"
        print(f"| {c} | {t} | {sp('OURS', 'fwd_ms')} | {sp('OURS', 'fb_ms')} "
              f"| {sp('TORCH', 'fwd_ms')} | {sp('TORCH', 'fb_ms')} |")


if __name__ == "__main__":
    main(sys.argv[1])
