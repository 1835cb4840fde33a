#!/usr/bin/env bash
# Every bad config is refused before anything is loaded: exit 2, a message
# naming the file (and line), the key, the value found and what would work,
# and no run directory created (the tiny model would be written there).
#   bad_config.sh BIN LORA_DIFF CONFIG
BIN=$1 CFG=$3
. "$(dirname "$0")/common.sh"
echo "bad_config: each case must exit 2 with its message, before any work"
cfgdir=$(cd "$(dirname "$CFG")" && pwd)
base() { # a valid demo config written into $tmp/c.yaml, plus extra lines (which replace
          # the base line of the same key)
  local extra
  extra=$(printf '%s\n' "$@")
  { for l in "pretrained:|  model: tiny:0" "reward_fn: demo" "resolution: 64" "steps: 4" \
             "prompt_fn: $cfgdir/demo_prompts.txt" "logdir: $tmp/logs"; do
      k=${l%%:*}
      printf '%s\n' "$extra" | grep -q "^$k:" || printf '%s\n' "$l" | tr '|' '\n'
    done
    printf '%s\n' "$@"; } > "$tmp/c.yaml"
}
# case NAME, EXPECTED-SUBSTRINGS (|-separated), then the command's extra args after "--"
case_() {
  local name=$1 want=$2; shift 2
  [ "$1" = "--" ] && shift
  rm -rf "$tmp/logs"
  "$BIN" "$@" > "$tmp/out" 2>&1
  local rc=$? miss=""
  local IFS='|'
  for w in $want; do grep -qF -- "$w" "$tmp/out" || miss="$miss [$w]"; done
  unset IFS
  if [ $rc -eq 2 ] && [ -z "$miss" ] && [ ! -e "$tmp/logs" ]; then
    ok "$name: $(head -c 150 "$tmp/out" | head -1)"
  else
    bad "$name: exit $rc (expected 2), missing:$miss, run dir created: $([ -e "$tmp/logs" ] && echo yes || echo no)"
    sed 's/^/       /' "$tmp/out" | head -5
  fi
}
c="$tmp/c.yaml"
base "learning_rate: 1e-3";      case_ "top-level train key" "c.yaml:8|learning_rate|did you mean train.learning_rate" -- "$c"
base "num_epoch: 3";             case_ "typo" "c.yaml:8|num_epoch|did you mean num_epochs" -- "$c"
base "train:" "  learning_rate: abc"; case_ "not a number" "c.yaml:9|train.learning_rate|(0, 1000]|\"abc\"" -- "$c"
base "train:" "  learning_rate: -1";  case_ "negative lr" "train.learning_rate|(0, 1000]|\"-1\"" -- "$c"
base "train:" "  learning_rate: nan"; case_ "NaN lr" "train.learning_rate|\"nan\"" -- "$c"
base "sd_guidance_scale: inf";   case_ "infinite guidance" "sd_guidance_scale|\"inf\"" -- "$c"
base "sd_guidance_scale: 1e39";  case_ "huge guidance" "sd_guidance_scale|[0, 10000]|\"1e39\"" -- "$c"
base "steps: 0";                 case_ "zero steps" "c.yaml:|steps|1..1000|\"0\"" -- "$c"
base "steps: 1.5";               case_ "fractional steps" "steps|integer|\"1.5\"" -- "$c"
base "num_epochs: 99999999999999999999"; case_ "integer overflow" "num_epochs|integer in 1..1000000|99999999999999999999" -- "$c"
base "train:" "  adam_beta1: 1.0"; case_ "beta1 = 1" "train.adam_beta1|[0, 1)|\"1.0\"" -- "$c"
base "truncated_backprop: yes";  case_ "yes is not a bool" "truncated_backprop|true or false|\"yes\"" -- "$c"
base "truncated_backprop: true" "truncated_backprop_rand: true" "truncated_backprop_minmax: [3, 1]"
                                 case_ "minmax reversed" "truncated_backprop_minmax|lo <= hi|[3, 1]" -- "$c"
base "truncated_backprop: true" "truncated_backprop_rand: true" "truncated_backprop_minmax: [0, 9]"
                                 case_ "minmax beyond steps" "truncated_backprop_minmax|steps (4)" -- "$c"
base "truncated_backprop_minmax: 5"; case_ "minmax not a list" "truncated_backprop_minmax|a list of two integers|\"5\"" -- "$c"
base "truncated_backprop: true" "trunc_backprop_timestep: 9"; case_ "fixed K beyond steps" "trunc_backprop_timestep|steps (4)|\"9\"" -- "$c"
base "train:" "  total_samples_per_epoch: 10" "  total_batch_size: 4"; case_ "batch does not divide" "train.total_samples_per_epoch|multiple of train.total_batch_size (4)|found 10" -- "$c"
base "train:" "  per_gpu_capacity: 0"; case_ "zero capacity" "train.per_gpu_capacity|1..256|\"0\"" -- "$c"
base "train:" "  per_gpu_capacity_by_host: {nodeA: 0}"; case_ "bad host capacity" "per_gpu_capacity_by_host|nodeA|1..256" -- "$c"
base "reward_fn: clip";          case_ "unknown reward" "reward_fn|aesthetic/hps/demo|\"clip\"" -- "$c"
base "reward_fn: {demo: 1.0, clip: 2.0}"
                                 case_ "mixture: unknown part" "c.yaml:7|reward_fn|clip|aesthetic, hps, demo or pickscore" -- "$c"
base "reward_fn: {demo: 0}";     case_ "mixture: zero weight" "c.yaml:7|reward_fn|demo|finite non-zero weight|\"0\"" -- "$c"
base "reward_fn: {demo: 1, demo: 2}"
                                 case_ "mixture: a part twice" "reward_fn|demo|once" -- "$c"
base "reward_fn: {}";            case_ "mixture: empty" "reward_fn|1 to 4 rewards|0 entries" -- "$c"
base "reward_fn: {demo: 1.0, aesthetic: 1.0}"
                                 case_ "mixture: a part's weights missing" "reward.aesthetic_clip" -- "$c"
base "reward_fn: pickscore";     case_ "pickscore without its paths" "reward.pickscore_model" -- "$c"
base "reward:" "  hps_checkpoint: /w/HPS_v2.1_compressed.pt"
                                 case_ "HPS version vs file name" "reward.hps_version|\"v2.0\"|v2.1|HPS_v2.1_compressed.pt" -- "$c"
base "reward:" "  hps_version: v3"
                                 case_ "unknown HPS version" "c.yaml:9|reward.hps_version|v2.0/v2.1|\"v3\"" -- "$c"
base "mixed_precision: fp8";     case_ "unknown precision" "mixed_precision|no/fp16/bf16|\"fp8\"" -- "$c"
base "steps: 3" "steps: 4";      case_ "duplicate key" "c.yaml:|steps|duplicate key|first set at" -- "$c"
base "steps: [4, 5";             case_ "YAML syntax error" "c.yaml:|YAML syntax error" -- "$c"
: > "$c";                        case_ "empty file" "c.yaml|empty config file" -- "$c"
printf -- "- a\n- b\n" > "$c";   case_ "top-level list" "c.yaml:1|expected a mapping of keys" -- "$c"
base "train: 5";                 case_ "section not a mapping" "train|expected a mapping of train.* keys" -- "$c"
base "mixing_coef_1: 2";         case_ "mixing coefficient" "mixing_coef_1|[0, 1]|\"2\"" -- "$c"
base "use_lora: false";          case_ "use_lora false" "use_lora|LoRA adapters only" -- "$c"
base "seed: -1";                 case_ "negative seed" "seed|0..18446744073709551615|\"-1\"" -- "$c"
base "resolution: 65";           case_ "resolution not /8" "resolution|multiple of 8|\"65\"" -- "$c"
base "soup_inference: true";     case_ "soup without checkpoints" "resume_from|soup_inference" -- "$c"
base "pretrained:" "  model: tiny:abc"; case_ "bad tiny seed" "pretrained.model|tiny:SEED|\"tiny:abc\"" -- "$c"
base "run_name: a/b";            case_ "run_name with /" "run_name|without '/'|\"a/b\"" -- "$c"
base "steps: {a: 1}";            case_ "mapping for a number" "steps|expected a single value, found a mapping" -- "$c"
base;                            case_ "--set unknown key" "--set|train.learnin_rate|did you mean train.learning_rate" -- "$c" --set train.learnin_rate=1
base;                            case_ "--set bad value" "--set|steps|\"many\"" -- "$c" --set steps=many
base;                            case_ "--set without =" "--set|KEY=VALUE" -- "$c" --set steps
base;                            case_ "missing config file" "nope.yaml|cannot open" -- "$tmp/nope.yaml"
# backend: cuda where it cannot run: a build without CUDA names the build; a
# CUDA build on a machine without a device (this test's machines) gives the
# driver's reason. --dry-run refuses what the run refuses (a GPU job script's
# dry run must fail where it would).
if "$BIN" --version | grep -q "cuda: not in this build"; then
  why="is not available in this build|built without CUDA|expected \"cpu\""; what="not built"
elif "$BIN" --version | grep -q "cuda: built, no device here"; then
  why="is not available: no CUDA device ("; what="built, no device"
else
  why=""; what=""; echo "  skip backend cuda cases: this machine has a CUDA device ($("$BIN" --version | tail -1))"
fi
if [ -n "$what" ]; then
base "backend: cuda";            case_ "backend cuda, $what" "c.yaml|backend: \"cuda\" $why" -- "$c"
base "backend: cuda";            case_ "backend cuda, $what, --dry-run" "c.yaml|backend: \"cuda\" $why" -- "$c" --dry-run
fi
base "prompt_fn: missing_prompts"; case_ "missing prompt file" "prompt_fn|missing_prompts.txt|no such file" -- "$c"
base;                            case_ "two config files" "expected one CONFIG.yaml" -- "$c" "$c"
base;                            case_ "--per-gpu-capacity 0" "--per-gpu-capacity|1..256|\"0\"" -- "$c" --per-gpu-capacity 0
base; AP_PER_GPU_CAPACITY=x case_ "AP_PER_GPU_CAPACITY=x" "AP_PER_GPU_CAPACITY|1..256|\"x\"" -- "$c"
base "pretrained:" "  model: $tmp/no-such-model"; case_ "missing model directory" "pretrained.model|no-such-model|no such directory" -- "$c"
for v in 0 -1 abc 100000; do
  base; AP_NUM_THREADS=$v case_ "AP_NUM_THREADS=$v" "AP_NUM_THREADS|1..4095|\"$v\"" -- "$c"
done
mkdir -p "$tmp/badmodel" && printf '{"_class_name": "StableDiffusionPipeline",' > "$tmp/badmodel/model_index.json"
base "pretrained:" "  model: $tmp/badmodel"; case_ "corrupt model_index.json" "pretrained.model|badmodel/model_index.json|expected a diffusers model_index.json" -- "$c"
printf '[1, 2]' > "$tmp/badmodel/model_index.json"
base "pretrained:" "  model: $tmp/badmodel"; case_ "model_index.json not an object" "pretrained.model|model_index.json|expected a JSON object" -- "$c"
finish
