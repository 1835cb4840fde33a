#!/usr/bin/env bash
# AlignProp aesthetic training on one CPU node (the CPU backend: what runs
# today): 4 MPI ranks, each with 16 cores of its own for its 16 threads.
#   sbatch jobs/aesthetic_cpu.sh [CONFIG] [alignprop-mpi options, e.g. --set pretrained.model=PATH]
# Requeues itself when stopped (time limit, preemption, scancel --signal=USR1)
# and resumes from the newest complete checkpoint. Sizes, binding and the
# USR1 lead time: docs/jobs.md.
# Memory: per rank the weights (UNet 3.4 GB, VAE decoder 0.2 GB, CLIP ViT-L/14
# 1.2 GB, text encoder 0.5 GB in fp32) + one micro-batch of 4 at 512x512
# (8.9 GB measured by --dry-run) = about 14 GB; 4 ranks + MPI: 96 GB.
#SBATCH --job-name=alignprop-aesthetic-cpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --mem=96G
#SBATCH --time=48:00:00
#SBATCH --requeue
# USR1 lead time: one optimizer step + a checkpoint + margin (docs/jobs.md "Lead time")
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm-%x-%j.out
set -u
# Modules: where the cluster provides the toolchain as environment modules,
# load what the build used (names differ per site), e.g.:
#   module load gcc/12 openmpi/4.1 hdf5/1.10 openblas libyaml
# the repository: $AP_ROOT, else the submit directory, else the job's working directory
root=${AP_ROOT:-${SLURM_SUBMIT_DIR:-.}}
[ -f "$root/jobs/lib.sh" ] || root=$PWD
cd "$root" || exit 1
. jobs/lib.sh
export AP_BACKEND=${AP_BACKEND:-cpu}
config=${1:-configs/aesthetic.yaml}
[ $# -gt 0 ] && shift
ap_job_run "$config" "$@"
