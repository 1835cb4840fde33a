# lib.sh: what every alignprop-mpi batch script does (sourced by jobs/*.sh).
#
#   ap_job_run CONFIG [alignprop-mpi options...]
#
# Starts `mpirun -np $SLURM_NTASKS alignprop-mpi CONFIG --resume auto ...`
# (one rank per task, i.e. per GPU), so a requeued job continues from the
# newest complete checkpoint. SLURM's warning signal (--signal=B:USR1@T, sent
# to this batch shell before the time limit) and SIGTERM (scancel,
# preemption) are forwarded to mpirun as SIGUSR1, which Open MPI passes on to
# every rank: each finishes its optimizer step, rank 0 writes a checkpoint,
# and all exit with 75. Exit 75 is then turned into `scontrol requeue`
# (the job comes back and resumes); 0 ends the job; anything else fails it.
# Environment: AP_BIN (default: build/alignprop-mpi under the submit
# directory), AP_PER_GPU_CAPACITY (per-node micro-batch), AP_NUM_THREADS
# (default: --cpus-per-task), AP_MPIRUN_ARGS (extra mpirun options).

ap_job_run() {
  local config=$1
  shift
  local bin=${AP_BIN:-${SLURM_SUBMIT_DIR:-.}/build/alignprop-mpi}
  local ntasks=${SLURM_NTASKS:-1}
  export AP_NUM_THREADS=${AP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-0}
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  [ -x "$bin" ] || { echo "ap_job_run: $bin: not built (set AP_BIN or run tools/build)" >&2; return 1; }
  echo "ap_job_run: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-$(hostname)}:" \
       "$ntasks ranks, $AP_NUM_THREADS threads each, $config"
  local pass=(-x AP_NUM_THREADS)
  [ -n "${AP_PER_GPU_CAPACITY:-}" ] && pass+=(-x AP_PER_GPU_CAPACITY)
  # shellcheck disable=SC2086
  mpirun -np "$ntasks" "${pass[@]}" ${AP_MPIRUN_ARGS:-} \
    "$bin" "$config" --resume auto "$@" &
  local pid=$! rc
  trap 'echo "ap_job_run: signal received: the ranks finish their step, checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' USR1 TERM
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break   # a trapped signal interrupted wait: keep waiting
  done
  trap - USR1 TERM
  if [ "$rc" -eq 75 ]; then
    echo "ap_job_run: stopped for requeue (exit 75): requeueing job ${SLURM_JOB_ID:-?}"
    if [ -n "${SLURM_JOB_ID:-}" ] && scontrol requeue "$SLURM_JOB_ID"; then
      return 0
    fi
    echo "ap_job_run: scontrol requeue failed: resubmit with the same command (it resumes)" >&2
    return 75
  fi
  echo "ap_job_run: alignprop-mpi exited $rc"
  return "$rc"
}
