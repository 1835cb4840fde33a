#!/usr/bin/env bash
# The run's logs besides the weights (docs/logging.md):
#  * TensorBoard files (RUN/tb/) read back by TensorBoard's own event reader
#    (tests/train/tb_check.py, in the pinned tools/tbenv venv), values
#    compared exactly with log.h5 and the PNGs on disk; visualize_train's
#    images; a run killed after a checkpoint and resumed with --resume auto
#    has the same (tag, step) values as an uninterrupted run, none twice, in
#    two event files; log_tensorboard=false writes no tb/ (and, on resume,
#    still cuts the older files to the resume step);
#  * log.h5 and eval.h5 describe themselves (tests/train/h5meta_check.py:
#    program, commit, config, reward, ranks, capacities, machine; every
#    dataset's description and units), also as h5dump -H shows them.
# Skips (77) when the reader environment cannot be installed (no network,
# no python3-venv).
#   logging.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
echo "logging: TensorBoard files read back, resume, visualize_train, self-describing HDF5"
if ! py=$("$root/tools/tbenv" 2> "$tmp/tbenv.log"); then
  echo "SKIP: tools/tbenv could not install the pinned reader (tools/requirements-tb.txt):"
  tail -3 "$tmp/tbenv.log"
  exit 77
fi
check="$root/tests/train/tb_check.py"
sets=(--set steps=4 --set num_epochs=2 --set train.total_samples_per_epoch=4
      --set train.total_batch_size=2 --set save_freq=1 --set visualize_train=true
      --set train.learning_rate=1e-2 --set truncated_backprop=true
      --set truncated_backprop_rand=true "--set=truncated_backprop_minmax=[0,4]"
      --set run_name=r --set num_checkpoint_limit=10)
"$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/full" "${sets[@]}" > "$tmp/full.log" 2>&1 \
  && ok "uninterrupted run" || { bad "uninterrupted run exited $?"; tail "$tmp/full.log"; }
"$py" "$check" "$tmp/full/r" --expect-files 1 > "$tmp/c1.log" 2>&1 \
  && ok "uninterrupted run: tb/ == log.h5 and the PNGs ($(grep -c '  ok' "$tmp/c1.log") checks)" \
  || { bad "uninterrupted run: tb_check"; grep -v "  ok" "$tmp/c1.log"; }

"$py" "$root/tests/train/h5meta_check.py" "$tmp/full/r/log.h5" 1 2 demo > "$tmp/m1.log" 2>&1 \
  && ok "log.h5 describes itself ($(grep -c '  ok' "$tmp/m1.log") checks)" \
  || { bad "log.h5 attributes"; grep -v "  ok" "$tmp/m1.log"; }
if command -v h5dump > /dev/null; then
  nd=$(h5dump -H "$tmp/full/r/log.h5" | grep -c 'DATASET "')
  na=$(h5dump -H "$tmp/full/r/log.h5" | grep -c 'ATTRIBUTE "description"')
  [ "$nd" -gt 0 ] && [ "$nd" -eq "$na" ] && h5dump -H "$tmp/full/r/log.h5" | grep -q 'ATTRIBUTE "git_commit"' \
    && ok "h5dump -H shows git_commit and $na descriptions for $nd datasets" \
    || bad "h5dump -H: $na descriptions for $nd datasets, or no git_commit"
fi

# killed in step 4 (steps 1..3 logged, checkpoint at 2), resumed from 2
AP_DEBUG_KILL_AT=sample:4 "$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/killed" "${sets[@]}" \
  --resume auto > "$tmp/k1.log" 2>&1
rc=$?
[ $rc -eq 137 ] && ok "killed at sample:4 (exit 137)" || { bad "kill at sample:4: exit $rc"; tail "$tmp/k1.log"; }
"$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/killed" "${sets[@]}" --resume auto \
  > "$tmp/k2.log" 2>&1 && ok "resumed run finished" || { bad "resumed run exit $?"; tail "$tmp/k2.log"; }
grep -q "resumed from" "$tmp/k2.log" && grep -q "events past the resume point dropped" "$tmp/k2.log" \
  && ok "the resumed run cut the first event file" || bad "no resume, or the first event file was not cut"
"$py" "$check" "$tmp/killed/r" --same-as "$tmp/full/r" --expect-files 2 > "$tmp/c2.log" 2>&1 \
  && ok "killed + resumed: tb/ == log.h5, == the uninterrupted run's, no (tag, step) twice ($(grep -c '  ok' "$tmp/c2.log") checks)" \
  || { bad "killed + resumed: tb_check"; grep -v "  ok" "$tmp/c2.log"; }

"$py" "$root/tests/train/h5meta_check.py" "$tmp/killed/r/log.h5" 1 2 demo > "$tmp/m2.log" 2>&1 \
  && ok "resumed log.h5 describes itself" || { bad "resumed log.h5 attributes"; grep -v "  ok" "$tmp/m2.log"; }

# only_eval on 2 ranks: eval.h5 describes itself (ranks 2, capacities 1, 1)
mpirun -np 2 "$BIN" "$CFG" --per-gpu-capacity 1 --set logdir="$tmp/eval" "${sets[@]}" --set run_name=e \
  --set only_eval=true --set resume_from="$(dirname "$(last_lora "$tmp/full/r")")" > "$tmp/e.log" 2>&1 \
  && ok "only_eval run (2 ranks)" || { bad "only_eval run exit $?"; tail "$tmp/e.log"; }
"$py" "$root/tests/train/h5meta_check.py" "$tmp/eval/e/eval.h5" 2 1,1 demo > "$tmp/m3.log" 2>&1 \
  && ok "eval.h5 describes itself" || { bad "eval.h5 attributes"; grep -v "  ok" "$tmp/m3.log"; }

# switched off: no tb/, no train_vis/
"$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/off" "${sets[@]}" --set num_epochs=1 \
  --set log_tensorboard=false --set visualize_train=false > "$tmp/off.log" 2>&1 \
  && ok "log_tensorboard=false run" || { bad "log_tensorboard=false run exit $?"; tail "$tmp/off.log"; }
[ ! -e "$tmp/off/r/tb" ] && [ ! -e "$tmp/off/r/train_vis" ] && [ -s "$tmp/off/r/log.h5" ] \
  && ok "log_tensorboard=false, visualize_train=false: no tb/, no train_vis/, log.h5 written" \
  || bad "switched off, yet tb/ or train_vis/ exists (or no log.h5)"
# killed in step 4 with TensorBoard on, resumed with it off: the old file is
# still cut to the resume step (no step 3 left from the killed run)
AP_DEBUG_KILL_AT=sample:4 "$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/offr" "${sets[@]}" \
  --resume auto > "$tmp/o1.log" 2>&1
"$BIN" "$CFG" --per-gpu-capacity 2 --set logdir="$tmp/offr" "${sets[@]}" --resume auto \
  --set log_tensorboard=false > "$tmp/o2.log" 2>&1 && ok "resumed with log_tensorboard=false" \
  || { bad "resume with log_tensorboard=false: exit $?"; tail "$tmp/o2.log"; }
steps=$("$py" -c '
import glob, sys
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
print(sorted({e.step for f in sorted(glob.glob(sys.argv[1] + "/events.out.tfevents.*"))
              for e in EventFileLoader(f).Load() for v in e.summary.value if v.tag == "loss"}))
' "$tmp/offr/r/tb" 2>&1)
[ "$steps" = "[1, 2]" ] && ok "switched off on resume: the event file cut to steps $steps" \
  || bad "switched off on resume: loss at steps $steps, expected [1, 2]"
# a reward mixture (the fixtures' tiny aesthetic model beside demo): each
# part as rewards_<part> / eval_rewards_<part>, descriptions of its columns
fx=${AP_FIXTURES_DIR:-}
if [ -f "$fx/clip/aesthetic_mlp.pth" ]; then
  cfgdir=$(cd "$(dirname "$CFG")" && pwd)
  cat > "$tmp/mix.yaml" <<YAML
pretrained:
  model: tiny:0
reward_fn: {demo: 2.0, aesthetic: 0.5}
reward:
  aesthetic_clip: $fx/clip/clip_model
  aesthetic_mlp: $fx/clip/aesthetic_mlp.pth
resolution: 32
steps: 2
prompt_fn: $cfgdir/demo_prompts.txt
logdir: $tmp/mix
run_name: m
mixed_precision: "no"
num_epochs: 1
max_vis_images: 1
visualize_train: true
train:
  total_samples_per_epoch: 2
  total_batch_size: 2
  per_gpu_capacity: 2
YAML
  "$BIN" "$tmp/mix.yaml" > "$tmp/mix.log" 2>&1 && ok "mixture run" || { bad "mixture run exit $?"; tail "$tmp/mix.log"; }
  "$py" "$check" "$tmp/mix/m" --expect-files 1 > "$tmp/c3.log" 2>&1 \
    && ok "mixture: tb/ == log.h5 with each part ($(grep -c 'rewards_\(demo\|aesthetic\) ==' "$tmp/c3.log") part checks)" \
    || { bad "mixture: tb_check"; grep -v "  ok" "$tmp/c3.log"; }
  "$py" "$root/tests/train/h5meta_check.py" "$tmp/mix/m/log.h5" 1 2 - > "$tmp/m4.log" 2>&1 \
    && grep -q "reward_meaning = 'a mixture" "$tmp/m4.log" && ok "mixture: log.h5 describes itself and its parts" \
    || { bad "mixture: log.h5 attributes"; grep -v "  ok" "$tmp/m4.log"; }
else
  echo "  (mixture part not run: AP_FIXTURES_DIR has no clip/aesthetic_mlp.pth)"
fi
finish
