# common.sh: helpers for the training job's shell tests (sourced).
#   BIN: alignprop-mpi, DIFF: lora_diff, CFG: configs/demo.yaml
set -u
# absolute paths: jobs (SLURM) run elsewhere
BIN=$(realpath "$BIN") DIFF=$(realpath "$DIFF") CFG=$(realpath "$CFG")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export AP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "  ok   $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL $*"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
# The newest checkpoint's LoRA file of run directory $1.
last_lora() {
  local d
  d=$(ls -d "$1"/checkpoints/checkpoint_* 2>/dev/null | grep -v '\.tmp\.' | sort -t_ -k2 -n | tail -1)
  echo "$d/pytorch_lora_weights.safetensors"
}
# Every published checkpoint of run directory $1 is complete.
checkpoints_complete() {
  local d n=0
  for d in "$1"/checkpoints/checkpoint_*; do
    [ -e "$d" ] || continue
    case "$d" in *.tmp.*) continue ;; esac
    n=$((n + 1))
    [ -s "$d/state.h5" ] && [ -s "$d/pytorch_lora_weights.safetensors" ] || { echo "incomplete: $d"; return 1; }
    if command -v h5dump >/dev/null; then h5dump -H "$d/state.h5" >/dev/null 2>&1 || { echo "unreadable: $d/state.h5"; return 1; }; fi
  done
  echo "$n complete checkpoints"
}
