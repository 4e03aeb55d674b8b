"""`torch.export` of a build target, and the shape ranges the exported program really accepts.

The target's wrapper takes the engine inputs positionally, in manifest order. vdrt models are
exported with explicit `Dim`s (a model that is not export-friendly fails loudly); the generic
diffusers path falls back to `Dim.AUTO` ranges, because some diffusers modules trip spurious
guards (SVD's UNet: `s*Min(128, 128*s) == 128*s`) and others specialize a dim (SVD's batch);
AUTO also narrows size-1 minimums to 2 (0/1 specialization), so that path tries explicit Dims
first. Either way the ranges are read back from the exported program and the profile is narrowed to them,
so the manifest never promises a shape the compiled code cannot take.
"""
from __future__ import annotations

import logging

import torch
from torch.overrides import TorchFunctionMode

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


def export_program(target, example: tuple):
    """torch.export the target. auto_dims: False = explicit Dims, True = Dim.AUTO, None = explicit, else AUTO."""
    if target.auto_dims is None:
        try:
            return _export(target, example, auto=False)
        except ConfigError as e:
            log.warning("explicit Dims failed (%s); retrying with Dim.AUTO ranges", str(e).splitlines()[0][:200])
    return _export(target, example, auto=target.auto_dims is not False)


def _export(target, example: tuple, auto: bool):
    from vdrt.export.shapes import export_dims

    dims = export_dims(target.inputs, target.profile, auto=auto)
    with torch.no_grad(), ExpandRepeatInterleave():
        try:
            return torch.export.export(target.wrapper, example, dynamic_shapes=dims, strict=False)
        except Exception as e:  # torch raises many types (UserError, GuardOnDataDependent...); name the build step
            if type(e).__name__ in ("UserError", "ConstraintViolationError"):
                raise ConfigError(f"torch.export cannot make this model dynamic over the profile: {e}") from e
            raise


def exported_ranges(ep, inputs: list[dict]) -> dict[str, tuple[int, int]]:
    """{dim: (lo, hi)} that the exported program accepts, from its placeholders' symbolic sizes."""
    user = set(ep.graph_signature.user_inputs)
    nodes = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user]
    ranges: dict[str, tuple[int, int]] = {}
    for spec, node in zip(inputs, nodes):
        for axis, d in enumerate(spec["shape"]):
            if isinstance(d, str):
                lo, hi = _size_range(ep, node.meta["val"].shape[axis])
                old = ranges.get(d, (lo, hi))
                ranges[d] = (max(lo, old[0]), min(hi, old[1]))
    return ranges


def _size_range(ep, size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    expr = size.node.expr
    if expr.is_number:
        return int(expr), int(expr)
    vr = ep.range_constraints.get(expr)
    if vr is None:
        return 1, 2**31 - 1  # a derived size the program does not bound by itself: trust the profile
    return int(vr.lower), int(min(vr.upper, 2**31 - 1))


def narrow_profile(target, ep):
    """The target's profile intersected with what `ep` accepts (logged when narrowed)."""
    prof = target.profile
    for dim, (lo, hi) in exported_ranges(ep, target.inputs).items():
        r = prof[dim]
        if lo > r.max or hi < r.min:
            raise ConfigError(f"torch.export fixed {dim} to [{lo}, {hi}], outside the requested profile "
                              f"[{r.min}, {r.max}]; build with {dim} in that range")
        if lo > r.min or hi < r.max:
            log.warning("export narrowed %s from [%d, %d] to [%d, %d] (the model specializes it)", dim, r.min,
                        r.max, max(lo, r.min), min(hi, r.max))
            prof = prof.narrowed(dim, lo, hi)
    return prof


class ExpandRepeatInterleave(TorchFunctionMode):
    """While tracing: `x.repeat_interleave(int, dim)` as unsqueeze + expand + reshape (same values).

    The ONNX exporter's own translation builds a wrong Expand shape when the repeat count is
    symbolic (SVD repeats its embeddings by the dynamic frame count); the expanded form exports
    correctly for every backend.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.repeat_interleave, torch.repeat_interleave):
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            if repeats is not None and not isinstance(repeats, torch.Tensor):
                return repeat_interleave(*args, **kwargs)
        return func(*args, **kwargs)


def repeat_interleave(x, repeats, dim=None, output_size=None):
    """torch.repeat_interleave(x, int, dim) as unsqueeze + expand + reshape."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    dim = dim % x.dim()
    shape = list(x.shape)
    y = x.unsqueeze(dim + 1).expand(*shape[:dim + 1], repeats, *shape[dim + 1:])
    return y.reshape(*shape[:dim], shape[dim] * repeats, *shape[dim + 1:])
