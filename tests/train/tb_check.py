"""tb_check.py: a run's TensorBoard files read back by TensorBoard's own event
reader, compared exactly with what the run wrote elsewhere (docs/logging.md).

  tb_check.py RUN_DIR [--same-as OTHER_RUN_DIR] [--expect-files N]

RUN_DIR/tb/events.out.tfevents.* are read in name order (as TensorBoard
reads a directory) with EventFileLoader; then:
  * every (tag, step) appears once (a resumed run neither duplicates nor
    loses steps);
  * each training scalar equals float32 of its log.h5 column at that step
    (loss, rewards = reward_mean, rewards_std, rewards_std_global, grad_norm,
    lr, samples_per_s, step_time, attached_steps = attached_mean, epoch,
    skipped), rewards_min / rewards_max the min / max of /train/rewards, and
    the steps are exactly /train/step; eval_rewards(_std) likewise /eval/;
    a reward mixture's rewards_<part> / eval_rewards_<part> equal
    float32(reward_<part>_mean);
  * each image's PNG bytes equal the PNG file of the same image on disk
    (eval_vis/step_S/, train_vis/step_S/, grid.png included); captions are
    "<prompt:.25> | <reward:.2f>";
  * the texts: config is the resolved config log.h5's `config` attribute
    holds, in a ```yaml fence; prompts one per line;
  * --same-as: the same tags and steps as another run, and the same values
    for everything but timings and texts (resume == uninterrupted);
  * --expect-files: the number of event files.
Exit 0 when all hold, 1 otherwise, printing what differs."""
import glob
import math
import os
import sys

import h5py
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

TIMING = {"samples_per_s", "step_time"}
TEXTS = {"config", "prompts", "eval_prompts"}
failures = []


def check(cond, msg):
    print(("  ok   " if cond else "  FAIL ") + msg)
    if not cond:
        failures.append(msg)


def read_run(run):
    files = sorted(glob.glob(os.path.join(run, "tb", "events.out.tfevents.*")))
    events, dups = {}, []
    for f in files:
        for e in EventFileLoader(f).Load():
            for v in e.summary.value:
                key = (v.tag, e.step)
                if key in events:
                    dups.append(key)
                plugin = v.metadata.plugin_data.plugin_name
                arr = tensor_util.make_ndarray(v.tensor)
                events[key] = (plugin, arr, v.metadata.summary_description)
    return files, events, dups


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def main():
    args = sys.argv[1:]
    run = args[0]
    other = args[args.index("--same-as") + 1] if "--same-as" in args else None
    nfiles = int(args[args.index("--expect-files") + 1]) if "--expect-files" in args else None
    files, ev, dups = read_run(run)
    print(f"tb_check: {run}: {len(files)} event files, {len(ev)} (tag, step) values")
    if nfiles is not None:
        check(len(files) == nfiles, f"{len(files)} event files, expected {nfiles}")
    check(not dups, f"every (tag, step) once (duplicates: {sorted(set(dups))[:5]})")

    with h5py.File(os.path.join(run, "log.h5"), "r") as h:
        tr = {k: h["train"][k][:] for k in h["train"] if k != "complete_rows"}
        evl = {k: h["eval"][k][:] for k in h["eval"] if k != "complete_rows"}
        cfg_attr = h.attrs.get("config")
    steps = [int(s) for s in tr["step"]]
    cols = {"loss": "loss", "rewards": "reward_mean", "rewards_std": "reward_std",
            "rewards_std_global": "reward_std_global", "grad_norm": "grad_norm", "lr": "lr",
            "samples_per_s": "samples_per_s", "step_time": "step_time",
            "attached_steps": "attached_mean", "epoch": "epoch", "skipped": "skipped"}
    for tag, col in cols.items():
        tb_steps = sorted(s for (t, s) in ev if t == tag)
        check(tb_steps == steps, f"{tag}: steps {tb_steps} == /train/step {steps}")
        bad = [(s, float(ev[(tag, s)][1]), float(np.float32(tr[col][i])))
               for i, s in enumerate(steps) if (tag, s) in ev
               and not same_float(float(ev[(tag, s)][1]), float(np.float32(tr[col][i])))]
        check(not bad and all(ev[(tag, s)][0] == "scalars" for s in tb_steps),
              f"{tag} == float32(/train/{col}) at every step, exactly (first differences: {bad[:3]})")
    for tag, fn in (("rewards_min", np.min), ("rewards_max", np.max)):
        bad = [s for i, s in enumerate(steps)
               if float(ev.get((tag, s), (0, np.nan))[1]) != float(np.float32(fn(tr["rewards"][i])))]
        check(not bad, f"{tag} == {fn.__name__} of /train/rewards, exactly (steps differing: {bad[:5]})")
    # a reward mixture's parts: rewards_<part> == /train/reward_<part>_mean
    parts = [k[len("reward_"):-len("_mean")] for k in tr if k.startswith("reward_") and k.endswith("_mean")
             and k != "reward_mean"]
    for p in parts:
        for tag, tab, st in ((f"rewards_{p}", tr, steps), (f"eval_rewards_{p}", evl, [int(s) for s in evl["step"]])):
            col = tab[f"reward_{p}_mean"]
            bad = [s for i, s in enumerate(st) if (tag, s) not in ev
                   or float(ev[(tag, s)][1]) != float(np.float32(col[i]))]
            check(not bad and len(st) > 0, f"{tag} == float32(reward_{p}_mean) at {len(st)} steps, "
                  f"exactly (differing: {bad[:5]})")
    esteps = [int(s) for s in evl["step"]]
    for tag, col in (("eval_rewards", "reward_mean"), ("eval_rewards_std", "reward_std")):
        tb_steps = sorted(s for (t, s) in ev if t == tag)
        check(tb_steps == esteps, f"{tag}: steps {tb_steps} == /eval/step {esteps}")
        bad = [s for i, s in enumerate(esteps)
               if float(ev.get((tag, s), (0, np.nan))[1]) != float(np.float32(evl[col][i]))]
        check(not bad, f"{tag} == float32(/eval/{col}), exactly (steps differing: {bad})")

    # images: PNG bytes against the files on disk
    n_img, bad_img = 0, []
    for (tag, step), (plugin, arr, desc) in sorted(ev.items()):
        if plugin != "images":
            continue
        prefix, name = tag.split("/")
        sub = "eval_vis" if prefix == "eval_images" else "train_vis"
        d = os.path.join(run, sub, f"step_{step:06d}")
        if name == "grid":
            path = os.path.join(d, "grid.png")
        else:
            m = glob.glob(os.path.join(d, glob.escape(name) + "_*.png"))
            path = m[0] if len(m) == 1 else None
        n_img += 1
        ok = path is not None and arr[2] == open(path, "rb").read()
        ok = ok and (name == "grid" or (" | " in desc and os.path.basename(path)[4:].startswith(
            desc.split(" | ")[0])))
        if not ok:
            bad_img.append((tag, step, path))
    check(n_img > 0 and not bad_img,
          f"{n_img} images: PNG bytes == the files in eval_vis/ and train_vis/, captions "
          f"'<prompt:.25> | <reward:.2f>' (differing: {bad_img[:3]})")
    train_img_steps = sorted({s for (t, s) in ev if t.startswith("images/")})
    disk_steps = sorted(int(p.rsplit("_", 1)[1]) for p in glob.glob(os.path.join(run, "train_vis", "step_*")))
    check(train_img_steps == disk_steps, f"training images at steps {train_img_steps} == train_vis/ {disk_steps}")

    # texts
    texts = {t: arr for (t, s), (p, arr, d) in ev.items() if p == "text"}
    check(set(texts) == TEXTS, f"texts {sorted(texts)} == {sorted(TEXTS)}")
    cfg = [arr.item().decode() for (t, s), (p, arr, d) in sorted(ev.items()) if t == "config"]
    if cfg_attr is not None:
        want = "```yaml\n" + (cfg_attr if isinstance(cfg_attr, str) else cfg_attr.decode())
        want = want + ("" if want.endswith("\n") else "\n") + "```"
        check(cfg and cfg[-1] == want, "config text == log.h5's config attribute, fenced")

    if other:
        _, ev2, _ = read_run(other)
        k1 = {k for k in ev if k[0] not in TEXTS}
        k2 = {k for k in ev2 if k[0] not in TEXTS}
        check(k1 == k2, f"same (tag, step) as {other} (only here: {sorted(k1 - k2)[:5]}, "
              f"only there: {sorted(k2 - k1)[:5]})")
        bad = []
        for k in sorted(k1 & k2):
            if k[0] in TIMING:
                continue
            a, b = ev[k][1], ev2[k][1]
            if ev[k][0] == "scalars":
                if not same_float(float(a), float(b)):
                    bad.append(k)
            elif ev[k][0] == "images" and list(a) != list(b):
                bad.append(k)
        check(not bad, f"every value but timings equal to {other}'s, exactly (differing: {bad[:5]})")
    print(f"tb_check: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
