#!/usr/bin/env bash
# evaluate and evaluate_soup modes on the demo model: a short training run,
# then only_eval with its checkpoint, and LoRA soups whose rewards must equal
# the plain evaluations they reduce to (coef 1: the first LoRA alone; coef 0
# with stablediffusion: the base model; soup of a LoRA with itself).
#   evaluate.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
echo "evaluate: only_eval and soup_inference"
sets=(--set steps=4 "--set=truncated_backprop_minmax=[0,4]" --set num_epochs=1 --set train.total_samples_per_epoch=2
      --set train.total_batch_size=2 --set visualize_eval=false --set save_freq=1
      --set train.learning_rate=5e-2 --set train.per_gpu_capacity=2 --set max_vis_images=2
      --set logdir="$tmp")
"$BIN" "$CFG" "${sets[@]}" --set run_name=train > "$tmp/train.log" 2>&1 && ok "training run" || { bad "training run exit $?"; tail "$tmp/train.log"; }
ck=$(dirname "$(last_lora "$tmp/train")")
ev() { # name, extra sets...
  local name=$1; shift
  "$BIN" "$CFG" "${sets[@]}" --set run_name="$name" --set only_eval=true "$@" > "$tmp/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] && ok "$name: exit 0" || { bad "$name: exit $rc"; tail "$tmp/$name.log"; }
  grep -o "mean demo reward [-0-9.e+]*" "$tmp/$name.log" | awk '{print $4}' > "$tmp/$name.mean"
}
ev base
ev lora --set resume_from="$ck"
ev soup1 --set soup_inference=true --set resume_from="$ck" --set resume_from_2=stablediffusion --set mixing_coef_1=1.0
ev soup0 --set soup_inference=true --set resume_from="$ck" --set resume_from_2=stablediffusion --set mixing_coef_1=0.0
ev soupself --set soup_inference=true --set resume_from="$ck" --set resume_from_2="$ck" --set mixing_coef_1=0.5
n=$(ls "$tmp/lora/eval_vis/"*.png 2>/dev/null | grep -vc grid.png)
[ "$n" -eq 4 ] && ok "4 evaluation PNGs (per_gpu_capacity 2 x max_vis_images 2) + grid" || bad "expected 4 PNGs, found $n"
[ -s "$tmp/lora/eval_vis/grid.png" ] && ok "grid.png written" || bad "no grid.png"
same() { cmp -s "$tmp/$1.mean" "$tmp/$2.mean" && [ -s "$tmp/$1.mean" ]; }
same soup1 lora && ok "soup coef 1 == the LoRA alone ($(cat "$tmp/lora.mean"))" || bad "soup coef 1 $(cat "$tmp/soup1.mean") vs LoRA $(cat "$tmp/lora.mean")"
same soup0 base && ok "soup coef 0 with stablediffusion == the base model ($(cat "$tmp/base.mean"))" || bad "soup coef 0 $(cat "$tmp/soup0.mean") vs base $(cat "$tmp/base.mean")"
same soupself lora && ok "soup of a LoRA with itself == the LoRA" || bad "soup of a LoRA with itself $(cat "$tmp/soupself.mean") vs $(cat "$tmp/lora.mean")"
cmp -s "$tmp/lora.mean" "$tmp/base.mean" && bad "the trained LoRA changed nothing" || ok "the trained LoRA changes the reward"
finish
