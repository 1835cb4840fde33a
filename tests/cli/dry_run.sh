#!/usr/bin/env bash
# `alignprop-mpi CONFIG --dry-run` prints the measured workspaces of one
# micro-step (src/train/step_plan.c): for the demo preset (tiny:0, written to
# a temporary directory) and at SD v1.5 size with the HPS reward, from the
# real configs only (tests/fixtures/manifests: no weights exist here, none
# are read). The SD case must take seconds, not minutes, and little memory.
# Usage: dry_run.sh ALIGNPROP_EXE FIXTURES_DIR CONFIGS_DIR
set -u
exe=$1 fx=$2 configs=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # name file pattern
    if grep -q -- "$3" "$2"; then echo "  ok   $1"; else echo "  FAIL $1: no \"$3\" in the output"; fail=1; fi
}

"$exe" "$configs/demo.yaml" --dry-run >"$tmp/demo.out" 2>"$tmp/demo.err"
rc=$?
[ $rc -eq 0 ] && echo "  ok   demo: exit 0" || { echo "  FAIL demo: exit $rc"; cat "$tmp/demo.err"; fail=1; }
for k in "UNet tape" "UNet tmp" "VAE tape" "VAE tmp" "text tmp" "reward tape" "scratch" "total"; do
    check "demo: $k" "$tmp/demo.out" "^  $k "
done
ls -d /tmp/alignprop-plan-* 2>/dev/null | grep -q . && echo "  note: /tmp/alignprop-plan-* left by another run"

sd=$tmp/sd
mkdir -p "$sd/unet" "$sd/vae" "$sd/text_encoder"
cp "$fx/manifests/sd15_unet_config.json" "$sd/unet/config.json"
cp "$fx/manifests/sd15_vae_config.json" "$sd/vae/config.json"
cp "$fx/manifests/sd15_text_encoder_config.json" "$sd/text_encoder/config.json"
start=$(date +%s)
"$exe" "$configs/hps.yaml" --dry-run --per-gpu-capacity 1 --threads 2 \
    --set pretrained.model="$sd" --set reward.hps_config="$fx/manifests/open_clip_vit_h14.json" \
    >"$tmp/sd.out" 2>"$tmp/sd.err" &
pid=$!
peak=0
while kill -0 $pid 2>/dev/null; do # resident peak while it runs (kB)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null)
    [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
    sleep 0.05
done
wait $pid
rc=$?
secs=$(( $(date +%s) - start ))
[ $rc -eq 0 ] && echo "  ok   SD v1.5 + HPS: exit 0" || { echo "  FAIL SD v1.5: exit $rc"; cat "$tmp/sd.err"; fail=1; }
sed -n '/measured plan/,$p' "$tmp/sd.out"
check "SD v1.5: UNet tape 2509.2 MB (B 2 CFG rows, 64 x 64, L 77)" "$tmp/sd.out" "UNet tape *2509.2 MB"
check "SD v1.5: VAE tape of one image" "$tmp/sd.out" "VAE tape *2332.0 MB"
echo "  SD v1.5 dry run: ${secs} s, resident peak seen ${peak} kB"
[ "$secs" -le 30 ] && echo "  ok   SD v1.5 in ${secs} s <= 30 s" || { echo "  FAIL SD v1.5 took ${secs} s"; fail=1; }
[ "$peak" -le 500000 ] && echo "  ok   SD v1.5 resident peak ${peak} kB <= 500 MB" ||
    { echo "  FAIL SD v1.5 resident peak ${peak} kB"; fail=1; }
exit $fail
