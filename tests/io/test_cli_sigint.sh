#!/usr/bin/env bash
# test_cli_sigint.sh: Ctrl-C during `alignprop-mpi sample` leaves no temporary.
# Runs sample on the tiny model over many prompts, sends SIGINT at a few
# moments while PNGs are being written, then checks: the process died of
# SIGINT, no *.tmp.* entry is left in the output tree, and every *.png present
# is whole (PNG signature first, IEND chunk last).
set -u
set -m # job control: background jobs keep SIGINT (otherwise bash ignores it for them)
exe="$1"
dir=$(mktemp -d /tmp/ap_test_cli_sigint.XXXXXX)
trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 400); do echo "prompt number $i"; done > "$dir/prompts.txt"
fail=0
for round in 1 2 3 4; do
  out="$dir/out$round"
  "$exe" sample --tiny 0 --prompts "$dir/prompts.txt" --steps 1 --height 128 --width 128 \
    --threads 1 --out "$out" > /dev/null 2>&1 &
  pid=$!
  # wait for the first images (up to 2 minutes: ASan builds on a loaded
  # 2-core machine took over 15 s), then a round-dependent extra delay
  for w in $(seq 1 2400); do
    n=$(ls "$out" 2>/dev/null | grep -c '\.png$')
    [ "$n" -ge 2 ] && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
  kill -INT "$pid"
  wait "$pid"
  rc=$?
  pngs=$(ls "$out" | grep -c '\.png$')
  tmps=$(find "$out" -name '*.tmp.*' | wc -l)
  bad=0
  for f in "$out"/*.png; do
    sig=$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')
    end=$(tail -c 8 "$f" | od -An -tx1 | tr -d ' \n')
    if [ "$sig" != "89504e470d0a1a0a" ] || [ "$end" != "49454e44ae426082" ]; then
      echo "  half PNG under its final name: $f"; bad=$((bad + 1))
    fi
  done
  echo "round $round: exit status $rc (expected 130 = SIGINT), $pngs PNGs, $tmps temporaries (expected 0), $bad incomplete PNGs (expected 0)"
  if [ "$rc" -ne 130 ] || [ "$tmps" -ne 0 ] || [ "$bad" -ne 0 ] || [ "$pngs" -lt 2 ]; then
    find "$out" -name '*.tmp.*'
    fail=1
  fi
done
if [ $fail -ne 0 ]; then echo "FAIL"; exit 1; fi
echo "ok: 4 interrupted runs left no temporary and no half PNG"
