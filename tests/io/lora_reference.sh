#!/usr/bin/env bash
# Our LoRA exports loaded by the reference libraries (docs/lora.md §7):
#   LIB=diffusers017  diffusers 0.17.1 load_attn_procs (tools/refenv)
#   LIB=peft          current diffusers + peft load_lora_weights of the peft
#                     and kohya exports (tools/peftenv)
# The UNet output after loading each file is compared with ours after loading
# the same file (tests/io/lora_reference.py: tolerance 1e-4); our outputs for
# the three exports must equal ours for the source .bin bit for bit.
# Exits 77 (skip) with the reason when the environment cannot be created.
# usage: lora_reference.sh ALIGNPROP_MPI LORA_EPS FIXTURES_DIR LIB
set -uo pipefail
bin=$1 eps=$2 fix=$3 lib=$4
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
T=$(mktemp -d /tmp/ap_lora_ref.XXXXXX)
trap 'rm -rf "$T"' EXIT
case $lib in
  diffusers017) env=refenv ;;
  peft) env=peftenv ;;
  *) echo "lora_reference: LIB: expected diffusers017 or peft, found '$lib'"; exit 2 ;;
esac
echo "lora_reference ($lib): our LoRA exports in the reference library"
if ! py=$("$root/tools/$env" 2>"$T/env.log"); then
  echo "skip: tools/$env could not create its environment:"
  tail -5 "$T/env.log"
  exit 77
fi
fail=0
run() { "$@" >"$T/cmd.log" 2>&1 || { echo "  FAIL $*"; cat "$T/cmd.log"; exit 1; }; }
src="$fix/sd_tiny/lora/pytorch_lora_weights.bin"
run "$bin" lora convert "$src" "$T/attn.safetensors" --to diffusers-attn-procs
run "$bin" lora convert "$src" "$T/peft/" --to peft
run "$bin" lora convert "$T/peft" "$T/kohya.safetensors" --to kohya
run "$py" "$here/lora_reference.py" inputs "$T"
run "$py" "$here/lora_reference.py" kohya-alpha "$T"
for n in bin:"$src" attn:"$T/attn.safetensors" peft:"$T/peft" kohya:"$T/kohya.safetensors" \
         kohya_alpha:"$T/kohya_alpha.safetensors"; do
  run "$eps" "$fix/sd_tiny/unet" "${n#*:}" "$T/inputs.safetensors" "$T/ours_${n%%:*}.safetensors"
done
for n in attn peft kohya; do
  if cmp -s "$T/ours_bin.safetensors" "$T/ours_$n.safetensors"; then
    echo "  ok   our UNet with the $n export = with the source .bin, bit for bit"
  else
    echo "  FAIL our UNet with the $n export differs from the source .bin's"; fail=1
  fi
done
if cmp -s "$T/ours_bin.safetensors" "$T/ours_kohya_alpha.safetensors"; then
  echo "  FAIL alpha 1 (rank 2) changed nothing: the kohya alpha was not applied"; fail=1
fi
"$py" "$here/lora_reference.py" "$lib" "$fix" "$T" 2>"$T/py.err" || { fail=1; tail -20 "$T/py.err"; }
[ $fail = 0 ] && echo "lora_reference ($lib): all passed" || echo "lora_reference ($lib): FAILED"
exit $fail
