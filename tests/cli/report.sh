#!/usr/bin/env bash
# `alignprop-mpi report` on real runs of the demo config (2 MPI ranks, 4 DDIM
# steps, an evaluation and a checkpoint every step).
#   report.sh html BIN CFG CHECK      the page made while the run goes on and
#       after it stopped: parsed and compared with log.h5, the PNGs and the
#       checkpoint's config by CHECK (tests/cli/report_check.c); --help; bad
#       arguments refused (exit 2) naming the argument
#   report.sh browser BIN CFG CHECK   the page rendered by a real headless
#       browser (Debian's chromium, else firefox): the screenshot's chart
#       pixels are not blank, the rendered DOM holds every caption. Skips
#       (exit 77) with the reason when neither browser is installed
#       (tools/check asks tools/install-deps for chromium).
mode=$1 BIN=$2 CFG=$3 CHECK=$4
DIFF=$BIN   # common.sh resolves BIN, DIFF, CFG
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/train/common.sh"
CHECK=$(realpath "$CHECK")
sets=(--set steps=4 --set train.total_samples_per_epoch=4 --set train.total_batch_size=4
      --set vis_freq=1 --set save_freq=1 "--set=truncated_backprop_minmax=[0,4]"
      --set run_name=r --set logdir="$tmp/run")
run="$tmp/run/r"

if [ "$mode" = html ]; then
  echo "report: the page of a run going on and of a stopped run, against log.h5 and the PNGs"
  "$BIN" report --help | grep -q "usage: alignprop-mpi report RUN_DIR" && ok "report --help" || bad "report --help"
  "$BIN" report "$tmp/nonexistent" 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] && grep -q "nonexistent: not a directory" "$tmp/err" && ok "a missing RUN_DIR: exit 2, named" \
    || bad "missing RUN_DIR: exit $rc: $(cat "$tmp/err")"
  mkdir -p "$tmp/empty"
  "$BIN" report "$tmp/empty" 2> "$tmp/err"; rc=$?
  [ $rc -eq 1 ] && grep -q "expected log.h5" "$tmp/err" && ok "a directory without log.h5/eval.h5: exit 1, named" \
    || bad "empty dir: exit $rc: $(cat "$tmp/err")"
  "$BIN" report "$tmp/empty" --last-evals x 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] && grep -q "last-evals" "$tmp/err" && ok "--last-evals x: exit 2, named" || bad "--last-evals x: exit $rc"
  # a long run: reported while it writes, then stopped with SIGUSR1 (checkpoint, exit 75)
  mpirun -np 2 "$BIN" "$CFG" "${sets[@]}" --set num_epochs=100 > "$tmp/run.log" 2>&1 &
  pid=$!
  got=0
  for _ in $(seq 1 600); do
    if [ -e "$run/log.h5" ] && [ ! -e "$run/done" ] && kill -0 $pid 2>/dev/null; then
      if "$BIN" report "$run" -o "$tmp/live.html" > "$tmp/live.out" 2>&1 \
         && grep -Eq "\(([2-9]|[1-9][0-9]+) steps" "$tmp/live.out"; then
        kill -0 $pid 2>/dev/null && got=1
        break
      fi
    fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
  done
  [ $got -eq 1 ] && ok "report of the running run: $(cat "$tmp/live.out")" || { bad "no report while running"; cat "$tmp/live.out"; tail "$tmp/run.log"; }
  [ $got -eq 1 ] && { "$CHECK" html "$tmp/live.html" "$run" 2 || bad "the page made while running"; }
  kill -USR1 $pid 2>/dev/null
  wait $pid; rc=$?
  [ $rc -eq 75 ] && ok "the run stopped on SIGUSR1 (exit 75)" || { bad "run exit $rc"; tail "$tmp/run.log"; }
  "$BIN" report "$run" > "$tmp/final.out" 2>&1 && ok "report of the stopped run: $(cat "$tmp/final.out")" \
    || { bad "report of the stopped run"; cat "$tmp/final.out"; }
  "$CHECK" html "$run/report.html" "$run" 2 || bad "the page of the stopped run"
  "$BIN" report "$run" --last-evals 1 -o "$tmp/one.html" > /dev/null 2>&1
  n=$(grep -c '<section class="eval"' "$tmp/one.html")
  [ "$n" -eq 1 ] && ok "--last-evals 1: one evaluation section" || bad "--last-evals 1: $n sections"
  # an evaluation run (only_eval): eval.h5 and eval_vis/ without log.h5
  "$BIN" "$CFG" "${sets[@]}" --set only_eval=true --set run_name=e --set max_vis_images=2 \
    > "$tmp/eval.log" 2>&1 || { bad "only_eval run failed"; tail -3 "$tmp/eval.log"; }
  if "$BIN" report "$tmp/run/e" -o "$tmp/eval.html" > "$tmp/eval.out" 2>&1; then
    ni=$(grep -o 'src="data:image/png;base64,' "$tmp/eval.html" | wc -l)
    np=$(grep -c '<span class="prompt">a ' "$tmp/eval.html")
    [ "$ni" -eq 4 ] && [ "$np" -eq 4 ] && ok "evaluation run: 4 images with prompt captions from eval.h5" \
      || bad "evaluation run: $ni images, $np captions (expected 4)"
  else
    bad "report of an evaluation run: $(cat "$tmp/eval.out")"
  fi
  finish
  exit
fi

[ "$mode" = browser ] || { echo "report.sh: mode $mode: expected html or browser"; exit 2; }
echo "report: rendered by a real headless browser"
browser=""
for b in chromium chromium-browser firefox-esr firefox; do
  command -v "$b" > /dev/null && { browser=$b; break; }
done
if [ -z "$browser" ]; then
  echo "SKIP: no chromium or firefox installed (tools/install-deps chromium installs Debian's chromium)"
  exit 77
fi
echo "  browser: $browser ($("$browser" --version 2>/dev/null | head -1))"
mpirun -np 2 "$BIN" "$CFG" "${sets[@]}" --set num_epochs=2 > "$tmp/run.log" 2>&1 \
  && ok "a 2-step run" || { bad "the run failed"; tail "$tmp/run.log"; finish; exit 1; }
"$BIN" report "$run" -o "$tmp/report.html" > /dev/null || { bad "report failed"; finish; exit 1; }
shot="$tmp/shot.png"
case "$browser" in
  chromium*)
    flags=(--headless --disable-gpu --no-sandbox --hide-scrollbars --user-data-dir="$tmp/profile"
           --no-first-run --window-size=1400,1400)
    timeout 120 "$browser" "${flags[@]}" --screenshot="$shot" "file://$tmp/report.html" > "$tmp/b.log" 2>&1
    timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$tmp/report.html" > "$tmp/dom.html" 2> "$tmp/b2.log" ;;
  firefox*)
    timeout 120 "$browser" --headless --profile "$tmp/profile" --no-remote --window-size=1400,1400 \
      --screenshot "$shot" "file://$tmp/report.html" > "$tmp/b.log" 2>&1
    cp "$tmp/report.html" "$tmp/dom.html" ;;  # firefox has no --dump-dom: captions checked in the page
esac
[ -s "$shot" ] && ok "screenshot written" || { bad "no screenshot"; tail "$tmp/b.log"; finish; exit 1; }
"$CHECK" png "$shot" && ok "the charts are drawn (series colours in the screenshot)" || bad "chart pixels blank"
# every caption of the page is in the DOM the browser built
want=$(grep -o '<span class="prompt">[^<]*</span>' "$tmp/report.html" | sort)
have=$(grep -o '<span class="prompt">[^<]*</span>' "$tmp/dom.html" | sort)
nw=$(printf '%s\n' "$want" | grep -c prompt)
[ "$nw" -ge 4 ] && [ "$want" = "$have" ] && ok "$nw captions in the rendered DOM" \
  || { bad "captions: page $nw, DOM $(printf '%s\n' "$have" | grep -c prompt)"; }
nimg=$(grep -o '<img ' "$tmp/dom.html" | wc -l)
[ "$nimg" -eq "$nw" ] && ok "$nimg images in the DOM" || bad "$nimg images in the DOM, $nw captions"
[ -n "${AP_REPORT_SHOT:-}" ] && cp "$shot" "$AP_REPORT_SHOT"
finish
