#!/usr/bin/env bash
# Issue 12: why did the factorized teacher fail on the H200 (loss 1.2 at step 300 and 0.75 at the end, while the
# wan teacher, same loss, reached 0.25 and 0.04)? On the CPU (fp32, eager, small configs) both learn at the same
# rate. Four short trainings of STEPS steps at once on one GPU, identical data and seeds, loss curves compared:
#   fac-compiled-bf16 (as the failed run), fac-eager-bf16, fac-eager-fp32, wan-compiled-bf16 (control).
# The one whose loss stays near 1.2 names the culprit (torch.compile, bf16 autocast, or neither: the model/LR).
# Writes $OUT/factorized_probe.json (one row per run: steps, loss curve, steps/s) and prints a table.
#
#   STEPS=400 bash benchmarks/device/factorized_probe.sh                     # ~4-6 min on the H200
#   OUT=/tmp/fp DEVICE=cpu STEPS=6 TINY=1 bash benchmarks/device/factorized_probe.sh   # smoke test
set -u -o pipefail
STEPS=${STEPS:-400}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then source benchmarks/device/setup.sh; fi
WORK=$(mktemp -d /tmp/fprobe.XXXXXX)
cd /tmp  # not the checkout: its vdrt/ folder (without export/ mapped in) would shadow the installed package
EXTRA=(--log-every 50 --fit-after 100000)
if [ -n "${TINY:-}" ]; then
  EXTRA=(--log-every 2 --fit-after 100000 --tokens 600 --text-config '{"dim": 32, "layers": 1, "heads": 2}')
fi
run() {  # name, arch, flags..., config for TINY
  local name=$1 arch=$2; shift 2
  local cfg='{}'; if [ -n "${TINY:-}" ]; then cfg='{"dim": 64, "num_heads": 2, "num_layers": 1}'; fi
  if [ -n "${TINY:-}" ] && [ "$arch" = wan ]; then
    cfg='{"dim": 64, "num_heads": 2, "num_layers": 1, "ffn_dim": 128}'
  fi
  python3 -m vdrt.export.tiny.train --arch "$arch" --out "$WORK/$name" --steps "$STEPS" --device "$DEVICE" \
    --config "$cfg" "${EXTRA[@]}" "$@" > "$WORK/$name.log" 2>&1
  echo "$name exit $?"
}
run fac-compiled-bf16 factorized &
run fac-eager-bf16 factorized --no-compile &
run fac-eager-fp32 factorized --no-compile --no-bf16 &
run wan-compiled-bf16 wan &
wait
python3 - "$WORK" "$OUT/factorized_probe.json" <<'PY'
import json, pathlib, sys
work, rows = pathlib.Path(sys.argv[1]), []
for name in ("fac-compiled-bf16", "fac-eager-bf16", "fac-eager-fp32", "wan-compiled-bf16"):
    cards = list((work / name).glob("*.json"))
    if not cards:
        print(f"{name}: no card; log tail:\n" + "".join((work / f"{name}.log").read_text().splitlines(True)[-15:]))
        continue
    t = json.loads(cards[0].read_text())["trained"]
    rows.append({"bench": "factorized_probe", "impl": name, "steps": t["steps"], "device": t["device"],
                 "torch": t["torch"], "commit": t["commit"], "loss_curve": t["loss_curve"]})
    curve = " ".join(f"{r['step']}:{r['loss']:.3f}" for r in t["loss_curve"])
    print(f"{name:20s} {curve}")
pathlib.Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))
PY
ls -la "$OUT"
