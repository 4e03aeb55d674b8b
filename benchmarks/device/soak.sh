# Soak on the lent GPU (issue 14, item 7): 1000 generations of the default pipeline (vdrt-tiny, eager) and
# 1000 of its AOTI engine in one process each: memory flat, p99 latency stable; then the memory estimate
# (vdrt.pipeline.memory) against the measured peak of real-size generations (its GPU calibration).
# usage: bash benchmarks/device/soak.sh [eager] [aoti] [estimate]      (default: all three, ~5 min)
#   eager    (~2 min)  1000 generations, vdrt-tiny 17x64x64, its card's steps   -> $OUT/soak_eager.json (+ series)
#   aoti     (~2 min)  the same through an AOTI engine built first (bf16)        -> $OUT/soak_aoti.json (+ series)
#   estimate (~1 min)  wan-tiny / Wan2.1-1.3B (random weights) / factorized-tiny, 2 steps each: estimate vs
#                      torch.cuda.max_memory_allocated                            -> $OUT/memory_estimate.json
# Each soak stops early past SOAK_SECONDS (default 150) and says so in its row (stopped_early, n).
# CPU smoke run (what tests/benchmarks/test_soak.py does): OUT=/tmp/o SOAK_N=5 SOAK_DEVICE=cpu bash soak.sh eager
source benchmarks/device/setup.sh
N=${SOAK_N:-1000}
SECONDS_BUDGET=${SOAK_SECONDS:-150}
DEV=${SOAK_DEVICE:-cuda}
export LD_PRELOAD=${SOAK_PRELOAD-/lib/x86_64-linux-gnu/libstdc++.so.6}  # the image's AOTI-load quirk (DESIGN.md)
S="python3 benchmarks/soak.py --device $DEV --n $N --seconds $SECONDS_BUDGET"
for stage in ${@:-eager aoti estimate}; do
  case $stage in
    eager) timeout 280 $S --out $OUT/soak_eager.json --series $OUT/soak_eager_series.json 2>&1 \
             | tee $OUT/soak_eager.log | tail -30 ;;
    aoti) timeout 400 $S --backend aoti --out $OUT/soak_aoti.json --series $OUT/soak_aoti_series.json 2>&1 \
            | tee $OUT/soak_aoti.log | tail -30 ;;
    estimate) timeout 200 python3 benchmarks/soak.py --stage estimate --device $DEV --out $OUT/memory_estimate.json \
                2>&1 | tee $OUT/memory_estimate.log | tail -12 ;;
    *) echo "unknown stage $stage (eager aoti estimate)"; exit 2 ;;
  esac
done
