#!/usr/bin/env bash
# The three LoRA layouts (docs/lora.md §7) wherever a LoRA is read, and
# `alignprop-mpi inspect` on what a run writes: a short demo training run,
# then its checkpoint's LoRA converted to peft and kohya must give the same
# evaluation reward as the checkpoint itself through resume_from, the same
# soup, the same images through `sample --lora` and the same LoRA after a
# training step started from it (bit for bit: the values are the same
# floats); the checkpoint's own peft/ export is peft; inspect
# describes the run, the checkpoint, the log and each LoRA (--json parses).
#   lora_layouts.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
FIX=${AP_FIXTURES_DIR:-$(dirname "$0")/../fixtures}
. "$(dirname "$0")/common.sh"
echo "lora_layouts: LoRA layouts through resume_from, soups, sample --lora; inspect"
sets=(--set steps=4 "--set=truncated_backprop_minmax=[0,4]" --set num_epochs=1 --set train.total_samples_per_epoch=2
      --set train.total_batch_size=2 --set visualize_eval=false --set save_freq=1
      --set train.learning_rate=5e-2 --set train.per_gpu_capacity=2 --set max_vis_images=2
      --set logdir="$tmp")
"$BIN" "$CFG" "${sets[@]}" --set run_name=train > "$tmp/train.log" 2>&1 && ok "training run" || { bad "training run exit $?"; tail "$tmp/train.log"; }
ck=$(dirname "$(last_lora "$tmp/train")")
for l in peft kohya diffusers-attn-procs; do
  "$BIN" lora convert "$ck" "$tmp/$l.safetensors" --to "$l" > "$tmp/conv.log" 2>&1 && ok "lora convert --to $l" || { bad "lora convert --to $l"; cat "$tmp/conv.log"; }
done
"$DIFF" "$tmp/diffusers-attn-procs.safetensors" "$ck/pytorch_lora_weights.safetensors" 0 > "$tmp/d.log" 2>&1 &&
  ok "the checkpoint converted to diffusers-attn-procs: the same keys and values as its export (lora_diff, atol 0)" ||
  { bad "diffusers-attn-procs conversion differs from the checkpoint's export"; cat "$tmp/d.log"; }
json() { # PATH PYTHON-EXPR: inspect --json PATH, evaluate EXPR on it as d
  "$BIN" inspect --json "$1" > "$tmp/i.json" 2> "$tmp/i.err" || { echo "inspect exit $?: $(cat "$tmp/i.err")"; return 1; }
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=$2; print(v); sys.exit(0 if v else 1)" "$tmp/i.json"
}
v=$(json "$ck/peft/pytorch_lora_weights.safetensors" "d['lora']['layout']=='peft' and d['tensors']") &&
  ok "checkpoint's peft/ export is peft ($v tensors)" || bad "checkpoint peft/ export: $v"
v=$(json "$tmp/kohya.safetensors" "d['lora']['layout']=='kohya' and d['lora']['alphas']") &&
  ok "inspect kohya file: $v alphas" || bad "inspect kohya: $v"
v=$(json "$ck" "d['state']['step']==1 and d['state']['lora_tensors']==64 and 'peft/pytorch_lora_weights.safetensors' in d['exports'] and d['state']['step']") &&
  ok "inspect checkpoint directory: step $v, 64 LoRA tensors, both exports" || bad "inspect checkpoint: $v"
v=$(json "$tmp/train" "d['log']['train']['rows']==1 and len(d['log']['train']['reward_mean']['values'])==1 and d['log']['train']['reward_mean']['last']") &&
  ok "inspect run directory: 1 train row, reward_mean $v" || bad "inspect run directory: $v"
v=$(json "$tmp/train/log.h5" "d['kind'].startswith('training log') and d['train']['last_step']==1 and d['train']['rows']") &&
  ok "inspect log.h5: $v train row, last step 1" || bad "inspect log.h5: $v"
v=$(json "$tmp/train/tiny-model" "d['kind'].startswith('diffusers') and d['components']['unet']['parameters']") &&
  ok "inspect model directory: unet $v parameters" || bad "inspect model directory: $v"
"$BIN" inspect "$ck" > "$tmp/human.txt" 2>&1 && grep -q "^  step: 1" "$tmp/human.txt" && ok "inspect (text) checkpoint: 'step: 1'" || { bad "inspect text"; cat "$tmp/human.txt"; }
echo "not weights" > "$tmp/x.safetensors"
"$BIN" inspect "$tmp/x.safetensors" > /dev/null 2> "$tmp/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "x.safetensors" "$tmp/err.txt" && ok "inspect on a broken file: exit 1 naming it" || bad "inspect broken file: exit $rc: $(cat "$tmp/err.txt")"
ev() { # name, extra sets...
  local name=$1; shift
  "$BIN" "$CFG" "${sets[@]}" --set run_name="$name" --set only_eval=true "$@" > "$tmp/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] && ok "$name: exit 0" || { bad "$name: exit $rc"; tail -3 "$tmp/$name.log"; }
  grep -o "mean demo reward [-0-9.e+]*" "$tmp/$name.log" | awk '{print $4}' > "$tmp/$name.mean"
}
same() { cmp -s "$tmp/$1.mean" "$tmp/$2.mean" && [ -s "$tmp/$1.mean" ]; }
ev ckpt --set resume_from="$ck"
for l in peft kohya; do
  ev "$l" --set resume_from="$tmp/$l.safetensors"
  same "$l" ckpt && ok "resume_from the $l file == the checkpoint ($(cat "$tmp/ckpt.mean"))" || bad "$l $(cat "$tmp/$l.mean") vs $(cat "$tmp/ckpt.mean")"
done
ev soupref --set soup_inference=true --set resume_from="$ck" --set resume_from_2="$ck/pytorch_lora_weights.safetensors" --set mixing_coef_1=0.3
ev soupmix --set soup_inference=true --set resume_from="$tmp/kohya.safetensors" --set resume_from_2="$ck/peft" --set mixing_coef_1=0.3
same soupmix soupref && ok "soup of a kohya and a peft file == the same soup of the originals" || bad "soup $(cat "$tmp/soupmix.mean") vs $(cat "$tmp/soupref.mean")"
# training started from a LoRA file (step 0, fresh optimizer): kohya == attn-procs
for l in kohya diffusers-attn-procs; do
  "$BIN" "$CFG" "${sets[@]}" --set run_name="from_$l" --set resume_from="$tmp/$l.safetensors" > "$tmp/from_$l.log" 2>&1 &&
    grep -q "starting from the LoRA of resume_from" "$tmp/from_$l.log" && ok "training from resume_from the $l file" ||
    { bad "training from resume_from the $l file"; tail -3 "$tmp/from_$l.log"; }
done
"$DIFF" "$(last_lora "$tmp/from_kohya")" "$(last_lora "$tmp/from_diffusers-attn-procs")" 0 > "$tmp/d.log" 2>&1 &&
  ok "a step from the kohya file == a step from the attn-procs file (lora_diff, atol 0)" || { bad "trained from kohya differs"; cat "$tmp/d.log"; }
v=$(json "$FIX/sd_tiny/lora/pytorch_lora_weights.bin" "d['format'].startswith('torch') and d['lora']['layout']=='diffusers-attn-procs' and d['lora']['rank']") &&
  ok "inspect AlignProp's torch .bin: diffusers-attn-procs, rank $v" || bad "inspect .bin: $v"
for l in ckpt kohya peft; do
  src=$ck; [ $l = ckpt ] || src="$tmp/$l.safetensors"
  "$BIN" sample --model "$tmp/train/tiny-model" --lora "$src" --prompt "a cat" --steps 2 --height 64 --width 64 --out "$tmp/s_$l" > "$tmp/s.log" 2>&1 || { bad "sample --lora $l"; tail -3 "$tmp/s.log"; }
done
for l in kohya peft; do
  a=$(ls "$tmp/s_ckpt"/*.png | head -1); b="$tmp/s_$l/$(basename "$a")"
  cmp -s "$a" "$b" && ok "sample --lora $l file: the same image as the checkpoint's" || bad "sample --lora $l: image differs ($a vs $b)"
done
finish
