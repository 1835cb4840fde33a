#!/usr/bin/env bash
# A reward mixture end to end (src/train/reward.h): reward_fn {demo: 2.0,
# aesthetic: 0.5} on the tiny model with the tiny CLIP + aesthetic MLP of
# tests/fixtures/clip: the resolved config keeps the mapping; training and
# evaluation log each part (/train and /eval reward_<name>, reward_<name>_mean)
# and the weighted sum in rewards (per sample |sum - (2 demo + 0.5 aesthetic)|
# <= 1e-5 (1 + |sum|): float32 columns, the sum itself rounded once from
# double); the evaluation prints each part's mean; an evaluate-only run
# writes the same columns to eval.h5; PickScore alone (--dry-run plan) and in
# a mixture {pickscore: 0.01, demo: 1.0} (trains, logs reward_pickscore).
# Skips (77) without h5dump or fixtures.
#   mixture.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
echo "mixture: reward_fn {demo: 2.0, aesthetic: 0.5}, each part logged and evaluated"
command -v h5dump > /dev/null || { echo "skip: h5dump not found (the log columns cannot be read)"; exit 77; }
fx=${AP_FIXTURES_DIR:-}
[ -f "$fx/clip/aesthetic_mlp.pth" ] || { echo "skip: AP_FIXTURES_DIR has no clip/aesthetic_mlp.pth"; exit 77; }
cfgdir=$(cd "$(dirname "$CFG")" && pwd)
cat > "$tmp/mix.yaml" <<YAML
pretrained:
  model: tiny:0
reward_fn: {demo: 2.0, aesthetic: 0.5}
reward:
  aesthetic_clip: $fx/clip/clip_model
  aesthetic_mlp: $fx/clip/aesthetic_mlp.pth
resolution: 32
steps: 2
prompt_fn: $cfgdir/demo_prompts.txt
logdir: $tmp/logs
mixed_precision: "no"
num_epochs: 1
max_vis_images: 1
train:
  total_samples_per_epoch: 2
  total_batch_size: 2
  per_gpu_capacity: 2
  loss_coeff: 1.0
YAML
# values of a log dataset, one per line (h5dump; -A 0: not its attributes)
col() { h5dump -y -w 0 -A 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | tr -d '\n' |
        sed 's/.*DATA {//; s/}.*//' | tr ',' '\n' | tr -d ' '; }
"$BIN" "$tmp/mix.yaml" --dry-run > "$tmp/dry.out" 2>&1
grep -qxF 'reward_fn: {"demo": 2, "aesthetic": 0.5}' "$tmp/dry.out" &&
  ok "resolved config: reward_fn: {\"demo\": 2, \"aesthetic\": 0.5}" ||
  bad "resolved config lacks the mapping: $(grep reward_fn "$tmp/dry.out")"
"$BIN" "$tmp/mix.yaml" > "$tmp/train.log" 2>&1; rc=$?
[ $rc -eq 0 ] && ok "training with the mixture: exit 0" || { bad "training: exit $rc"; tail -3 "$tmp/train.log"; }
grep -q "reward 2\*demo + 0.5\*aesthetic" "$tmp/train.log" && ok "the job names the mixture" ||
  bad "the job does not name the mixture"
grep -Eq "eval at step 1: .* reward [-0-9.]+ \+- [0-9.]+ \(demo [-0-9.]+, aesthetic [-0-9.]+\)" "$tmp/train.log" &&
  ok "evaluation prints each part: $(grep -o '(demo [^)]*)' "$tmp/train.log" | tail -1)" ||
  bad "evaluation does not print the parts: $(grep 'eval at' "$tmp/train.log" | tail -1)"
# check_sum LOG GROUP: rewards = 2 demo + 0.5 aesthetic; reward_<part>_mean = mean of reward_<part>
check_sum() {
  local f=$1 g=$2
  paste <(col "$f" "/$g/rewards") <(col "$f" "/$g/reward_demo") <(col "$f" "/$g/reward_aesthetic") > "$tmp/sum"
  local n worst
  n=$(grep -c . "$tmp/sum")
  worst=$(awk '{e = $1 - (2 * $2 + 0.5 * $3); if (e < 0) e = -e; t = 1e-5 * (1 + ($1 < 0 ? -$1 : $1));
                r = e / t; if (r > w) w = r} END {printf "%.3g", w + 0}' "$tmp/sum")
  [ "$n" -ge 2 ] && awk -v w="$worst" 'BEGIN {exit !(w <= 1)}' &&
    ok "$f /$g: $n rewards = 2 demo + 0.5 aesthetic (worst err / tol $worst)" ||
    bad "$f /$g: $n rewards, weighted sum off (worst err / tol $worst)"
  local w m
  w=$(col "$f" "/$g/step" | grep -c .)
  m=$(paste <(col "$f" "/$g/reward_demo_mean") <(col "$f" "/$g/reward_demo" | paste - - ) |
      awk '{e = $1 - ($2 + $3) / 2; if (e < 0) e = -e; if (e > 1e-6 * (1 + ($1 < 0 ? -$1 : $1))) b++} END {print b + 0}')
  [ "$m" = 0 ] && ok "$f /$g: reward_demo_mean = the mean of reward_demo over $w rows" ||
    bad "$f /$g: reward_demo_mean differs in $m rows"
}
log=$(ls "$tmp"/logs/*/log.h5 2>/dev/null | head -1)
if [ -n "$log" ]; then
  check_sum "$log" train
  check_sum "$log" eval
else
  bad "no log.h5"
fi
ckpt=$(last_lora "$(dirname "$log")")
"$BIN" "$tmp/mix.yaml" --set only_eval=true --set run_name=evalmix --set "resume_from=$ckpt" > "$tmp/eval.log" 2>&1; rc=$?
[ $rc -eq 0 ] && ok "evaluate-only with the mixture: exit 0" || { bad "evaluate-only: exit $rc"; tail -3 "$tmp/eval.log"; }
[ -f "$tmp/logs/evalmix/eval.h5" ] && check_sum "$tmp/logs/evalmix/eval.h5" eval || bad "no evalmix/eval.h5"
# PickScore as a reward and as a part: the tiny CLIPModel of tools/fixtures/pickscore.py
# with the tiny HF tokenizer it was made for
if [ -f "$fx/pickscore/model.safetensors" ]; then
  sed -e 's|^reward_fn: .*|reward_fn: {pickscore: 0.01, demo: 1.0}|' \
      -e "s|^reward:|reward:\\n  pickscore_model: $fx/pickscore\\n  pickscore_tokenizer: $fx/sd_tiny/tokenizer|" \
      -e 's|^logdir: .*|logdir: '"$tmp"'/logs_ps|' "$tmp/mix.yaml" | sed 's/\\n/\n/g' > "$tmp/ps.yaml"
  "$BIN" "$tmp/ps.yaml" --set reward_fn=pickscore --dry-run > "$tmp/psdry.out" 2>&1; rc=$?
  [ $rc -eq 0 ] && grep -q "reward tape .*(pickscore)" "$tmp/psdry.out" &&
    ok "reward_fn: pickscore: --dry-run measures its plan ($(grep 'reward tape' "$tmp/psdry.out" | tr -s ' '))" ||
    { bad "pickscore --dry-run: exit $rc"; tail -3 "$tmp/psdry.out"; }
  "$BIN" "$tmp/ps.yaml" > "$tmp/ps.log" 2>&1; rc=$?
  [ $rc -eq 0 ] && ok "training with {pickscore: 0.01, demo: 1.0}: exit 0" || { bad "pickscore mixture: exit $rc"; tail -3 "$tmp/ps.log"; }
  plog=$(ls "$tmp"/logs_ps/*/log.h5 2>/dev/null | head -1)
  if [ -n "$plog" ]; then
    paste <(col "$plog" /eval/rewards) <(col "$plog" /eval/reward_pickscore) <(col "$plog" /eval/reward_demo) |
      awk '{e = $1 - (0.01 * $2 + $3); if (e < 0) e = -e; if (e > 1e-5 * (1 + ($1 < 0 ? -$1 : $1))) b++; n++}
           END {exit !(n >= 2 && b == 0)}' &&
      ok "/eval: rewards = 0.01 pickscore + demo; pickscore $(col "$plog" /eval/reward_pickscore_mean | tail -1)" ||
      bad "/eval: the pickscore mixture's sum is off"
  else
    bad "no log.h5 of the pickscore mixture"
  fi
else
  echo "  (no tests/fixtures/pickscore: the PickScore runs are skipped)"
fi
finish
