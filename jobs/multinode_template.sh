#!/usr/bin/env bash
# Template: AlignProp on several nodes, one MPI rank per GPU. Copy and edit the
# #SBATCH lines (nodes, GPUs per node, time) and the per-node capacity.
#   sbatch jobs/multinode_template.sh configs/hps.yaml [alignprop-mpi options]
# Per-node micro-batch (per_gpu_capacity): nodes with smaller GPUs take less,
# the global batch stays exact. Either in the config:
#   train:
#     per_gpu_capacity_by_host: {node01: 4, node02: 2}
# or per node in the environment (set here, e.g. from the node's GPU memory):
#   export AP_PER_GPU_CAPACITY=4
# Precedence: config value < by-host map < AP_PER_GPU_CAPACITY < --per-gpu-capacity.
#SBATCH --job-name=alignprop
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem=160G
#SBATCH --time=48:00:00
#SBATCH --requeue
# USR1 lead time: one optimizer step + a checkpoint + margin (docs/jobs.md "Lead time")
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm-%x-%j.out
set -u
# Modules: where the cluster provides the toolchain as environment modules,
# load what the build used (names differ per site), e.g.:
#   module load gcc/12 openmpi/4.1 hdf5/1.10 openblas libyaml
#   module load cuda/12.2            # GPU scripts, once the CUDA backend runs
# the repository: $AP_ROOT, else the submit directory, else the job's working directory
root=${AP_ROOT:-${SLURM_SUBMIT_DIR:-.}}
[ -f "$root/jobs/lib.sh" ] || root=$PWD
cd "$root" || exit 1
. jobs/lib.sh
# the GPU backend: ap_job_run's --dry-run refuses the job (exit 2, not
# requeued) where this build has no CUDA backend; AP_BACKEND=cpu overrides
export AP_BACKEND=${AP_BACKEND:-cuda}
config=${1:-configs/hps.yaml}
[ $# -gt 0 ] && shift
# mpirun places $SLURM_NTASKS ranks over the allocation (Open MPI reads it) and
# starts its daemons on the other nodes with `srun`, one task per node: GPUs are
# requested per node (not --gpus-per-task=1, which that one-task step would
# inherit and so see one GPU per node); the ranks pick their GPU by local rank.
# AP_PER_GPU_CAPACITY, when set on the submitting shell, goes to every rank.
ap_job_run "$config" "$@"
