# GPU call 2: every GPU test (runtime + kernels), then the kernel benchmarks and the Wan step, by stage.
# usage: bash benchmarks/device/run2.sh tests|temporal|attention|wan
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
for stage in "$@"; do
  case $stage in
    tests) (cd tests && timeout 280 python3 -m pytest -q -m gpu -p no:cacheprovider runtime kernels -rs \
            2>&1 | tee $OUT/gpu_tests.log | tail -40) ;;
    temporal) timeout 280 python3 benchmarks/kernels_temporal.py --out $OUT/kernels_temporal.json 2>&1 \
            | tee $OUT/kernels_temporal.log | grep -v "^INFO" | tail -45 ;;
    attention) timeout 300 python3 benchmarks/kernels_attention.py --out $OUT/kernels_attention.json 2>&1 \
            | tee $OUT/kernels_attention.log | grep -v "^INFO" | tail -45 ;;
    wan) (cd benchmarks && timeout 200 python3 wan_step.py --out $OUT/wan_step.json 2>&1 | tee $OUT/wan_step.log \
            | grep -v "^INFO\|^Result" | tail -12) ;;
  esac
done
