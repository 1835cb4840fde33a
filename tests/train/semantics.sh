#!/usr/bin/env bash
# The training step means what the original's means (issue 16): reward_std
# is the mean of the micro-batches' unbiased stds (reward_std_global: the
# whole batch's); grad_scale multiplies the aesthetic loss only (a demo run
# with grad_scale 2 equals one with 1); a step with a non-finite gradient is
# skipped and logged (/train/skipped), the run goes on; max_nonfinite_steps
# such steps in a row stop it (exit 1, naming the key).
#   semantics.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
echo "semantics: reward_std, grad_scale, non-finite steps"
# 3 steps of 4 samples as 2 micro-batches of 2; step 2's gradient made NaN
sets=(--set steps=2 "--set=truncated_backprop_minmax=[0,2]" --set num_epochs=3
      --set train.total_samples_per_epoch=4 --set train.total_batch_size=4
      --set visualize_eval=false --set run_name=r --per-gpu-capacity 2)
run() { local name=$1; shift; "$BIN" "$CFG" "${sets[@]}" --set logdir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1; }
# values of a log dataset, one per line (h5dump; -A 0: not its attributes)
col() { h5dump -y -w 0 -A 0 -d "/train/$2" "$1" | sed -n '/DATA {/,/}/p' | tr -d '\n' |
        sed 's/.*DATA {//; s/}.*//' | tr ',' '\n' | tr -d ' '; }

AP_DEBUG_NONFINITE_AT=2 run skip; rc=$?
[ $rc -eq 0 ] && grep -q "step 2: the LoRA gradient is not finite.*step skipped" "$tmp/skip.log" &&
  ok "a NaN gradient at step 2: skipped with a warning, the run finished" ||
  { bad "NaN gradient: exit $rc"; tail -3 "$tmp/skip.log"; }
if command -v h5dump > /dev/null; then
  L=$tmp/skip/r/log.h5
  sk=$(echo $(col "$L" skipped))
  [ "$sk" = "0 1 0" ] && ok "/train/skipped: 0 1 0" || bad "/train/skipped: $sk, expected 0 1 0"
  paste -d' ' <(col "$L" rewards | paste -d' ' - - - -) <(col "$L" reward_std) <(col "$L" reward_std_global) |
    awk 'function sd(a, b) { return (a > b ? a - b : b - a) / sqrt(2) }
         function sd4(a, b, c, d,  m) { m = (a + b + c + d) / 4
           return sqrt(((a-m)^2 + (b-m)^2 + (c-m)^2 + (d-m)^2) / 3) }
         { e1 = $5 - (sd($1, $2) + sd($3, $4)) / 2; e2 = $6 - sd4($1, $2, $3, $4)
           if (e1 < 0) e1 = -e1; if (e2 < 0) e2 = -e2
           if (e1 > 1e-5 || e2 > 1e-5) bad++ }
         END { exit bad > 0 || NR != 3 }' &&
    ok "reward_std = mean of the 2 micro-batches' stds, reward_std_global = the batch's std (each row, 1e-5)" ||
    bad "reward_std / reward_std_global do not match the per-sample rewards"
else
  echo "  (h5dump not found: the log columns are not checked)"
fi

AP_DEBUG_NONFINITE_AT=2 run scale --set grad_scale=2; rc=$?
[ $rc -eq 0 ] && "$DIFF" "$tmp/scale/r/checkpoints/checkpoint_3/pytorch_lora_weights.safetensors" \
  "$tmp/skip/r/checkpoints/checkpoint_3/pytorch_lora_weights.safetensors" 0 > /dev/null &&
  ok "grad_scale 2 leaves a non-aesthetic reward's training unchanged (bit for bit)" ||
  bad "grad_scale changed the demo reward's training (exit $rc)"

AP_DEBUG_NONFINITE_AT=1,2 run stop --set max_nonfinite_steps=2; rc=$?
[ $rc -eq 1 ] && grep -q "not finite 2 steps in a row (max_nonfinite_steps 2)" "$tmp/stop.log" &&
  ok "2 non-finite steps in a row with max_nonfinite_steps 2: exit 1, named" ||
  { bad "non-finite stop: exit $rc"; tail -3 "$tmp/stop.log"; }
finish
