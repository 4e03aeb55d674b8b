"""The TensorRT engine: `model.plan` run with the TensorRT 10 runtime API.

Written against the documented TensorRT 10 Python API and NOT run here: TensorRT's wheels
come only from NVIDIA's index and no machine of this project has them. `tensorrt` is imported
lazily; without it, loading raises MissingDependency-style errors that say how to install it.

Per call: `set_input_shape` + `set_tensor_address` on the (already contiguous, on-device)
torch tensors, the output allocated by torch from `get_tensor_shape`, and `execute_async_v3`
on torch's current stream. With `cuda_graphs=True` each shape bucket gets its own execution
context (so a capture never sees another bucket's shapes) and is captured once after a warm-up
run (TensorRT needs one enqueue per shape before capture). `weight_streaming_budget` (bytes)
sets `weight_streaming_budget_v2` on engines built with weight streaming.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vdrt.engines.base import CompiledEngine
from vdrt.errors import EngineError, VdrtError

log = logging.getLogger(__name__)

ARTIFACT = "model.plan"
INSTALL = ("TensorRT is not installed. NVIDIA publishes its wheels on NVIDIA's own package index: "
           "`pip install tensorrt --extra-index-url https://pypi.nvidia.com` (vdrt needs TensorRT 10; "
           "see NVIDIA's TensorRT installation guide)")


class TensorRTMissing(VdrtError):
    """TensorRT is not importable; the message says how NVIDIA says to install it."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTMissing(INSTALL) from e
    if int(trt.__version__.split(".")[0]) < 10:
        raise TensorRTMissing(f"TensorRT {trt.__version__} is too old: vdrt's TensorRT backend needs TensorRT 10. "
                              + INSTALL)
    return trt


def torch_dtype(trt, dt) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool,
             trt.DataType.INT8: torch.int8, trt.DataType.FP8: torch.float8_e4m3fn}
    if dt not in table:
        raise EngineError(f"TensorRT tensor type {dt} has no torch equivalent here")
    return table[dt]


class TensorRTEngine(CompiledEngine):
    def __init__(self, path, manifest: dict, device: torch.device, cuda_graphs: bool = False,
                 weight_streaming_budget: int | None = None):
        super().__init__(path, manifest, device)
        if self.device.type != "cuda":
            raise EngineError("TensorRT engines run on CUDA devices only")
        self.trt = trt = import_tensorrt()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self.runtime.deserialize_cuda_engine((Path(path) / ARTIFACT).read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}/{ARTIFACT} (TensorRT version or GPU mismatch?)")
        if weight_streaming_budget is not None:
            self.engine.weight_streaming_budget_v2 = int(weight_streaming_budget)
        self.output_name, self.output_dtype = self._io()
        self._contexts: dict = {}
        self.graphs = None
        if cuda_graphs:
            from vdrt.engines.graphs import GraphCache

            self.graphs = GraphCache(self._execute)

    def _io(self) -> tuple[str, torch.dtype]:
        trt, e = self.trt, self.engine
        names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        ins = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(ins) != sorted(self.signature.names) or len(outs) != 1:
            raise EngineError(f"{self.path}/{ARTIFACT} has inputs {ins} and outputs {outs}; the manifest says "
                              f"{self.signature.names} -> 1 output. Rebuild the engine")
        return outs[0], torch_dtype(trt, e.get_tensor_dtype(outs[0]))

    def _context(self, inputs: list[torch.Tensor]):
        key = tuple(tuple(t.shape) for t in inputs) if self.graphs is not None else None
        if key not in self._contexts:
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
            self._contexts[key] = ctx
        return self._contexts[key]

    def _execute(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        ctx = self._context(inputs)
        for name, t in zip(self.signature.names, inputs):
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.output_dtype, device=self.device)
        ctx.set_tensor_address(self.output_name, out.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        return out

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        with torch.cuda.device(self.device):
            return self.graphs(inputs) if self.graphs is not None else self._execute(inputs)


def load(path, manifest: dict, device: torch.device, cuda_graphs: bool = False,
         weight_streaming_budget: int | None = None, **unused) -> TensorRTEngine:
    if unused:
        log.debug("tensorrt engine ignores options %s", sorted(unused))
    return TensorRTEngine(path, manifest, device, cuda_graphs=cuda_graphs,
                          weight_streaming_budget=weight_streaming_budget)
