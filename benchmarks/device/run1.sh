# GPU call 1: torch-engine CUDA-graph tests, kernel GPU tests so far, Wan-1.3B step vs diffusers eager.
source benchmarks/device/setup.sh
mkdir -p $OUT
cd tests && timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider runtime kernels -x -rs 2>&1 | tee $OUT/gpu_tests.log | tail -25; cd ..
cd benchmarks && timeout 300 python3 wan_step.py --out $OUT/wan_step.json 2>&1 | grep -v "^INFO" | tail -20
