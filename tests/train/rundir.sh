#!/usr/bin/env bash
# The run directory holds one run (issue 16): a fresh run never mixes with
# or truncates an old one (refused, naming the ways on; --overwrite moves it
# aside); a resume refuses another run's checkpoint naming the keys that
# differ (the epoch arithmetic among them); --resume auto without a
# checkpoint starts from resume_from and says so; a finished run resumed
# rewrites nothing; a damaged checkpoint (LoRA zeroed, HDF5 intact) is
# skipped for the one before it; when none verifies the run is refused with
# its log untouched unless --restart; dead writers' temporaries are removed;
# --resume LORA.safetensors is a clear error.
#   rundir.sh BIN LORA_DIFF CONFIG CKPT_TAMPER
BIN=$1 DIFF=$2 CFG=$3 TAMPER=$(realpath "$4")
. "$(dirname "$0")/common.sh"
echo "rundir: one run per run directory"
# 2 steps of 2 DDIM steps, one checkpoint per step: ~3 s a run
sets=(--set steps=2 "--set=truncated_backprop_minmax=[0,2]" --set num_epochs=2
      --set train.total_samples_per_epoch=2 --set train.total_batch_size=2
      --set visualize_eval=false --set save_freq=1 --set num_checkpoint_limit=10
      --set run_name=r --per-gpu-capacity 2)
run() { local name=$1; shift; "$BIN" "$CFG" "${sets[@]}" "$@" > "$tmp/$name.log" 2>&1; }
sums() { (cd "$1" && find . -type f ! -path './tiny-model/*' -exec md5sum {} + | sort -k2; \
          find . -newer "$tmp/stamp" ! -path './tiny-model*' ! -name . -print) }

run ref --set logdir="$tmp/ref" && ok "reference run" || { bad "reference run exit $?"; tail "$tmp/ref.log"; }
ref=$tmp/ref/r/checkpoints/checkpoint_2/pytorch_lora_weights.safetensors
R=$tmp/ref/r

# 1. a fresh run into a run directory that holds a run
touch "$tmp/stamp"; before=$(sums "$R")
run fresh --set logdir="$tmp/ref"; rc=$?
[ $rc -eq 2 ] && ok "fresh run into a used run directory: exit 2" || bad "fresh run into a used run directory: exit $rc"
grep -q -- "--resume auto" "$tmp/fresh.log" && grep -q "run_name" "$tmp/fresh.log" &&
  grep -q -- "--overwrite" "$tmp/fresh.log" && ok "the refusal names --resume auto, run_name, --overwrite" ||
  { bad "the refusal does not name the ways on"; cat "$tmp/fresh.log"; }
[ "$(sums "$R")" = "$before" ] && ok "the old run is untouched" || bad "the refused run changed the old run"
run evalfresh --set logdir="$tmp/ref" --set only_eval=true; rc=$?
[ $rc -eq 2 ] && grep -q -- "--overwrite" "$tmp/evalfresh.log" && [ "$(sums "$R")" = "$before" ] &&
  ok "an evaluation (only_eval) into the used run directory: refused the same way" ||
  { bad "only_eval into a used run directory: exit $rc"; tail -3 "$tmp/evalfresh.log"; }

# 1b. a resume with other settings names the keys; epoch arithmetic is one
run lr --set logdir="$tmp/ref" --set train.learning_rate=0.02 --resume auto; rc=$?
[ $rc -eq 2 ] && grep -q "train.learning_rate (0.01 -> 0.02)" "$tmp/lr.log" &&
  ok "--resume auto with another learning rate: refused naming train.learning_rate" ||
  { bad "another learning rate: exit $rc"; tail -3 "$tmp/lr.log"; }
run spe --set logdir="$tmp/ref" --set train.total_samples_per_epoch=4 --resume auto; rc=$?
[ $rc -eq 2 ] && grep -q "train.total_samples_per_epoch (2 -> 4)" "$tmp/spe.log" &&
  ok "--resume auto with other epoch arithmetic: refused naming train.total_samples_per_epoch" ||
  { bad "other epoch arithmetic: exit $rc"; tail -3 "$tmp/spe.log"; }
[ "$(sums "$R")" = "$before" ] && ok "the refused resumes left the run untouched" || bad "a refused resume changed the run"

# 2. a finished run resumed: a no-op that says so
run noop --set logdir="$tmp/ref" --resume auto; rc=$?
[ $rc -eq 0 ] && grep -q "already finished at step 2" "$tmp/noop.log" &&
  ok "a finished run resumed: exit 0, \"already finished\"" || { bad "finished run resumed: exit $rc"; tail -3 "$tmp/noop.log"; }
[ "$(sums "$R")" = "$before" ] && ok "... and nothing rewritten" || { bad "the finished run's files changed"; sums "$R" | tail -3; }

# 3. --overwrite moves the old run aside, never deletes it
run over --set logdir="$tmp/ref" --overwrite; rc=$?
old=$(ls -d "$tmp"/ref/r.old-* 2>/dev/null | head -1)
[ $rc -eq 0 ] && [ -n "$old" ] && "$DIFF" "$old/checkpoints/checkpoint_2/pytorch_lora_weights.safetensors" "$ref" 0 >/dev/null &&
  [ -s "$old/log.h5" ] && grep -q "moved to $old" "$tmp/over.log" &&
  ok "--overwrite: old run kept whole at $(basename "$old"), new run done" || { bad "--overwrite: exit $rc, old '$old'"; tail -3 "$tmp/over.log"; }

# 4. --resume auto with no checkpoint starts from resume_from (a LoRA file), printed
run rf --set logdir="$tmp/rf" --set resume_from="$ref" --resume auto; rc=$?
[ $rc -eq 0 ] && grep -q "no checkpoint in the run directory: starting from the LoRA of resume_from" "$tmp/rf.log" &&
  ok "--resume auto, no checkpoint: from resume_from (printed)" || { bad "resume_from fallback: exit $rc"; tail -3 "$tmp/rf.log"; }
"$DIFF" "$tmp/rf/r/checkpoints/checkpoint_2/pytorch_lora_weights.safetensors" "$ref" 0 >/dev/null &&
  bad "resume_from was ignored (the run equals one from the base model)" || ok "... and the run started from that LoRA"

# 5. a damaged newest checkpoint is skipped for the one before it; stale temporaries go
K=$tmp/ref/r/checkpoints
"$TAMPER" "$K/checkpoint_2/state.h5" > /dev/null && rm "$tmp/ref/r/done"
mkdir -p "$K/checkpoint_3.tmp.999999.0" && touch "$K/checkpoint_3.tmp.999999.0/state.h5"
run skip --set logdir="$tmp/ref" --resume auto; rc=$?
[ $rc -eq 0 ] && grep -q "skipping .*checkpoint_2.*content hash" "$tmp/skip.log" &&
  grep -q "resumed from .*checkpoint_1 " "$tmp/skip.log" && ok "damaged checkpoint_2: skipped (content hash), resumed from checkpoint_1" ||
  { bad "damaged checkpoint: exit $rc"; tail -5 "$tmp/skip.log"; }
[ -d "$K/checkpoint_2.corrupt" ] && ok "the damaged checkpoint kept as checkpoint_2.corrupt" || bad "no checkpoint_2.corrupt"
"$DIFF" "$K/checkpoint_2/pytorch_lora_weights.safetensors" "$ref" 0 >/dev/null &&
  ok "... and the final LoRA equals the uninterrupted run's" || bad "after skipping, the final LoRA differs"
[ ! -e "$K/checkpoint_3.tmp.999999.0" ] && grep -q "removed .*checkpoint_3.tmp" "$tmp/skip.log" &&
  ok "a dead writer's checkpoint_3.tmp.* removed at start" || bad "the stale temporary is still there"

# 6. no checkpoint verifies: refused, log untouched; --restart starts over
for c in "$K"/checkpoint_[0-9]; do "$TAMPER" "$c/state.h5" > /dev/null; done
rm -f "$tmp/ref/r/done"
cp "$tmp/ref/r/log.h5" "$tmp/log.before"
run none --set logdir="$tmp/ref" --resume auto; rc=$?
[ $rc -ne 0 ] && grep -q "none of its 2 checkpoints verifies" "$tmp/none.log" && grep -q -- "--restart" "$tmp/none.log" &&
  ok "no checkpoint verifies: exit $rc, names --restart" || { bad "no good checkpoint: exit $rc"; tail -3 "$tmp/none.log"; }
cmp -s "$tmp/ref/r/log.h5" "$tmp/log.before" && ok "... and log.h5 untouched" || bad "log.h5 changed by a refused run"
run restart --set logdir="$tmp/ref" --resume auto --restart; rc=$?
[ $rc -eq 0 ] && "$DIFF" "$K/checkpoint_2/pytorch_lora_weights.safetensors" "$ref" 0 >/dev/null &&
  ok "--restart: started over, same LoRA as the reference" || { bad "--restart: exit $rc"; tail -3 "$tmp/restart.log"; }

# 7. --resume with a LoRA file: a clear error
run st --set logdir="$tmp/st" --resume "$ref"; rc=$?
[ $rc -eq 2 ] && grep -q "expected auto, a checkpoint directory" "$tmp/st.log" && grep -q "resume_from" "$tmp/st.log" &&
  ok "--resume LORA.safetensors: exit 2, says to use resume_from" || { bad "--resume FILE: exit $rc"; tail -3 "$tmp/st.log"; }
finish
