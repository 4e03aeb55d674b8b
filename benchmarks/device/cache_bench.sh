#!/usr/bin/env bash
# Step caching on the H200: Wan2.1-1.3B (random weights), 480p x 81f, bf16, no CFG. One step row, whole
# 50-step denoise loops without caching and with TeaCache / MagCache / first-block cache at 2 thresholds
# each (ms per step, skipped fraction, speed-up, drift of the final latents against the uncached loop),
# and the end-to-end clip of 4 steps split into text / denoise / decode / write. The policies are
# calibrated first on a small shape (17x240x416, 1 prompt, 50 steps: ~10 s).
#
#   bash benchmarks/device/cache_bench.sh            # on the GPU machine, ~3 min; carry .whl/ with the diffusers
#                                                    # wheel (the preset's random Wan VAE for the e2e clip)
#   QUALITY=1 bash benchmarks/device/cache_bench.sh  # + benchmarks/cache_quality.py on the embedded teacher
#                                                    # (32 clips a task, 6 policies: ~2 more min)
#   CACHE_SIZE=tiny OUT=/tmp/cb bash benchmarks/device/cache_bench.sh   # CPU smoke run, wan-tiny, ~1 min
#   (with QUALITY=1 on CPU: one policy, 1 clip, 4 steps; needs main's vdrt.export.tiny.quality)
#
# Writes to $OUT: cache_bench.json (the rows), calibration.json, cache_bench.log, report/<gpu>/ (rows.json,
# README.md, the plot) and with QUALITY=1 cache_quality.json: at most 7 files.
set -u -o pipefail
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
REPO=$(pwd)
if [ "${CACHE_SIZE:-full}" = tiny ]; then
  MODEL=wan-tiny; DEVICE=cpu; PREC=fp32; SHAPE=(--frames 5 --height 32 --width 32); CAL=(--frames 5 --height 32 --width 32)
  LOOP=6; ITERS=2; QSTEPS=(--steps 4 --clips 1 --batch 1); QPOL=teacache:0.1
  export OMP_NUM_THREADS=1  # a loaded 2-core box: one thread times steadily
else
  source benchmarks/device/setup.sh
  export TRITON_INTERPRET=0
  MODEL=wan2.1-t2v-1.3b; DEVICE=cuda; PREC=bf16; SHAPE=(--frames 81 --height 480 --width 832)
  CAL=(--frames 17 --height 240 --width 416); LOOP=50; ITERS=5; QSTEPS=(--clips ${CLIPS:-32})
  QPOL=teacache:0.05,teacache:0.1,magcache:0.05,magcache:0.1,fbcache:0.05,fbcache:0.1
fi
cd /tmp  # not the checkout: its vdrt/ folder (without kernels/ and export/ mapped in) would shadow the package
export VDRT_CALIBRATION_DIR=$OUT/.calibration
POLICIES=${POLICIES:-teacache:0.1,teacache:0.2,magcache:0.05,magcache:0.1,fbcache:0.05,fbcache:0.1}

# 1. calibration (TeaCache polynomial, MagCache ratios) on a small shape; the bench finds it by the model's key
timeout 120 python3 -m vdrt calibrate $MODEL "${CAL[@]}" --steps $LOOP --guidance 1 --seeds 0 \
    --prompts "a red circle bouncing" --device $DEVICE --precision $PREC --out "$OUT/calibration.json" 2>&1 \
    | grep -v "^I \|^W " | tail -3 || echo "calibration failed: the policies run on their documented defaults"

# 2. the step, the loops and the end-to-end clip, in one table (rows + report)
timeout 480 python3 -m vdrt bench $MODEL "${SHAPE[@]}" --device $DEVICE --precision $PREC --warmup 2 \
    --iterations $ITERS --percentiles 50,90,99 --cache "$POLICIES" --cache-steps $LOOP --guidance 1 --steps 4 \
    --json "$OUT/cache_bench.json" --report "$OUT/report" > "$OUT/cache_bench.log" 2>&1
echo "vdrt bench exit code $?"
grep -v "^I \|^W \|^D " "$OUT/cache_bench.log" | tail -40

# 3. optional: the policies' quality on the embedded teacher through the oracle (fidelity vs uncached, same seeds)
if [ "${QUALITY:-0}" = 1 ]; then
  timeout 300 python3 "$REPO/benchmarks/cache_quality.py" --device $DEVICE --calibrate "${QSTEPS[@]}" \
      --policies "$QPOL" --out "$OUT/cache_quality.json" 2>&1 | grep -v "^I \|^W " | tail -12
  echo "cache_quality exit code $?"
fi
rm -rf "$OUT/.calibration"
