#!/usr/bin/env bash
# The job scripts on a real single-node SLURM (tools/slurm-local), on the demo
# config with 2 tasks of 1 CPU:
#   * jobs/aesthetic_4xa100.sh (GPU request removed): its --dry-run refuses
#     backend cuda in this build, so the job ends FAILED with exit 2 before
#     any rank starts: no run directory, no requeue;
#   * jobs/aesthetic_cpu.sh: runs to the end (COMPLETED), its log shows the
#     binding chosen (--map-by ppr:2:node:pe=1 --bind-to core) and mpirun's
#     report of each rank's binding, and `alignprop-mpi report` reads the run.
# Skips (exit 77) with the reason when SLURM cannot start here.
#   jobs.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/train/common.sh"
echo "slurm jobs: the GPU script refuses a missing backend, the CPU script binds and runs"
sdir="$tmp/slurm"
trap '"$root/tools/slurm-local" down "$sdir"; [ -n "${AP_TEST_KEEP:-}" ] || rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT HUP
env_line=$("$root/tools/slurm-local" up "$sdir")
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 77 ] && { echo "SKIP: SLURM cannot start here (reason above)"; exit 77; }
  echo "tools/slurm-local failed ($rc)"; exit 1
fi
eval "$env_line"
sets=(--set steps=4 --set num_epochs=1 --set train.total_samples_per_epoch=4
      --set train.total_batch_size=4 --set save_freq=1 --set vis_freq=1
      "--set=truncated_backprop_minmax=[0,4]" --set run_name=r)
job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_end() { # job id: waits until it leaves PENDING/RUNNING (at most 300 s)
  local st
  for _ in $(seq 1 1500); do
    st=$(job_state "$1")
    case "$st" in PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|"") sleep 0.2 ;; *) break ;; esac
  done
  echo "$st"
}
small() { # script -> the script for this node: 2 tasks of 1 CPU, no GPU, no memory request
  sed -e '/--gpus-per-task/d' -e '/--mem=/d' -e 's/--ntasks-per-node=4/--ntasks-per-node=2/' \
      -e 's/--cpus-per-task=[0-9]*/--cpus-per-task=1/' -e "s|--output=logs/|--output=$tmp/|" "$1"
}

# the GPU script: refused by its dry run
small "$root/jobs/aesthetic_4xa100.sh" > "$tmp/gpu.sh"
jid=$(cd "$root" && env -u AP_BACKEND AP_BIN="$BIN" sbatch --parsable "$tmp/gpu.sh" "$CFG" \
      --set logdir="$tmp/gpu-run" "${sets[@]}")
st=$(wait_end "$jid")
out="$tmp/slurm-alignprop-aesthetic-$jid.out"
code=$(scontrol show job "$jid" | grep -o ' ExitCode=[0-9:]*' | cut -d= -f2)
[ "$st" = FAILED ] && [ "$code" = "2:0" ] && ok "GPU script without a CUDA backend: job FAILED, exit 2" \
  || { bad "GPU script: state $st exit $code"; tail "$out"; }
grep -q 'backend: "cuda" is not available' "$out" && grep -q "dry-run refused the run" "$out" \
  && ok "its log names the backend and the refused dry run" || { bad "no refusal in the log"; tail "$out"; }
[ ! -e "$tmp/gpu-run" ] && ok "no rank started (no run directory)" || bad "a run directory was made"
grep -q "requeue" "$out" && bad "the refused job talked of requeueing" || ok "not requeued"

# the CPU script: bound, runs to the end
small "$root/jobs/aesthetic_cpu.sh" > "$tmp/cpu.sh"
jid=$(cd "$root" && env -u AP_BACKEND AP_BIN="$BIN" sbatch --parsable "$tmp/cpu.sh" "$CFG" \
      --set logdir="$tmp/cpu-run" "${sets[@]}")
st=$(wait_end "$jid")
out="$tmp/slurm-alignprop-aesthetic-cpu-$jid.out"
[ "$st" = COMPLETED ] && ok "CPU script: job COMPLETED" || { bad "CPU script: state $st"; tail -20 "$out"; }
grep -q "binding: --map-by ppr:2:node:pe=1 --bind-to core" "$out" \
  && ok "binding shown: $(grep -o 'binding: .*' "$out" | head -1 | cut -c1-120)" \
  || { bad "no binding line"; grep "ap_job_run" "$out"; }
n=$(grep -c "MCW rank [01] bound to" "$out")
[ "$n" -eq 2 ] && ok "mpirun reports each rank's binding: $(grep -o 'MCW rank 0 bound to.*' "$out" | head -1)" \
  || { bad "$n 'bound to' lines (expected 2)"; }
grep -q "^done: " "$out" && ok "the run finished" || bad "no done line"
"$BIN" report "$tmp/cpu-run/r" -o "$tmp/r.html" > /dev/null && grep -q 'data-points="1"' "$tmp/r.html" \
  && ok "alignprop-mpi report reads the job's run" || bad "report of the job's run"
finish
