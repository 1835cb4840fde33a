#!/usr/bin/env bash
# A real single-node SLURM (tools/slurm-local): sbatch the job script on the
# demo config with 2 tasks, signal it mid-run the way SLURM warns before the
# time limit (scancel --signal=USR1 --batch), check it checkpoints, exits 75
# and requeues itself, let the requeued job resume (--resume auto) and finish,
# and compare its final LoRA with an uninterrupted mpirun of the same config:
# bit for bit (same samples, same 2-rank decomposition).
# Skips (exit 77) with the reason when SLURM cannot start here.
#   requeue.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/train/common.sh"
echo "slurm requeue: sbatch, SIGUSR1, exit 75, requeue, resume == uninterrupted"
sdir="$tmp/slurm"
# teardown (daemons, munged, jobs) on every exit, also on meson's timeout SIGTERM
trap '"$root/tools/slurm-local" down "$sdir"; [ -n "${AP_TEST_KEEP:-}" ] || rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT HUP
env_line=$("$root/tools/slurm-local" up "$sdir")
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 77 ] && { echo "SKIP: SLURM cannot start here (reason above)"; exit 77; }
  echo "tools/slurm-local failed ($rc)"; exit 1
fi
eval "$env_line"
sets=(--set steps=4 --set num_epochs=3 --set train.total_samples_per_epoch=4
      --set train.total_batch_size=4 --set visualize_eval=false --set save_freq=1
      "--set=truncated_backprop_minmax=[0,4]" --set run_name=r)
# the job script as shipped, minus the GPU and memory request this node cannot
# grant, on the CPU backend (AP_BACKEND=cpu)
sed -e '/--gpus-per-task/d' -e '/--mem=/d' -e 's/--ntasks-per-node=4/--ntasks-per-node=2/' \
    -e 's/--cpus-per-task=8/--cpus-per-task=1/' -e "s|--output=logs/|--output=$tmp/|" \
    "$root/jobs/aesthetic_4xa100.sh" > "$tmp/job.sh"
jid=$(cd "$root" && AP_BACKEND=cpu AP_BIN="$BIN" sbatch --parsable "$tmp/job.sh" "$CFG" --set logdir="$tmp/slurm-run" "${sets[@]}")
[ -n "$jid" ] && ok "submitted job $jid" || { bad "sbatch failed"; finish; exit 1; }
out="$tmp/slurm-alignprop-aesthetic-$jid.out"
job_state() { scontrol show job "$jid" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# signal once the first checkpoint is published (the stop writes a later one)
for _ in $(seq 1 600); do
  [ -s "$(last_lora "$tmp/slurm-run/r")" ] && break
  case "$(job_state)" in FAILED|CANCELLED|COMPLETED) break ;; esac
  sleep 0.2
done
scancel --signal=USR1 --batch "$jid" && ok "sent USR1 to the batch shell"
for _ in $(seq 1 300); do
  grep -q "requeueing job" "$out" 2>/dev/null && break
  case "$(job_state)" in FAILED|CANCELLED|COMPLETED) break ;; esac
  sleep 0.2
done
grep -q "stop requested" "$out" && ok "ranks stopped after their step and checkpointed" || bad "no stop message"
grep -q "requeueing job $jid" "$out" && ok "exit 75 mapped to scontrol requeue" || { bad "no requeue"; tail -20 "$out"; }
# a requeued job is eligible again after AuthInfo's cred_expire: 10 s under
# tools/slurm-local (SLURM's default is 120 s). Not StartTime=now: a relaunch
# in the same second as the kill is refused by slurmd ("already killed").
# the requeued run ends with "alignprop-mpi exited N"; then the job completes
for _ in $(seq 1 900); do
  grep -q "ap_job_run: alignprop-mpi exited" "$out" 2>/dev/null && break
  case "$(job_state)" in FAILED|CANCELLED|TIMEOUT|NODE_FAIL) break ;; esac
  sleep 0.2
done
for _ in $(seq 1 100); do
  st=$(job_state)
  [ -n "${AP_TEST_DEBUG:-}" ] && echo "state: $st"
  [ "$st" = COMPLETED ] && break
  sleep 0.2
done
[ "$st" = COMPLETED ] && ok "requeued job completed" || { bad "job state $st"; tail -20 "$out"; }
grep -q "restart 1" "$out" && grep -q "resumed from" "$out" && ok "the requeued run resumed from a checkpoint" \
  || bad "the second run did not resume"
mpirun -np 2 "$BIN" "$CFG" --set logdir="$tmp/direct" "${sets[@]}" > "$tmp/direct.log" 2>&1 \
  && ok "uninterrupted mpirun -np 2" || { bad "uninterrupted run exit $?"; tail "$tmp/direct.log"; }
if "$DIFF" "$(last_lora "$tmp/slurm-run/r")" "$(last_lora "$tmp/direct/r")" 0; then
  ok "requeued job's LoRA == uninterrupted run's, bit for bit"
else
  bad "requeued job's LoRA differs"
fi
finish
