#!/usr/bin/env python3
"""Regenerates the committed reference fixtures under tests/fixtures/.

Usage: tools/make_fixtures.py [MODULE ...]   (default: every tools/fixtures/*.py)

Runs itself inside the pinned reference environment (tools/refenv: Debian's
torch 1.13 + diffusers 0.17.1 + transformers 4.30.2). Each generator module
follows the contract in tools/fixtures/README.md.
"""
import importlib
import json
import os
import pathlib
import struct
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SEED = 20231005  # AlignProp's arXiv month; one seed for every module


def in_refenv():
    return pathlib.Path(sys.prefix).resolve() == (ROOT / ".venv-ref").resolve()


def reexec():
    py = subprocess.check_output([str(ROOT / "tools" / "refenv")], text=True).strip()
    os.execv(py, [py, str(pathlib.Path(__file__).resolve())] + sys.argv[1:])


def versions(torch):
    import diffusers
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def save_safetensors(path, tensors, metadata):
    """Writes a safetensors file by hand (F32 only), sorted keys."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype != __import__("torch").float32:
            raise SystemExit(f"{path}: {name}: expected float32, found {t.dtype}")
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return offset


def patch_baddbmm(torch):
    """diffusers passes torch.empty to baddbmm with beta=0; torch 1.13 CPU
    multiplies that garbage by 0, so NaN/Inf leak in. Use zeros instead, but
    only when beta is 0: with beta != 0 the input is real data (e.g. the
    attention mask nn.MultiheadAttention adds through baddbmm)."""
    orig = torch.baddbmm

    def baddbmm(inp, *args, **kw):
        if kw.get("beta", 1) == 0:
            inp = torch.zeros_like(inp)
        return orig(inp, *args, **kw)

    torch.baddbmm = baddbmm


def main():
    if not in_refenv():
        reexec()
    import torch

    torch.set_num_threads(1)
    patch_baddbmm(torch)
    sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
    names = sys.argv[1:] or sorted(
        p.stem for p in (ROOT / "tools" / "fixtures").glob("*.py"))
    FIXTURES.mkdir(parents=True, exist_ok=True)
    meta_common = dict(versions(torch), seed=SEED)
    for name in names:
        mod = importlib.import_module(name)
        torch.manual_seed(SEED)
        import inspect

        if len(inspect.signature(mod.make).parameters) == 2:
            mod.make(torch, FIXTURES)
            print(f"{name}: wrote files under {FIXTURES}")
            continue
        tensors = mod.make(torch)
        for k, v in tensors.items():
            if not torch.isfinite(v).all():
                raise SystemExit(f"{name}: {k} has non-finite values (generator bug)")
        meta = dict(meta_common, generator=f"tools/fixtures/{name}.py")
        path = FIXTURES / f"{name}.safetensors"
        size = save_safetensors(path, tensors, meta)
        print(f"{name}: {len(tensors)} tensors, {size / 1e6:.2f} MB -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
