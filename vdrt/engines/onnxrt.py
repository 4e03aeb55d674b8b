"""The ONNX engine: `model.onnx` (+ `weights.bin`) run by onnxruntime through IOBinding.

Inputs and the output are bound by pointer to torch tensors (no copies through numpy), on the
CPU or, when onnxruntime-gpu's CUDAExecutionProvider is present and the engine runs on a CUDA
device, on the GPU, with torch's current stream as the provider's compute stream. The output
is allocated by torch with the shape the manifest derives from the input shapes.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vdrt.engines.base import CompiledEngine
from vdrt.engines.manifest import DTYPES
from vdrt.errors import EngineError, require

log = logging.getLogger(__name__)

ARTIFACT = "model.onnx"
# torch dtype -> onnx TensorProto element type (what IOBinding takes for bf16 too)
ONNX_TYPES = {torch.float32: 1, torch.float16: 10, torch.bfloat16: 16, torch.int64: 7, torch.int32: 6,
              torch.bool: 9}


class OnnxEngine(CompiledEngine):
    def __init__(self, path, manifest: dict, device: torch.device, providers=None, threads: int | None = None):
        super().__init__(path, manifest, device)
        ort = require("onnxruntime")
        self.providers = providers or self._providers(ort)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: its warnings (e.g. nodes placed on the CPU provider) are noise here
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(Path(path) / ARTIFACT), sess_options=opts,
                                                providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types; say which engine failed
            raise EngineError(f"onnxruntime cannot load {path}/{ARTIFACT}: {e}") from e
        self._check_io()
        self._ort_device = "cuda" if self.device.type == "cuda" else "cpu"

    def _providers(self, ort) -> list:
        if self.device.type != "cuda":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError(f"onnxruntime here has no CUDAExecutionProvider ({ort.get_available_providers()}); "
                              "install onnxruntime-gpu, or load the engine with device='cpu'")
        stream = torch.cuda.current_stream(self.device).cuda_stream
        return [("CUDAExecutionProvider", {"device_id": self.device.index or 0,
                                           "user_compute_stream": str(stream)}), "CPUExecutionProvider"]

    def _check_io(self) -> None:
        have = [i.name for i in self.session.get_inputs()]
        if have != self.signature.names:
            raise EngineError(f"{self.path}/{ARTIFACT} has inputs {have}, the manifest says {self.signature.names}; "
                              "rebuild the engine")

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        spec = self.signature.outputs[0]
        out = torch.empty(self.signature.output_shape(inputs), dtype=DTYPES[spec["dtype"]], device=self.device)
        binding = self.session.io_binding()
        index = self.device.index or 0
        for name, t in zip(self.signature.names, inputs):
            binding.bind_input(name, self._ort_device, index, ONNX_TYPES[t.dtype], tuple(t.shape), t.data_ptr())
        binding.bind_output(self.session.get_outputs()[0].name, self._ort_device, index, ONNX_TYPES[out.dtype],
                            tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(binding)
        return out


def load(path, manifest: dict, device: torch.device, providers=None, threads: int | None = None,
         **unused) -> OnnxEngine:
    if unused:
        log.debug("onnx engine ignores options %s", sorted(unused))
    return OnnxEngine(path, manifest, device, providers=providers, threads=threads)
