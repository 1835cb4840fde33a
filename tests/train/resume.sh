#!/usr/bin/env bash
# A run killed anywhere (kill -9 while sampling, during backward, while a
# checkpoint is being written) or stopped with SIGUSR1 resumes with
# --resume auto to exactly the LoRA of an uninterrupted run (bit for bit:
# same samples, same decomposition), and never leaves a partial checkpoint.
#   resume.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
echo "resume: kill -9 at several points, SIGUSR1, then --resume auto"
sets=(--set steps=4 --set num_epochs=2 --set train.total_samples_per_epoch=4
      --set train.total_batch_size=2 --set visualize_eval=false --set save_freq=1
      --set train.learning_rate=1e-2 --set truncated_backprop=true
      --set truncated_backprop_rand=true "--set=truncated_backprop_minmax=[0,4]"
      --set run_name=r --set num_checkpoint_limit=10)
"$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/full" "${sets[@]}" > "$tmp/full.log" 2>&1 \
  && ok "uninterrupted run" || { bad "uninterrupted run exited $?"; tail "$tmp/full.log"; }
ref=$(last_lora "$tmp/full/r")
run_dir="$tmp/killed/r"
i=0
for point in sample:1 checkpoint:2 backward:3 sample:4 ""; do
  i=$((i + 1))
  AP_DEBUG_KILL_AT="$point" "$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/killed" \
    "${sets[@]}" --resume auto > "$tmp/k$i.log" 2>&1
  rc=$?
  if [ -n "$point" ]; then
    [ $rc -eq 137 ] && ok "killed at $point (exit 137)" || { bad "kill at $point: exit $rc"; tail "$tmp/k$i.log"; }
  else
    [ $rc -eq 0 ] && ok "resumed run finished" || { bad "resumed run exit $rc"; tail "$tmp/k$i.log"; }
  fi
  msg=$(checkpoints_complete "$run_dir") && ok "after ${point:-the end}: $msg" || bad "after $point: $msg"
done
grep -q "resumed from" "$tmp/k5.log" && ok "the last run resumed from a checkpoint" || bad "no resume in the last run"
if "$DIFF" "$(last_lora "$run_dir")" "$ref" 0; then ok "killed + resumed == uninterrupted, bit for bit"; else bad "killed + resumed differs"; fi

# SIGUSR1 under mpirun: finish the step, checkpoint, exit 75; resume to the same result.
mpirun -np 2 "$BIN" "$CFG" --per-gpu-capacity 1 --set logdir="$tmp/usr1" "${sets[@]}" --resume auto \
  > "$tmp/u1.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "step 1/" "$tmp/u1.log" 2>/dev/null && break; sleep 0.1; done
kill -USR1 $pid
wait $pid
rc=$?
[ $rc -eq 75 ] && ok "SIGUSR1: exit 75 (requeue)" || { bad "SIGUSR1: exit $rc, expected 75"; tail "$tmp/u1.log"; }
grep -q "stop requested" "$tmp/u1.log" && ok "SIGUSR1: checkpoint written on stop" || bad "SIGUSR1: no stop message"
mpirun -np 2 "$BIN" "$CFG" --per-gpu-capacity 1 --set logdir="$tmp/usr1" "${sets[@]}" --resume auto \
  > "$tmp/u2.log" 2>&1 && ok "SIGUSR1: resumed run finished" || { bad "SIGUSR1 resume exit $?"; tail "$tmp/u2.log"; }
mpirun -np 2 "$BIN" "$CFG" --per-gpu-capacity 1 --set logdir="$tmp/usr1full" "${sets[@]}" \
  > "$tmp/u3.log" 2>&1 && ok "2-rank uninterrupted run" || bad "2-rank uninterrupted run exit $?"
if "$DIFF" "$(last_lora "$tmp/usr1/r")" "$(last_lora "$tmp/usr1full/r")" 0; then
  ok "stopped + resumed == uninterrupted (2 ranks), bit for bit"
else
  bad "stopped + resumed differs (2 ranks)"
fi
finish
