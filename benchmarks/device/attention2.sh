# Second attention call: dense-kernel accuracy diagnosis, the variant sweep with TMA working, and ncu on the
# fastest dense / 8-bit / sparse kernels. usage: bash benchmarks/device/attention2.sh
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
cd benchmarks
timeout 90 python3 attention_profile.py accuracy --out $OUT/accuracy.json 2>&1 | tail -16
timeout ${BENCH_TIMEOUT:-330} python3 attention.py --cases ${CASES:-wan13b,8k,wan14b} --out $OUT/attention.json 2>&1 \
    | tee $OUT/attention.log | grep -v "^20[0-9][0-9]-" | cut -c1-200 | tail -40
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for kern in dense int8 sparse; do
  timeout 60 $NCU --clock-control none -k regex:"_attn|_sparse" -c 1 --section SpeedOfLight \
      --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy \
      python3 attention_profile.py once $kern --best $OUT/attention_best.json > $OUT/ncu_$kern.txt 2>&1
  grep -E "Duration|Throughput|Pipe|Issue Slots|Registers|Achieved Occupancy|Stall" $OUT/ncu_$kern.txt | head -14
done
