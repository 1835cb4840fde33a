#!/usr/bin/env bash
# mpi_sample.sh: `alignprop-mpi sample` under mpirun splits the prompts over
# the ranks (image k on rank k mod world) and writes byte for byte the PNGs
# of a plain single-process run (seeds are per image); a usage error is
# reported once, with exit status 2.
#   usage: mpi_sample.sh PATH/alignprop-mpi
set -u
exe=$1
command -v mpirun >/dev/null || { echo "mpi_sample: SKIP: no mpirun"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's own start-up allocations are not freed at exit: leak checks stay
# on for the plain runs of this suite, off for processes started by mpirun.
mpienv=(env "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0")
T=$(mktemp -d /tmp/ap_mpi_sample.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
printf 'a cat\na dog\na red house\na blue car\nthe sea\n' >"$T/p.txt"
args=(sample --tiny 1 --prompts "$T/p.txt" --steps 2 --height 16 --width 16 --threads 1 --seed 5)
"$exe" "${args[@]}" --batch 2 --out "$T/one" >/dev/null 2>"$T/one.err" || { cat "$T/one.err"; echo "  FAIL single-process run"; exit 1; }
"${mpienv[@]}" mpirun -n 2 "$exe" "${args[@]}" --out "$T/two" >"$T/two.out" 2>"$T/two.err"
rc=$?
if [ $rc -ne 0 ]; then echo "  FAIL mpirun -n 2: exit $rc"; cat "$T/two.err"; exit 1; fi
for f in "$T"/one/*.png; do
    g=$T/two/$(basename "$f")
    if cmp -s "$f" "$g"; then echo "  ok   $(basename "$f"): 2 ranks == 1 process, byte for byte"
    else echo "  FAIL $(basename "$f"): differs or missing under 2 ranks"; fail=1; fi
done
n=$(ls "$T"/two/*.png | wc -l)
[ "$n" -eq 5 ] && echo "  ok   5 PNGs under 2 ranks" || { echo "  FAIL $n PNGs under 2 ranks, expected 5"; fail=1; }
# rank 0 has images 0, 2, 4 (batch 1): 3 progress lines end a batch; rank 1 prints none
c=$(grep -c "step 2/2" "$T/two.err")
if [ "$c" -eq 3 ]; then echo "  ok   progress from rank 0 only: 3 batches finished"
else echo "  FAIL progress: $c finished-batch lines, expected 3 (rank 0's images 0, 2, 4)"; fail=1; fi
"${mpienv[@]}" mpirun -n 2 "$exe" sample --tiny 1 --prompt x --steps abc --out "$T/bad" >/dev/null 2>"$T/bad.err"
rc=$?
m=$(grep -c -- "--steps" "$T/bad.err")
if [ $rc -eq 2 ] && [ "$m" -eq 1 ]; then echo "  ok   usage error under 2 ranks: exit 2, reported once"
else echo "  FAIL usage error under 2 ranks: exit $rc, $m messages (expected exit 2, 1 message)"; cat "$T/bad.err"; fail=1; fi
[ $fail -eq 0 ] && echo "mpi_sample: passed" || echo "mpi_sample: FAILED"
exit $fail
