# Third attention call (issue 10 items 2-3): q/k quantised inside the rope kernel, sparse 8-bit with fp8 PV over a
# tile-padded V^T. Checks and times at the Wan-1.3B shape (32760 x 12 x 128), runs the GPU tests of the new kernels,
# then Wan-1.3B step rows (fused vs unfused, dense and sparse 8-bit). Writes to $OUT: attention_fused.json,
# gpu_tests.log, wan_step_fused.json (+ .log). Expected 5-7 minutes on the H200 (timeouts sum to 530 s + setup).
#   usage (GPU):  VDRT_COMMIT=$(git rev-parse --short=12 HEAD) bash benchmarks/device/attention3.sh
#   CPU smoke:    SMOKE=1 OUT=/tmp/a3 bash benchmarks/device/attention3.sh   (interpreter, tiny shapes, ~2 min)
set -u
OUT=${OUT:-/tmp/attention3_out}; mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
  cd benchmarks
  TRITON_INTERPRET=1 timeout 600 python3 attention_fused.py --smoke --out $OUT/attention_fused.json 2>&1 | grep -v "^20[0-9][0-9]-" | tail -14
  exit ${PIPESTATUS[0]}
fi
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
cd benchmarks
timeout 180 python3 attention_fused.py --out $OUT/attention_fused.json 2>&1 | tee $OUT/attention_fused.log \
    | grep -v "^20[0-9][0-9]-" | cut -c1-220 | tail -16
cd ..
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_attention_fused.py \
    tests/kernels/test_attention_sparse.py tests/kernels/test_attention_int8.py tests/kernels/test_rope_quant.py \
    tests/models/test_wan_blocks.py > $OUT/gpu_tests.log 2>&1
tail -3 $OUT/gpu_tests.log
cd benchmarks
timeout 200 python3 wan_step.py --no-diffusers --lossy-only --only "8-bit attention" --reps-ms 1000 \
    --out $OUT/wan_step_fused.json > $OUT/wan_step_fused.log 2>&1
tail -12 $OUT/wan_step_fused.log | cut -c1-220
