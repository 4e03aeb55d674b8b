# Wan2.1 VAE on the lent GPU (480p x 81 frames, real config, random weights): our decode paths and
# diffusers' (carry its wheel in .whl/), PSNR against our fp32 decode of a rendered clip's latents.
# usage: bash benchmarks/device/vae.sh [bench] [layers] [tests] [more] [aoti]      (default: bench)
#   bench  (~3-4 min) decode: bf16 eager variants, + compile of the chunk step; encode; diffusers peers
#   layers (~1 min)   every distinct conv of one chunk alone (TFLOP/s), top CUDA kernels of one decode
#   tests  (~3 min)   -m gpu tests of the VAE (bf16 paths >= 40 dB on a real-size config, compile modes)
#   more   (~4 min)   chunk 10, compile="regions", compile of 10-frame chunks
#   aoti   (~5 min)   the decoder exported with AOTInductor (an engine dir's vae/), loaded back, timed
# Writes $OUT/vae_480p*.json (rows) and .log files.
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
PRELOAD=/lib/x86_64-linux-gnu/libstdc++.so.6
B="python3 benchmarks/vae_decode.py --size ${VAE_SIZE:-480p} --reps 2"  # VAE_SIZE=tiny: a CPU smoke run
show() { grep -v "^20[0-9][0-9]-" | tail -${1:-40}; }
for stage in ${@:-bench}; do
  case $stage in
    bench) timeout 500 $B --stages decode,encode,peers --out $OUT/vae_480p.json 2>&1 | tee $OUT/vae_480p.log | show ;;
    layers) timeout 240 $B --stages layers,profile --out $OUT/vae_480p_layers.json 2>&1 \
              | tee $OUT/vae_480p_layers.log | show 60 ;;
    tests) (cd tests && LD_PRELOAD=$PRELOAD timeout 400 python3 -m pytest -q -m gpu -p no:cacheprovider \
              models/test_wan_vae.py -rs 2>&1 | tee $OUT/vae_gpu_tests.log | tail -20) ;;
    more) timeout 500 $B --stages decode --decode \
              ours-bf16-cl-sub-c10,ours-bf16-cl-sub-regions,ours-bf16-cl-sub-regions-c10,ours-bf16-cl-sub-compile-c10 \
              --out $OUT/vae_480p_more.json 2>&1 | tee $OUT/vae_480p_more.log | show ;;
    aoti) LD_PRELOAD=$PRELOAD timeout 560 $B --stages aoti --out $OUT/vae_480p_aoti.json 2>&1 \
              | tee $OUT/vae_480p_aoti.log | show ;;
    *) echo "unknown stage $stage (bench layers tests more aoti)"; exit 2 ;;
  esac
done
