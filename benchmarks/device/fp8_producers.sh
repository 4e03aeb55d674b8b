#!/usr/bin/env bash
# fp8 linears fed by their producers (issue 11 item 3) on the lent GPU: correctness at real shapes, then
# bf16 vs fp8-separate vs fp8-producer at every Wan2.1 1.3B / 14B linear shape (M = 32760), and one step.
#   VDRT_COMMIT=$(git rev-parse --short=12 HEAD) bash benchmarks/device/fp8_producers.sh [tests] [shapes] [step] [step14b]
#   (default: tests shapes step)
#   tests   (~2 min)  -m gpu tests of gelu_quant, the prequant linear, adaln (real shapes, poisoned outputs)
#   shapes  (~3 min)  chains qkv / ffn_in / ffn_out / o and GEMM-only rows at 1.3B and 14B shapes
#   step    (~2 min)  one Wan2.1-1.3B step (480p x 81f, random weights): bf16 / fp8-separate / fp8-producer
#   step14b (~5 min)  the same for Wan2.1-14B
# TINY=1: the CPU smoke size (no GPU, no install). Writes $OUT/fp8_producers_*.json (rows) and .log files.
set -u -o pipefail
mkdir -p "$OUT"
if [ "${TINY:-0}" = 1 ]; then
  SIZE=--tiny; STEP=wan-tiny
else
  source benchmarks/device/setup.sh
  export TRITON_INTERPRET=0; SIZE=; STEP=wan2.1-t2v-1.3b
fi
B="python3 benchmarks/fp8_producers.py $SIZE"
show() { grep -v "^20[0-9][0-9]-" | tail -"${1:-40}"; }
status=0
for stage in ${@:-tests shapes step}; do
  case $stage in
    tests) (cd tests && timeout 300 python3 -m pytest -q -m gpu -p no:cacheprovider kernels/test_gelu_quant.py \
              kernels/test_quant.py kernels/test_adaln.py -rs 2>&1 | tee "$OUT/fp8_producers_tests.log" | tail -15) ;;
    shapes) timeout 400 $B --out "$OUT/fp8_producers_shapes.json" 2>&1 | tee "$OUT/fp8_producers_shapes.log" | show ;;
    step) timeout 400 $B --no-chains --step $STEP --out "$OUT/fp8_producers_step.json" 2>&1 \
              | tee "$OUT/fp8_producers_step.log" | show ;;
    step14b) timeout 560 $B --no-chains --step wan2.1-t2v-14b --out "$OUT/fp8_producers_step14b.json" 2>&1 \
              | tee "$OUT/fp8_producers_step14b.log" | show ;;
    *) echo "unknown stage $stage (tests shapes step step14b)"; exit 2 ;;
  esac
  rc=$?; [ $rc -ne 0 ] && { echo "stage $stage exited $rc"; status=1; }
done
exit $status
