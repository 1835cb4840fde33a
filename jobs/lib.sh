# lib.sh: what every alignprop-mpi batch script does (sourced by jobs/*.sh).
#
#   ap_job_run CONFIG [alignprop-mpi options...]
#
# Starts `mpirun -np $SLURM_NTASKS alignprop-mpi CONFIG --resume auto ...`
# (one rank per task, i.e. per GPU), so a requeued job continues from the
# newest complete checkpoint. SLURM's warning signal (--signal=B:USR1@T, sent
# to this batch shell before the time limit; also scancel --signal=USR1
# --batch) is forwarded to mpirun as SIGUSR1, which Open MPI passes on to
# every rank: each finishes its optimizer step, rank 0 writes a checkpoint,
# and all stop (75). Exit 75 of a still-running job is then turned into
# `scontrol requeue` (the job comes back and resumes); 0 ends the job;
# anything else fails it. SIGTERM (plain scancel, preemption) is the same
# checkpoint signal: this shell forwards it to the launcher as SIGUSR1, and
# SLURM also sends it to every rank (a rank takes a repeated stop signal as
# the same request). mpirun answers its own SIGTERM by sending SIGTERM to the
# ranks and SIGKILL AP_STOP_GRACE seconds later (default 120, passed as
# odls_base_sigkill_timeout): set it to one optimizer step plus a checkpoint.
# mpirun sleeps that long after any abort (a rank's non-zero exit), so the
# ranks report a stop in $AP_STOP_FILE and exit 0 (75 is restored here); a
# crash costs AP_STOP_GRACE. SLURM's KillWait / GraceTime bound it in the end.
# See jobs/README.md.
# Environment: AP_BIN (default: build/alignprop-mpi under the submit
# directory), AP_PER_GPU_CAPACITY (per-node micro-batch), AP_NUM_THREADS
# (default: --cpus-per-task), AP_MPIRUN_ARGS (extra mpirun options),
# AP_STOP_GRACE (seconds mpirun lets the ranks finish after a SIGTERM),
# AP_LAUNCHER=srun (start the ranks with `srun --mpi=$AP_SRUN_MPI`, default
# pmix, plus AP_SRUN_ARGS, instead of mpirun; see jobs/README.md for why),
# AP_BACKEND (set by the GPU scripts: cuda; passed as --set backend=...),
# AP_BIND (cores: the default, each rank bound to its own --cpus-per-task
# cores; none: --bind-to none). Before the ranks start, one
# `alignprop-mpi CONFIG --dry-run` on the batch node checks the config,
# the backend and the batch arithmetic: a job that would be refused ends
# there (exit 2, never requeued). See docs/jobs.md.

# The mpirun placement for this node (sets ap_bind_args, prints why): with
# P tasks per node and C CPUs per task, `--map-by ppr:P:node:pe=C --bind-to
# core` gives every rank C cores of its own, on which its C threads run
# (AP_NUM_THREADS = C, pinned one per CPU by the program); where P x C is
# more than the node's cores, or AP_BIND=none, `--bind-to none`.
# AP_MPIRUN_ARGS holding its own --map-by/--bind-to wins.
ap_job_binding() {
  local ppn=${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-${SLURM_NTASKS:-1}}}
  ppn=${ppn%%[(,]*}
  local cpt=${SLURM_CPUS_PER_TASK:-1} cores
  cores=$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)
  [ "${cores:-0}" -gt 0 ] || cores=$(nproc --all)
  ap_bind_args=()
  case " ${AP_MPIRUN_ARGS:-} " in
    *" --map-by "*|*" --bind-to "*|*" -bind-to "*|*" -map-by "*)
      echo "ap_job_run: binding: as AP_MPIRUN_ARGS says ($AP_MPIRUN_ARGS)"; return ;;
  esac
  if [ "${AP_BIND:-cores}" = none ]; then
    ap_bind_args=(--bind-to none)
    echo "ap_job_run: binding: --bind-to none (AP_BIND=none): the kernel places the threads"
  elif [ "${AP_BIND:-cores}" != cores ]; then
    echo "ap_job_run: AP_BIND=$AP_BIND: expected cores or none" >&2
    return 2
  elif [ $((ppn * cpt)) -le "$cores" ]; then
    ap_bind_args=(--map-by "ppr:$ppn:node:pe=$cpt" --bind-to core)
    echo "ap_job_run: binding: --map-by ppr:$ppn:node:pe=$cpt --bind-to core: each of the $ppn ranks" \
         "per node has $cpt cores of its own for its $AP_NUM_THREADS threads ($cores cores on $(hostname))"
  else
    ap_bind_args=(--bind-to none)
    echo "ap_job_run: binding: --bind-to none: $ppn ranks x $cpt CPUs is more than the $cores cores of" \
         "$(hostname) (ask for fewer --cpus-per-task)"
  fi
  ap_bind_args+=(--report-bindings)
}

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
  [ -n "${AP_BACKEND:-}" ] && set -- "$@" --set "backend=$AP_BACKEND"
  # the run's own checks first, on this node: what the run would refuse
  # (config, backend, batch arithmetic) ends the job here, never requeued
  local dry
  dry=$("$bin" "$config" --dry-run "$@" 2>&1)
  local drc=$?
  if [ $drc -ne 0 ]; then
    echo "$dry" | tail -5
    echo "ap_job_run: alignprop-mpi $config --dry-run refused the run (exit $drc): not started" >&2
    return $drc
  fi
  echo "$dry" | grep -A3 '^# batch arithmetic' | sed 's/^/ap_job_run: (one rank) /'
  if [ "${AP_LAUNCHER:-mpirun}" = mpirun ]; then
    ap_job_binding || return 2
  else
    echo "ap_job_run: binding: srun's (--cpus-per-task=${SLURM_CPUS_PER_TASK:-1} per task; add --cpu-bind=cores to AP_SRUN_ARGS where the cluster does not bind)"
  fi
  # a stop (75) comes back through this file (see above)
  mkdir -p logs
  export AP_STOP_FILE=$PWD/logs/.ap_stop.${SLURM_JOB_ID:-$BASHPID}.${SLURM_RESTART_COUNT:-0}
  rm -f "$AP_STOP_FILE"
  local pass=(-x AP_NUM_THREADS -x AP_STOP_FILE)
  [ -n "${AP_PER_GPU_CAPACITY:-}" ] && pass+=(-x AP_PER_GPU_CAPACITY)
  case "${AP_LAUNCHER:-mpirun}" in
    # shellcheck disable=SC2086
    mpirun) mpirun -np "$ntasks" "${pass[@]}" --mca odls_base_sigkill_timeout "${AP_STOP_GRACE:-120}" \
              "${ap_bind_args[@]}" ${AP_MPIRUN_ARGS:-} \
              "$bin" "$config" --resume auto "$@" & ;;
    # srun exports this shell's environment to every task
    # shellcheck disable=SC2086
    srun) srun --mpi="${AP_SRUN_MPI:-pmix}" --ntasks="$ntasks" ${AP_SRUN_ARGS:-} \
            "$bin" "$config" --resume auto "$@" & ;;
    *) echo "ap_job_run: AP_LAUNCHER=${AP_LAUNCHER}: expected mpirun or srun" >&2; return 2 ;;
  esac
  local pid=$! rc term=0
  # USR1 (--signal=B:USR1@T, scancel --signal=USR1 --batch) reaches this shell
  # only: pass it on (mpirun and srun both forward SIGUSR1 to every rank).
  # SIGTERM (scancel, preemption) is the same request: passed on as SIGUSR1
  # (Open MPI does not forward SIGTERM); where SLURM also signals the ranks
  # themselves, they take the repeat as the same stop.
  trap 'echo "ap_job_run: SIGUSR1: the ranks finish their step, checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' USR1
  trap 'term=1; echo "ap_job_run: SIGTERM: passed to the ranks as SIGUSR1: they finish their step, checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' TERM
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break   # a trapped signal interrupted wait: keep waiting
  done
  trap - USR1 TERM
  if [ -e "$AP_STOP_FILE" ]; then
    rc=75   # the ranks stopped (checkpoint written) and exited 0 for mpirun's sake
    rm -f "$AP_STOP_FILE"
  fi
  if [ "$term" -eq 1 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 75 ]; then
    # mpirun, itself sent SIGTERM by SLURM, reports the job as failed even
    # when every rank checkpointed and exited 75
    echo "ap_job_run: alignprop-mpi exited $rc after SIGTERM (mpirun reports a signalled job as failed); treated as a stop (75): a resume continues from the newest complete checkpoint"
    rc=75
  fi
  if [ "$rc" -eq 75 ]; then
    # requeue only a job that is still running (USR1: time limit warning,
    # scancel --signal=USR1 --batch); a cancelled or preempted one is SLURM's
    # (scancel means stop; preemption requeues by itself)
    local state
    state=$(scontrol show job "${SLURM_JOB_ID:-0}" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
    if [ -n "$state" ] && [ "$state" != RUNNING ]; then
      echo "ap_job_run: stopped (exit 75) while the job is $state: not requeued; it resumes when resubmitted"
      return 75
    fi
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
