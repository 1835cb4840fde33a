#!/usr/bin/env bash
# bad_input.sh: `alignprop-mpi sample` on bad input. Every case must end with
# the expected exit status (never a signal, a hang, or 0 with wrong output)
# and a message on stderr naming the culprit (option, file or key).
#   usage: bad_input.sh PATH/alignprop-mpi FIXTURES_DIR
# Bad copies of tests/fixtures/sd_tiny are written into a temp dir. Prints
# each case and "N passed, N failed"; exits 1 when any case failed.
set -u
exe=$1
fix=$2/sd_tiny
T=$(mktemp -d /tmp/ap_bad_input.XXXXXX)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
pass=0 fail=0

# case NAME RC 'STDERR SUBSTRING' [ARGS...]: run `exe sample ARGS` (60 s at most).
case_() {
    local name=$1 want=$2 pat=$3
    shift 3
    local err=$T/stderr rc
    timeout 60 "$exe" sample "$@" >"$T/stdout" 2>"$err"
    rc=$?
    local why=""
    if [ $rc -eq 124 ]; then why="timed out (hang)"
    elif [ $rc -ge 128 ]; then why="killed by signal $((rc - 128))"
    elif [ $rc -ne "$want" ]; then why="exit $rc, expected $want"
    elif [ -n "$pat" ] && ! grep -aqiF -- "$pat" "$err"; then why="stderr lacks \"$pat\""
    fi
    if [ -z "$why" ]; then
        pass=$((pass + 1))
        printf '  ok   %-34s exit %d: %s\n' "$name" "$rc" "$(grep -av '^loading\|^loaded\|^writing\|^batch\|^warning' "$err" | tail -1 | cut -c1-150)"
    else
        fail=$((fail + 1))
        printf '  FAIL %-34s %s\n' "$name" "$why"
        sed 's/^/         | /' "$err" | tail -5
    fi
}

# model copy M with one file replaced: mk NAME -> prints the dir
mk() { rm -rf "$T/$1"; cp -r "$fix" "$T/$1"; echo "$T/$1"; }
# safetensors file from a JSON header and N zero data bytes: st FILE HEADER N
st() {
    local hdr=$2
    perl -e 'print pack("Q<", length($ARGV[0])), $ARGV[0], "\0" x $ARGV[1]' "$hdr" "$3" >"$1"
}
# JSON key edit: setkey FILE KEY VALUE (a "KEY": line in the pretty-printed configs)
setkey() { sed -i "s|^\(  \"$2\": \).*\$|\1$3,|" "$1"; }
# overwrite the first float of tensor KEY in safetensors FILE: poke FILE KEY VALUE
poke() {
    local off
    off=$(perl -e 'open(F, "<", $ARGV[0]) or die; binmode F; read(F, $n, 8); $n = unpack("Q<", $n);
                   read(F, $h, $n); $h =~ /"\Q$ARGV[1]\E":\{[^}]*"data_offsets":\[(\d+)/ or die "no key";
                   print 8 + $n + $1' "$1" "$2") || return 1
    perl -e 'print pack("f<", $ARGV[0])' "$3" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}
# overwrite the last 4 bytes of FILE with the float32 VALUE (little-endian)
poke_last() {
    local sz
    sz=$(stat -c %s "$1")
    perl -e 'print pack("f<", $ARGV[0])' "$2" | dd of="$1" bs=1 seek=$((sz - 4)) conv=notrunc status=none
}

M=$fix
O=$T/out
ok=(--model "$M" --out "$O" --steps 1 --height 16 --width 16)

echo "bad_input: alignprop-mpi sample on bad input ($exe)"
# ---- command line
case_ no-model              2 "--model"          --prompt x --out "$O"
case_ model-and-tiny        2 "--tiny"           --model "$M" --tiny 0 --prompt x --out "$O"
case_ no-prompt             2 "--prompt"         --model "$M" --out "$O"
case_ backend-unknown       2 "--backend: expected cpu or cuda" "${ok[@]}" --prompt x --backend gpu
# --backend cuda where it cannot run: refused before loading, naming the build
# or the driver's reason (a CUDA machine's runs are not this test's)
if "$exe" --version | grep -q "cuda: not in this build"; then
case_ backend-cuda-not-built 2 'backend: "cuda" is not available in this build' "${ok[@]}" --prompt x --backend cuda
elif "$exe" --version | grep -q "cuda: built, no device here"; then
case_ backend-cuda-no-device 2 'backend: "cuda" is not available: no CUDA device (' "${ok[@]}" --prompt x --backend cuda
fi
case_ steps-word            2 "--steps"          "${ok[@]}" --prompt x --steps abc
case_ steps-zero            2 "--steps"          "${ok[@]}" --prompt x --steps 0
case_ steps-too-many        2 "--steps"          "${ok[@]}" --prompt x --steps 1001
case_ steps-overflow        2 "--steps"          "${ok[@]}" --prompt x --steps 99999999999999999999
case_ steps-trailing        2 "--steps"          "${ok[@]}" --prompt x --steps 5x
case_ steps-empty           2 "--steps"          "${ok[@]}" --prompt x --steps ""
case_ batch-2pow32          2 "--batch"          "${ok[@]}" --prompt x --batch 4294967296
case_ batch-2pow31          2 "--batch"          "${ok[@]}" --prompt x --batch 2147483647
case_ batch-zero            2 "--batch"          "${ok[@]}" --prompt x --batch 0
case_ batch-negative        2 "--batch"          "${ok[@]}" --prompt x --batch -1
case_ batch-1e20            2 "--batch"          "${ok[@]}" --prompt x --batch 1e20
case_ guidance-nan          2 "--guidance"       "${ok[@]}" --prompt x --guidance nan
case_ guidance-inf          2 "--guidance"       "${ok[@]}" --prompt x --guidance inf
case_ guidance-1e39         2 "--guidance"       "${ok[@]}" --prompt x --guidance 1e39
case_ guidance-word         2 "--guidance"       "${ok[@]}" --prompt x --guidance high
case_ seed-negative         2 "--seed"           "${ok[@]}" --prompt x --seed -1
case_ seed-fraction         2 "--seed"           "${ok[@]}" --prompt x --seed 1.5
case_ seed-overflow         2 "--seed"           "${ok[@]}" --prompt x --seed 99999999999999999999
case_ height-not-multiple   2 "--height 30"      "${ok[@]}" --prompt x --height 30
case_ height-zero           2 "--height"         "${ok[@]}" --prompt x --height 0
case_ width-negative        2 "--width"          "${ok[@]}" --prompt x --width -64
case_ height-huge           2 "--height"         "${ok[@]}" --prompt x --height 100000
case_ threads-negative      2 "--threads"        "${ok[@]}" --prompt x --threads -1
case_ threads-word          2 "--threads"        "${ok[@]}" --prompt x --threads 2x
case_ tiny-negative         2 "--tiny"           --tiny -5 --prompt x --out "$O"
case_ extra-word            2 "extra"            "${ok[@]}" --prompt x extra
case_ unknown-option        2 "--colour"         "${ok[@]}" --prompt x --colour red
case_ missing-value         2 "--seed"           "${ok[@]}" --prompt x --seed
case_ prompt-bad-utf8       2 "--prompt"         "${ok[@]}" --prompt "$(printf 'a\xff b')"
: >"$T/afile"
case_ out-is-file           2 "--out"            --model "$M" --prompt x --out "$T/afile"
case_ out-uncreatable       2 "--out"            --model "$M" --prompt x --out /proc/self/x
case_ out-unwritable        2 "--out"            --model "$M" --prompt x --out /proc/self
case_ out-empty             2 "--out"            --model "$M" --prompt x --out ""
case_ model-missing         2 "--model"          --model "$T/nope" --prompt x --out "$O"
case_ model-not-diffusers   1 "model_index.json" --model "$T" --prompt x --out "$O"
case_ model-file-no-tok     2 "--tokenizer"      --model "$T/afile" --prompt x --out "$O"
case_ tokenizer-with-dir    2 "--tokenizer"      --model "$M" --tokenizer "$M/tokenizer" --prompt x --out "$O"
mkdir -p "$T/emptytok"
case_ tokenizer-dir-empty   2 "vocab.json"       --model "$T/afile" --tokenizer "$T/emptytok" --prompt x --out "$O"
case_ lora-missing          2 "--lora"           "${ok[@]}" --prompt x --lora "$T/nope.bin"
echo "not a checkpoint" >"$T/lora.txt"
case_ lora-not-weights      2 "lora.txt"         "${ok[@]}" --prompt x --lora "$T/lora.txt"
st "$T/other_lora.safetensors" '{"down_blocks.7.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.down.weight":{"dtype":"F32","shape":[2,8],"data_offsets":[0,64]}}' 64
case_ lora-other-model      1 "down_blocks.7"    "${ok[@]}" --prompt x --lora "$T/other_lora.safetensors"

# ---- prompt files
case_ prompts-missing       2 "nope.txt"         "${ok[@]}" --prompts "$T/nope.txt"
: >"$T/empty.txt"
case_ prompts-empty         2 "empty.txt"        "${ok[@]}" --prompts "$T/empty.txt"
printf '  \n\t\n\r\n' >"$T/blank.txt"
case_ prompts-blank         2 "blank.txt"        "${ok[@]}" --prompts "$T/blank.txt"
printf 'a cat\na d\0og\n' >"$T/nul.txt"
case_ prompts-nul           2 "line 2"           "${ok[@]}" --prompts "$T/nul.txt"
printf 'a cat\n\xc3\x28 dog\n' >"$T/utf8.txt"
case_ prompts-bad-utf8      2 "invalid UTF-8"    "${ok[@]}" --prompts "$T/utf8.txt"
printf 'a cat\nan overlong \xc0\xaf slash\n' >"$T/overlong.txt"
case_ prompts-overlong      2 "overlong.txt"     "${ok[@]}" --prompts "$T/overlong.txt"
case_ prompts-dev-zero      2 "/dev/zero"        "${ok[@]}" --prompts /dev/zero
case_ prompts-directory     2 "$T"               "${ok[@]}" --prompts "$T"
head -c $((17 << 20)) /dev/zero | tr '\0' 'a' >"$T/big.txt"
case_ prompts-too-big       2 "16 MiB"           "${ok[@]}" --prompts "$T/big.txt"
rm -f "$T/big.txt"

# ---- scheduler / unet / vae configs
d=$(mk sched_beta); setkey "$d/scheduler/scheduler_config.json" beta_end 2
case_ sched-beta-end-2      1 "beta_end"         --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk sched_beta0); setkey "$d/scheduler/scheduler_config.json" beta_start -0.5
case_ sched-beta-start-neg  1 "beta_start"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk sched_nan); setkey "$d/scheduler/scheduler_config.json" beta_end 1e400
case_ sched-beta-end-1e400  1 "beta_end"         --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk sched_json); echo '{"beta_end": ' >"$d/scheduler/scheduler_config.json"
case_ sched-not-json        1 "scheduler_config.json" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk sched_type); setkey "$d/scheduler/scheduler_config.json" num_train_timesteps '"many"'
case_ sched-steps-string    1 "num_train_timesteps" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk sched_offset); setkey "$d/scheduler/scheduler_config.json" steps_offset 5000
case_ sched-offset-huge     1 "steps_offset"     --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_eps); setkey "$d/unet/config.json" norm_eps -1
case_ unet-norm-eps-neg     1 "norm_eps"         --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_eps0); setkey "$d/unet/config.json" norm_eps 0
case_ unet-norm-eps-zero    1 "norm_eps"         --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_nocfg); rm "$d/unet/config.json"
case_ unet-config-missing   1 "unet/config.json" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_json); head -c 100 "$fix/unet/config.json" >"$d/unet/config.json"
case_ unet-config-truncated 1 "unet/config.json" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_groups); setkey "$d/unet/config.json" norm_num_groups 3
case_ unet-groups-indivisible 1 "norm_num_groups" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_xdim); setkey "$d/unet/config.json" cross_attention_dim 32
case_ unet-wrong-shape      1 "wrong shape"      --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk vae_json); echo '[1, 2' >"$d/vae/config.json"
case_ vae-config-not-json   1 "vae/config.json"  --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk vae_sf); setkey "$d/vae/config.json" scaling_factor 0
case_ vae-scaling-zero      1 "scaling_factor"   --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16

# ---- weight files
d=$(mk unet_trunc); truncate -s 5000 "$d/unet/diffusion_pytorch_model.safetensors"
case_ unet-weights-truncated 1 "unet/diffusion_pytorch_model.safetensors" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_empty); : >"$d/unet/diffusion_pytorch_model.safetensors"
case_ unet-weights-empty    1 "unet/diffusion_pytorch_model.safetensors" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_nan); poke_last "$d/unet/diffusion_pytorch_model.safetensors" nan
case_ unet-weights-nan      1 "non-finite"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk vae_inf); poke "$d/vae/diffusion_pytorch_model.safetensors" post_quant_conv.weight inf
case_ vae-weights-inf       1 "vae/diffusion_pytorch_model.safetensors" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk te_trunc); truncate -s 3000 "$d/text_encoder/model.safetensors"
case_ text-weights-truncated 1 "text_encoder/model.safetensors" --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk unet_huge); poke_last "$d/unet/diffusion_pytorch_model.safetensors" 3e38
case_ unet-weights-overflow 1 "non-finite"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16

# ---- tokenizer files
d=$(mk tok_vocab); head -c 500 "$fix/tokenizer/vocab.json" >"$d/tokenizer/vocab.json"
case_ vocab-truncated       1 "vocab.json"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk tok_vocab0); : >"$d/tokenizer/vocab.json"
case_ vocab-empty           1 "vocab.json"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk tok_merges); rm "$d/tokenizer/merges.txt"
case_ merges-missing        1 "merges.txt"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16
d=$(mk tok_vocabtype); echo '["a", "b"]' >"$d/tokenizer/vocab.json"
case_ vocab-not-object      1 "vocab.json"       --model "$d" --prompt x --out "$O" --steps 1 --height 16 --width 16

# ---- inputs that must work, with the output asked for
seq 20 | sed 's/^/prompt /' >"$T/p20.txt"
rm -rf "$O"
case_ prompt-plus-20-lines  0 ""                 "${ok[@]}" --prompt first --prompts "$T/p20.txt"
n=$(ls "$O"/*.png 2>/dev/null | wc -l)
if [ "$n" -eq 21 ]; then pass=$((pass + 1)); echo "  ok   prompt-plus-20-lines-count          21 PNGs written"
else fail=$((fail + 1)); echo "  FAIL prompt-plus-20-lines-count          $n PNGs, expected 21"; fi
rm -rf "$O"
case_ prompts-4-times       0 ""                 "${ok[@]}" --prompts "$T/p20.txt" --prompts "$T/p20.txt" --prompts "$T/p20.txt" --prompts "$T/p20.txt" --batch 8
n=$(ls "$O"/*.png 2>/dev/null | wc -l)
if [ "$n" -eq 80 ]; then pass=$((pass + 1)); echo "  ok   prompts-4-times-count               80 PNGs written"
else fail=$((fail + 1)); echo "  FAIL prompts-4-times-count               $n PNGs, expected 80"; fi
{ head -c 10000 /dev/zero | tr '\0' 'x'; printf '\r\n\n   \nsecond prompt\n'; } >"$T/long.txt"
rm -rf "$O"
case_ prompts-long-line     0 ""                 "${ok[@]}" --prompts "$T/long.txt"
n=$(ls "$O"/*.png 2>/dev/null | wc -l)
if [ "$n" -eq 2 ]; then pass=$((pass + 1)); echo "  ok   prompts-long-line-count             2 PNGs (a 10,000-byte line is one prompt)"
else fail=$((fail + 1)); echo "  FAIL prompts-long-line-count             $n PNGs, expected 2"; fi

echo "bad_input: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
