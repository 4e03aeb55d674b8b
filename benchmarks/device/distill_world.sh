#!/usr/bin/env bash
# Issue 12, GPU call 2: distil both tiny teachers into 4-step students at once (two processes on one
# H200, MINUTES each), then run the quality oracle on all four models with the baselines, the paired
# comparisons (student vs teacher; int4 and a too-small attention window vs each student) and contact
# sheets. The teachers come from FROM (the 8 files train_world.sh wrote, carried into the repo).
# $OUT gets at most 8 files: the two students (card + weights), quality_wan.json, quality_factorized.json,
# sheet_wan.png, sheet_factorized.png. Student training states stay in a fresh folder under /tmp (not
# resumable across calls; never a folder an earlier run left behind, whose students would be scored
# instead). A failed distillation stops the script with its log's tail (exit 1) before any scoring.
#
#   FROM=.carry/world MINUTES=2.2 CLIPS=256 bash benchmarks/device/distill_world.sh
#   OUT=/tmp/dw FROM=/tmp/tw DEVICE=cpu MINUTES=0.4 CLIPS=4 TINY=1 bash benchmarks/device/distill_world.sh
set -u -o pipefail
MINUTES=${MINUTES:-2.2}
CLIPS=${CLIPS:-256}
DEVICE=${DEVICE:-cuda}
FROM=${FROM:?set FROM to the folder holding the two teacher cards}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/distill.XXXXXX)
if [ "$DEVICE" = cuda ]; then source benchmarks/device/setup.sh; fi
REPO=$(pwd); FROM=$(cd "$FROM" && pwd)
cd /tmp  # not the checkout: its vdrt/ folder (without export/ mapped in) would shadow the installed package
cp "$FROM"/vdrt-tiny-*-teacher.json "$FROM"/vdrt-tiny-*-teacher.safetensors "$WORK"/
EXTRA=()
if [ -n "${TINY:-}" ]; then EXTRA=(--trajectories 4 --traj-batch 2 --grid 4 --tokens 600 --fit-after 3 --log-every 2); fi
run() {
  python3 -m vdrt.export.tiny.distill --teacher "$WORK/vdrt-tiny-$1-teacher.json" --out "$WORK" \
    --minutes "$MINUTES" --device "$DEVICE" "${EXTRA[@]}" > "$WORK/distill_$1.log" 2>&1
  echo "$1 distill exit $?"
}
run wan & run factorized & wait
for a in wan factorized; do
  echo "=== $a"; grep -v "^INFO:torch\|Warning" "$WORK/distill_$a.log" | tail -12
  if [ ! -f "$WORK/vdrt-tiny-$a.json" ]; then
    echo "distill_world.sh: no student vdrt-tiny-$a was written; its log ends:"; tail -40 "$WORK/distill_$a.log"; exit 1
  fi
done
cp "$WORK"/vdrt-tiny-wan.json "$WORK"/vdrt-tiny-wan.safetensors \
   "$WORK"/vdrt-tiny-factorized.json "$WORK"/vdrt-tiny-factorized.safetensors "$OUT"/
cd "$REPO/benchmarks"
STATUS=0
for a in wan factorized; do
  WINDOW=(--window-tokens 16); if [ "$a" = factorized ]; then WINDOW=(--window 0); fi
  BASE=(); if [ "$a" = wan ]; then BASE=(--baselines); fi
  python3 quality.py --weights-dir "$WORK" --model "vdrt-tiny-$a" --model "vdrt-tiny-$a-teacher" \
    --clips "$CLIPS" --device "$DEVICE" --compare --int4 "${WINDOW[@]}" "${BASE[@]}" \
    --out "$OUT/quality_$a.json" --sheet "$OUT/sheet_$a.png" 2>&1 | grep -v "INFO\|Warning" || STATUS=1
done
ls -la "$OUT"
exit $STATUS
