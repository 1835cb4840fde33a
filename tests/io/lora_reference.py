"""Load our LoRA exports in the reference libraries and compare the UNet's
output with ours (tests/io/lora_reference.sh, docs/lora.md §7).

  lora_reference.py inputs DIR            write DIR/inputs.safetensors
  lora_reference.py kohya-alpha DIR       DIR/kohya_alpha.safetensors: our kohya
                                          export with alpha 1 (scale 1/rank)
  lora_reference.py diffusers017 FIX DIR  diffusers 0.17.1 load_attn_procs
  lora_reference.py peft FIX DIR          current diffusers + peft load_lora_weights

DIR holds our exports (attn.safetensors, peft/, kohya.safetensors,
kohya_alpha.safetensors) and our outputs ours_<name>.safetensors (lora_eps).
Tolerance: max |eps_ref - eps_ours| <= 1e-4 (float32 on the CPU, |eps| ~ 1;
measured up to 2e-6, summation order only).
Exit 0 when every comparison passes, 1 otherwise.
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

TOL = 1e-4


def unet_out(unet, d):
    inp = load_file(os.path.join(d, "inputs.safetensors"))
    with torch.no_grad():
        return unet(inp["x"], inp["timesteps"], encoder_hidden_states=inp["context"]).sample


def compare(what, ref, d, ours_name):
    ours = load_file(os.path.join(d, ours_name))["eps"]
    err = (ref - ours).abs().max().item()
    ok = err <= TOL
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: max |eps_ref - eps_ours| = {err:.3g} "
          f"(tolerance {TOL:g}, max |eps| {ref.abs().max().item():.3g})")
    return ok


def main():
    mode = sys.argv[1]
    if mode == "inputs":
        g = torch.Generator().manual_seed(0)
        save_file({"x": torch.randn(2, 4, 8, 8, generator=g),
                   "timesteps": torch.tensor([10.0, 700.0]),
                   "context": torch.randn(2, 5, 16, generator=g)},
                  os.path.join(sys.argv[2], "inputs.safetensors"))
        return 0
    if mode == "kohya-alpha":
        d = sys.argv[2]
        sd = load_file(os.path.join(d, "kohya.safetensors"))
        for k in sd:
            if k.endswith(".alpha"):
                sd[k] = torch.tensor(1.0)
        save_file(sd, os.path.join(d, "kohya_alpha.safetensors"), metadata={"format": "pt"})
        return 0
    fix, d = sys.argv[2], sys.argv[3]
    import diffusers
    ok = True
    if mode == "diffusers017":
        from diffusers import UNet2DConditionModel
        print(f" diffusers {diffusers.__version__}, torch {torch.__version__}: load_attn_procs")
        unet = UNet2DConditionModel.from_pretrained(os.path.join(fix, "sd_tiny", "unet")).eval()
        unet.load_attn_procs(os.path.join(d, "attn.safetensors"))
        ok &= compare("our diffusers-attn-procs export", unet_out(unet, d), d, "ours_attn.safetensors")
        unet = UNet2DConditionModel.from_pretrained(os.path.join(fix, "sd_tiny", "unet")).eval()
        unet.load_attn_procs(torch.load(os.path.join(fix, "sd_tiny", "lora", "pytorch_lora_weights.bin"),
                                        map_location="cpu"))
        ok &= compare("AlignProp's .bin (the source of the exports)", unet_out(unet, d), d,
                      "ours_bin.safetensors")
        return 0 if ok else 1
    import peft
    from diffusers import StableDiffusionPipeline
    print(f" diffusers {diffusers.__version__}, peft {peft.__version__}, torch {torch.__version__}: "
          "load_lora_weights")
    for name, path, weight in (("peft", os.path.join(d, "peft"), None),
                               ("kohya", d, "kohya.safetensors"),
                               ("kohya_alpha", d, "kohya_alpha.safetensors")):
        pipe = StableDiffusionPipeline.from_pretrained(os.path.join(fix, "sd_tiny"),
                                                       safety_checker=None)
        pipe.load_lora_weights(path, weight_name=weight) if weight else pipe.load_lora_weights(path)
        ok &= compare(f"our {name} export" if name != "kohya_alpha" else
                      "kohya export with alpha 1 (scale 1/rank)", unet_out(pipe.unet.eval(), d), d,
                      f"ours_{name}.safetensors")
        if name == "peft":
            # the names current diffusers writes for this adapter are our export's
            from peft.utils import get_peft_model_state_dict
            out = os.path.join(d, "peft_saved")
            StableDiffusionPipeline.save_lora_weights(
                out, unet_lora_layers=get_peft_model_state_dict(
                    pipe.unet, adapter_name=list(pipe.unet.peft_config)[0]))
            saved = load_file(os.path.join(out, "pytorch_lora_weights.safetensors"))
            ours = load_file(os.path.join(d, "peft", "pytorch_lora_weights.safetensors"))
            same = sorted(saved) == sorted(ours) and all(torch.equal(saved[k], ours[k]) for k in ours)
            print(f"  {'ok  ' if same else 'FAIL'} save_lora_weights writes the {len(saved)} keys "
                  f"and values of our peft export (e.g. {sorted(saved)[0]})")
            ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
