# GPU call for issue 10 (attention): the kernels' GPU tests, then benchmarks/attention.py (dense, 8-bit and
# sparse variants beside cuDNN/FLASH/EFFICIENT SDPA, torch.compile, FlexAttention, sageattention 1.0.6).
# usage (device run, carry .whl with sageattention): bash benchmarks/device/attention.sh [benchmark args]
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
(cd tests && timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider -k "not wan_shapes" \
    kernels/test_attention.py kernels/test_attention_int8.py kernels/test_attention_sparse.py kernels/test_rope_op.py \
    kernels/test_rope.py 2>&1 | tee $OUT/gpu_tests_attention.log | tail -12)
timeout ${BENCH_TIMEOUT:-400} python3 benchmarks/attention.py --out $OUT/attention.json "$@" 2>&1 \
    | tee $OUT/attention.log | grep -v "^20[0-9][0-9]-" | cut -c1-230 | tail -75
