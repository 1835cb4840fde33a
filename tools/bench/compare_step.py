#!/usr/bin/env python3
"""Table for tools/bench-step: OURS and TORCH lines per case (INFO lines
first). ratio = PyTorch / ours (time: > 1 we are faster; RSS: > 1 we use
less). reward and grad norm are the first step's, from the same weights,
noise and attached mask: they must agree."""
import sys


def parse(line):
    kind, rest = line.split(" ", 1)
    kv = {}
    for item in rest.split():
        k, v = item.split("=", 1)
        if k == "env":  # TORCH env=VAR=VALUE
            kv["env"] = v
        else:
            kv[k] = v
    return kind, kv


def main(path):
    ours, torch, weights = {}, [], []
    for line in open(path):
        line = line.strip()
        if line.startswith("INFO "):
            print(line[5:])
        elif line.startswith("WEIGHTS "):
            weights.append(parse(line)[1])
        elif line.startswith(("OURS ", "TORCH ")):
            kind, kv = parse(line)
            if kind == "OURS":
                ours[kv["case"]] = kv
            else:
                torch.append(kv)
    print()
    print("| case | threads | attached steps | ours s/sample | PyTorch s/sample | time ratio "
          "| ours peak RSS MB | PyTorch peak RSS MB | RSS ratio | reward ours / PyTorch "
          "| grad norm ours / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in torch:
        o = ours.get(t["case"])
        if not o:
            continue
        name = t["case"] + (f" (PyTorch {t['env']})" if "env" in t else "")
        tr = float(t["s_per_sample"]) / float(o["s_per_sample"])
        rr = float(t["peak_rss_mb"]) / float(o["peak_rss_mb"])
        print(f"| {name} | {o['threads']} | {o['attached']} | {o['s_per_sample']} | {t['s_per_sample']} "
              f"| {tr:.1f}x | {o['peak_rss_mb']} | {t['peak_rss_mb']} | {rr:.1f}x "
              f"| {o['reward']} / {t['reward']} | {o['gnorm']} / {t['gnorm']} |")
    prec = [(c, o) for c, o in ours.items() if o.get("precision", "fp32") != "fp32"]
    if prec:
        print()
        print("| case | weights | ours s/sample | UNet + VAE weights MB | peak RSS MB | reward | grad norm |")
        print("|---|---|---|---|---|---|---|")
        for c, o in prec:
            base = ours.get(c.rsplit("_", 1)[0])
            for r in ([base] if base else []) + [o]:
                print(f"| {c.rsplit('_', 1)[0]} | {r.get('precision', 'fp32')} | {r['s_per_sample']} "
                      f"| {r.get('weights_mb', 'n/a')} | {r['peak_rss_mb']} | {r['reward']} | {r['gnorm']} |")
    if weights:
        print()
        print("SD v1.5 weight blocks (real shapes, not allocated): " + "; ".join(
            f"{w['model']} {w['precision']} {w['mb']} MB" for w in weights))
    print()
    print("per-rep seconds (first = warm-up when reps > 1): " + "; ".join(
        [f"ours {c}: {o['s_all']}" for c, o in ours.items()] +
        [f"torch {t['case']}{' ' + t['env'] if 'env' in t else ''}: {t['s_all']}" for t in torch]))


if __name__ == "__main__":
    main(sys.argv[1])
