#!/usr/bin/env bash
# The presets carry AlignProp's values (config/align_prop.py at 7f4503f:
# general() then the preset's function), key by key, as --dry-run resolves
# them; configs/README.md lists the same table. The one deliberate
# difference: hps eval_prompt_fn names the file the original ships
# (assets/hps_v2_all_eval.txt), not its 'eval_hps_v2_all'.
#   presets.sh BIN LORA_DIFF CONFIG
BIN=$1 DIFF=$2 CFG=$3
. "$(dirname "$0")/common.sh"
echo "presets: the original's values"
configs=$(dirname "$CFG")
general="seed: 42|vis_freq: 1|mixed_precision: \"fp16\"|same_evaluation: true|aesthetic_target: 10|grad_scale: 1|sd_guidance_scale: 7.5|steps: 50|  adam_beta1: 0.9|  adam_beta2: 0.999|  adam_epsilon: 1e-08"
train="  max_grad_norm: 5|  loss_coeff: 0.01|  learning_rate: 0.001|  adam_weight_decay: 0.1|  total_samples_per_epoch: 256|  total_batch_size: 128|  per_gpu_capacity: 4|truncated_backprop: true|truncated_backprop_minmax: [0, 50]"
aes="num_epochs: 7|save_freq: 1|num_checkpoint_limit: 14|max_vis_images: 4|reward_fn: \"aesthetic\"|prompt_fn: \"simple_animals\"|eval_prompt_fn: \"eval_simple_animals\""
hps="num_epochs: 200|save_freq: 4|num_checkpoint_limit: 10|max_vis_images: 2|reward_fn: \"hps\"|prompt_fn: \"hps_v2_all\"|eval_prompt_fn: \"hps_v2_all_eval\""
check() { # preset, |-separated lines the resolved config must hold
  local name=$1 want=$2 miss="" IFS='|'
  "$BIN" "$configs/$name.yaml" --dry-run > "$tmp/$name.out" 2>&1 || { bad "$name: --dry-run exit $?"; return; }
  for w in $want; do grep -qxF -- "$w" "$tmp/$name.out" || miss="$miss [$w]"; done
  unset IFS
  [ -z "$miss" ] && ok "$name: as the original" || bad "$name: differs from the original:$miss"
}
check aesthetic "$general|$train|$aes|truncated_backprop_rand: true|trunc_backprop_timestep: 40"
check aesthetic_k1 "$general|$train|$aes|truncated_backprop_rand: false|trunc_backprop_timestep: 49"
check hps "$general|$train|$hps|truncated_backprop_rand: true|trunc_backprop_timestep: 40"
check hps_k1 "$general|$train|$hps|truncated_backprop_rand: false|trunc_backprop_timestep: 49"
# hps with the HPSv2.1 weights: the hps preset's values, version recorded
check hps_v21 "$general|$train|$hps|truncated_backprop_rand: true|trunc_backprop_timestep: 40|  hps_version: \"v2.1\""
# PickScore on the hps preset's values
check pickscore "$general|$train|${hps/reward_fn: \"hps\"/reward_fn: \"pickscore\"}|truncated_backprop_rand: true|trunc_backprop_timestep: 40"
# a mixture on the hps preset's values (no original to match: the mapping read back)
check aesthetic_hps "$general|$train|${hps/reward_fn: \"hps\"/reward_fn: {\"aesthetic\": 1, \"hps\": 2\}}|truncated_backprop_rand: true|trunc_backprop_timestep: 40"
check sd21 "$general|${train/  per_gpu_capacity: 4/  per_gpu_capacity: 2}|$aes|truncated_backprop_rand: true|trunc_backprop_timestep: 40|resolution: 768"
check evaluate "$general|only_eval: true|reward_fn: \"aesthetic\"|prompt_fn: \"eval_simple_animals\"|max_vis_images: 10|  per_gpu_capacity: 4"
check evaluate_soup "$general|only_eval: true|soup_inference: true|reward_fn: \"aesthetic\"|prompt_fn: \"simple_animals\"|max_vis_images: 10|mixing_coef_1: 0|  per_gpu_capacity: 4"
finish
