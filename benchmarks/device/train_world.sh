#!/usr/bin/env bash
# Issue 12, GPU call 1: train the tiny Wan teacher and the tiny factorized teacher AT ONCE (two processes
# sharing one H200) for MINUTES of wall time each, then print a summary. Everything lands in $OUT, at most
# 8 files of < 16 MB (per model: <name>.json card with the loss curve, <name>.safetensors EMA fp16 weights,
# <name>.state-00/01.safetensors weights + Adam moments in bf16 for --resume).
#
#   MINUTES=7.5 bash benchmarks/device/train_world.sh                      # fresh (the default)
#   FROM=.carry/world MINUTES=7.5 bash benchmarks/device/train_world.sh    # resume: FROM holds the 8 files
#
# On CPU (a smoke test of this very script at a tiny size):
#   OUT=/tmp/tw DEVICE=cpu MINUTES=0.5 TINY=1 bash benchmarks/device/train_world.sh
set -u -o pipefail
MINUTES=${MINUTES:-7.5}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then source benchmarks/device/setup.sh; fi
if [ -n "${FROM:-}" ]; then FROM=$(cd "$FROM" && pwd); fi
cd /tmp  # not the checkout: its vdrt/ folder (without export/ mapped in) would shadow the installed package
EXTRA=()
if [ -n "${TINY:-}" ]; then
  EXTRA=(--tokens 600 --text-config '{"dim": 32, "layers": 1, "heads": 2}' --fit-after 5 --log-every 5)
fi
RESUME=()
if [ -n "${FROM:-}" ]; then cp "$FROM"/vdrt-tiny-*teacher* "$OUT"/ && RESUME=(--resume); fi
run() {  # arch, config overrides for TINY
  local cfg='{}'; if [ -n "${TINY:-}" ]; then cfg=$2; fi
  python3 -m vdrt.export.tiny.train --arch "$1" --out "$OUT" --minutes "$MINUTES" --device "$DEVICE" \
    --config "$cfg" "${EXTRA[@]}" "${RESUME[@]}" > "/tmp/train_$1.log" 2>&1
  echo "$1 exit $?" >> /tmp/train_status.log
}
rm -f /tmp/train_status.log
run wan '{"dim": 64, "num_heads": 2, "num_layers": 1, "ffn_dim": 128}' &
run factorized '{"dim": 64, "num_heads": 2, "num_layers": 1}' &
wait
for a in wan factorized; do echo "=== $a"; grep -v "^INFO:torch\|Warning" "/tmp/train_$a.log" | tail -25; done
cat /tmp/train_status.log
python3 - "$OUT" <<'PY'
import json, pathlib, sys
for card in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    t = json.loads(card.read_text())["trained"]
    curve = t["loss_curve"]
    rates = [r["steps_per_s"] for r in curve[len(curve) // 2:]]
    print(f"{card.stem}: {t['steps']} steps (horizon {t['horizon']}), final loss {t['final_loss']}, "
          f"{sum(rates) / max(len(rates), 1):.1f} steps/s in the second half, {t['wall_seconds']} s, "
          f"complete {t['complete']}, device {t['device']}")
PY
ls -la "$OUT"
