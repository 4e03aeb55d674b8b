# GPU calls of 2026-11-24: every -m gpu test (runtime, kernels, export), the CUDA-graph launch-overhead
# rows on the tiny models, and the Wan-1.3B engine comparison with external AOTI weights.
# usage: bash benchmarks/device/run3.sh tests|tiny|wan|recheck|linears [extra engines.py flags for wan]
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
stage=$1; shift
case $stage in
  tests) (cd tests && LD_PRELOAD=/lib/x86_64-linux-gnu/libstdc++.so.6 timeout 330 python3 -m pytest -q -m gpu \
            -p no:cacheprovider runtime kernels export -rs 2>&1 | tee $OUT/gpu_tests.log | tail -40) ;;
  tiny) (cd benchmarks && timeout 200 python3 engines.py --only-tiny --out $OUT/engines_tiny.json 2>&1 \
            | tee $OUT/engines_tiny.log | grep -v "^INFO\|^I " | tail -30) ;;
  wan) (cd benchmarks && timeout 560 python3 engines.py --no-tiny --out $OUT/engines_wan.json "$@" 2>&1 \
            | tee $OUT/engines_wan.log | grep -v "^INFO\|^I " | tail -40) ;;
  recheck) (cd tests && LD_PRELOAD=/lib/x86_64-linux-gnu/libstdc++.so.6 timeout 300 python3 -m pytest -q -m gpu \
            -p no:cacheprovider ${RECHECK:-kernels/test_quant.py kernels/test_adaln.py export} -rs 2>&1 | tee $OUT/gpu_recheck.log \
            | tail -15) ;;
  linears) timeout 240 python3 benchmarks/kernels_attention.py --only linear --only quant \
            --out $OUT/kernels_linear_quant.json 2>&1 | tee $OUT/kernels_linear_quant.log | grep -v "^INFO" | tail -45 ;;
esac
