# The session's last GPU call: Wan-1.3B step rows (diffusers eager + regional compile, vdrt default, graphs,
# torch.compile, the lossy options), Wan-14B 720p (dense and sparse), then the tiny students' distillation
# and the quality oracle. usage: bash benchmarks/device/final.sh   (carry .whl and .carry/world)
source benchmarks/device/setup.sh
export TRITON_INTERPRET=0
cd benchmarks
timeout 200 python3 wan_step.py --compile --out $OUT/wan_step_h200.json 2>&1 | grep -v "^INFO\|^W1\|^I1" | tail -4
timeout 110 python3 wan_step.py --preset wan2.1-t2v-14b --height 90 --width 160 --no-diffusers --lossy-only \
    --reps-ms 1 --only "sparse 8-bit attention 25% + fp8" --out /tmp/w14.json 2>&1 | tail -2
python3 - <<'PY'
import json, os
out = os.environ["OUT"] + "/wan_step_h200.json"
rows = json.load(open(out)) if os.path.exists(out) else []
rows += json.load(open("/tmp/w14.json")) if os.path.exists("/tmp/w14.json") else []
json.dump(rows, open(out, "w"), indent=1)
for r in rows:
    print(f"{r['case'][:22]:22s} {r['impl'][:52]:52s} {r['ms']} rel={r.get('rel_err_vs_diffusers')} {r.get('error') or ''}"[:170])
PY
cd ..
FROM=.carry/world MINUTES=${DMIN:-1.2} CLIPS=${CLIPS:-48} bash benchmarks/device/distill_world.sh 2>&1 | tail -30
rm -f $OUT/sheet_*.png
