#!/usr/bin/env bash
# Stop signals as a SLURM job meets them (issue 16): SIGTERM to the batch
# shell, mpirun and every rank at once (scancel, preemption) checkpoints and
# stops with 75 through jobs/lib.sh (the shell passes it on as SIGUSR1,
# mpirun gives the ranks AP_STOP_GRACE, here 12 s, before SIGKILL: it sleeps
# that long whatever the ranks do); a stop signal repeated while the ranks
# finish their step is ignored (exit 75, not death by the signal).
# (resume.sh checks that a stopped run resumes bit for bit.)
#   signals.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/common.sh"
echo "signals: SIGTERM everywhere through jobs/lib.sh, repeated signals"
sets=(--set steps=2 "--set=truncated_backprop_minmax=[0,2]" --set num_epochs=3
      --set train.total_samples_per_epoch=2 --set train.total_batch_size=2
      --set visualize_eval=false --set save_freq=1 --set run_name=r --per-gpu-capacity 1)
wait_for() { for _ in $(seq 1 600); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# the job script's launcher, outside SLURM (no scontrol: a stop returns 75)
(cd "$root" && . jobs/lib.sh && SLURM_NTASKS=2 AP_BIN="$BIN" AP_MPIRUN_ARGS=--oversubscribe AP_STOP_GRACE=12 \
  ap_job_run "$CFG" --set logdir="$tmp/term" "${sets[@]}") > "$tmp/term.log" 2>&1 &
shell=$!
wait_for "step 1/" "$tmp/term.log" || bad "the job did not reach step 1"
# SLURM's cancel: SIGTERM to every process of the job
kill -TERM $shell $(pgrep -f -- "logdir=$tmp/term" | grep -v "^$shell\$") 2>/dev/null
wait $shell
rc=$?
[ $rc -eq 75 ] && ok "SIGTERM to shell, mpirun and ranks: exit 75" || { bad "SIGTERM: exit $rc, expected 75"; tail -5 "$tmp/term.log"; }
grep -q "stop requested" "$tmp/term.log" && ok "the ranks finished their step and checkpointed" ||
  { bad "no stop checkpoint"; tail -5 "$tmp/term.log"; }
msg=$(checkpoints_complete "$tmp/term/r") && [ -s "$(last_lora "$tmp/term/r")" ] && ok "after SIGTERM: $msg" ||
  bad "after SIGTERM: $msg"

# a repeated stop signal while the step finishes: still one clean stop
"$BIN" "$CFG" --set logdir="$tmp/twice" "${sets[@]}" > "$tmp/twice.log" 2>&1 &
pid=$!
wait_for "step 1/" "$tmp/twice.log"
sleep 0.3   # into step 2: the repeats arrive while the rank finishes it
sent=0
for sig in USR1 USR1 TERM; do kill -$sig $pid 2> /dev/null && sent=$((sent + 1)); sleep 0.05; done
wait $pid
rc=$?
[ $sent -eq 3 ] && [ $rc -eq 75 ] && grep -q "stop requested" "$tmp/twice.log" &&
  ok "SIGUSR1, SIGUSR1, SIGTERM while the step finishes: one stop, exit 75" ||
  { bad "repeated signals: $sent of 3 delivered, exit $rc, expected 75"; tail -3 "$tmp/twice.log"; }
finish
