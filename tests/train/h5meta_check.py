"""h5meta_check.py: the HDF5 logs describe themselves (docs/logging.md §5).

  h5meta_check.py FILE.h5 RANKS CAPACITIES(comma-separated) REWARD ("-": any)

Checks with h5py: the root attributes program ("alignprop-mpi"),
program_version, git_commit (non-empty), config (the resolved YAML: starts
with "# resolved by alignprop-mpi"), reward (== REWARD), reward_meaning
(says what "larger" means), hostname, cpu, gpu, backend (non-empty), ranks
(== RANKS) and world (the same as text, read by `report`), capacities
(== CAPACITIES), global_batch (>= 1); and that every
dataset of /train and /eval has non-empty `description` and `units`
attributes. Exit 0 when all hold, 1 otherwise, printing what differs."""
import sys

import h5py

failures = []


def check(cond, msg):
    print(("  ok   " if cond else "  FAIL ") + msg)
    if not cond:
        failures.append(msg)


def text(a):
    return a.decode() if isinstance(a, bytes) else str(a) if a is not None else ""


def main():
    path, ranks, caps, reward = sys.argv[1], int(sys.argv[2]), [int(c) for c in sys.argv[3].split(",")], sys.argv[4]
    with h5py.File(path, "r") as h:
        a = h.attrs
        check(text(a.get("program")) == "alignprop-mpi", f"{path}: program = {text(a.get('program'))!r}")
        for k in ("program_version", "git_commit", "hostname", "cpu", "gpu", "backend"):
            check(len(text(a.get(k))) > 0, f"{path}: {k} = {text(a.get(k))[:60]!r}")
        check(text(a.get("config")).startswith("# resolved by alignprop-mpi"),
              f"{path}: config holds the resolved YAML ({len(text(a.get('config')))} chars)")
        if reward != "-":
            check(text(a.get("reward")) == reward, f"{path}: reward = {text(a.get('reward'))!r}, expected {reward!r}")
        check("larger" in text(a.get("reward_meaning")), f"{path}: reward_meaning = {text(a.get('reward_meaning'))[:70]!r}")
        check(int(a.get("ranks", -1)) == ranks, f"{path}: ranks = {a.get('ranks')}, expected {ranks}")
        check(text(a.get("world")) == str(ranks), f"{path}: world = {text(a.get('world'))!r}, expected {str(ranks)!r}")
        check([int(c) for c in a.get("capacities", [])] == caps,
              f"{path}: capacities = {list(a.get('capacities', []))}, expected {caps}")
        check(int(a.get("global_batch", 0)) >= 1, f"{path}: global_batch = {a.get('global_batch')}")
        missing, n = [], 0
        for g in ("train", "eval"):
            for name, ds in h[g].items():
                n += 1
                if not text(ds.attrs.get("description")) or not text(ds.attrs.get("units")):
                    missing.append(f"/{g}/{name}")
        check(n > 0 and not missing, f"{path}: {n} datasets, each with description and units (missing: {missing})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
