#!/usr/bin/env bash
# AlignProp aesthetic training on one node with 4 GPUs (one MPI rank each).
#   sbatch jobs/aesthetic_4xa100.sh [CONFIG] [alignprop-mpi options, e.g. --set pretrained.model=PATH]
# Requeues itself when stopped (time limit, preemption, scancel --signal=USR1)
# and resumes from the newest complete checkpoint. See jobs/README.md.
#SBATCH --job-name=alignprop-aesthetic
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=160G
#SBATCH --time=24:00:00
#SBATCH --requeue
# USR1 lead time: one optimizer step + a checkpoint + margin (docs/jobs.md "Lead time")
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm-%x-%j.out
set -u
# Modules: where the cluster provides the toolchain as environment modules,
# load what the build used (names differ per site), e.g.:
#   module load gcc/12 openmpi/4.1 hdf5/1.10 openblas libyaml
#   module load cuda/12.2            # GPU scripts (docs/cuda.md §6: wired, never run on a GPU yet)
# the repository: $AP_ROOT, else the submit directory, else the job's working directory
root=${AP_ROOT:-${SLURM_SUBMIT_DIR:-.}}
[ -f "$root/jobs/lib.sh" ] || root=$PWD
cd "$root" || exit 1
. jobs/lib.sh
# the GPU backend: ap_job_run's --dry-run refuses the job (exit 2, not
# requeued) where this build has no CUDA backend, a node no GPU or fewer GPUs
# than ranks (docs/cuda.md §6); AP_BACKEND=cpu overrides
export AP_BACKEND=${AP_BACKEND:-cuda}
config=${1:-configs/aesthetic.yaml}
[ $# -gt 0 ] && shift
ap_job_run "$config" "$@"
