# Source this on the lent GPU machine: installs the carried wheels (.whl/) and vdrt itself.
# The GPU image has torch/triton/onnx but no diffusers; vdrt is installed non-editable so that
# vdrt.kernels / vdrt.export resolve through setuptools' package-dir mapping.
set -u
# The device machine's copy of .git reported a stale HEAD (ea0899b) on 2026-11-29: pass VDRT_COMMIT=<sha> in the
# run command (git rev-parse --short HEAD here) so the rows name the commit that ran.
export PYTHONUNBUFFERED=1 VDRT_COMMIT=${VDRT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-cache-dir --target /tmp/vdrt_site . >/tmp/vdrt_install.log 2>&1 \
  || { cat /tmp/vdrt_install.log; exit 1; }
export PYTHONPATH=/tmp/vdrt_site:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch, triton, vdrt; print('torch', torch.__version__, 'triton', triton.__version__, 'vdrt', vdrt.__file__)"
