"""The swappable ops every model routes through, and the registry that picks an implementation.

Each op has a pure-torch implementation named "torch" that is always available. Kernels
register faster implementations with `register(op, name, fn, supports=...)`; `supports`
looks at the arguments (device, dtype, shape) and says whether the kernel can take them.
The choice per op is "auto" (for GPU tensors: the first registered implementation, newest
first, whose `supports` accepts the call, else "torch"; CPU tensors always take "torch") or a forced name, set with `set_choice` or the
`use(...)` context manager, and from the CLI (`--attention sdpa|vdrt|vdrt-int8`).

Layouts in vdrt's one shape alphabet (docs/architecture.md): B batch, L tokens, S spatial positions per frame,
F frames, N heads, K head dim, C channels.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

OPS = ("attention", "temporal_attention", "linear", "layer_norm", "rms_norm", "adaln_modulate", "rope_qk_norm",
       "rope_attention")


@dataclass(frozen=True)
class Impl:
    name: str
    fn: Callable
    supports: Callable[..., bool] | None = None
    emulate: Callable | None = None  # lossy kernels: the same numerics in torch, for CPU tensors


_IMPLS: dict[str, list[Impl]] = {op: [] for op in OPS}
_CHOICE: dict[str, str] = {op: "auto" for op in OPS}
_WARNED: set[tuple[str, str]] = set()


def register(op: str, name: str, fn: Callable, supports: Callable[..., bool] | None = None,
             emulate: Callable | None = None) -> None:
    """Add (or replace) implementation `name` of `op`; later registrations are tried first.

    `emulate`: for a lossy kernel, a torch function with the kernel's numerics (its quantization),
    run when the choice is forced on CPU tensors, so the quality cost can be measured without a GPU."""
    _check_op(op)
    _IMPLS[op] = [Impl(name, fn, supports, emulate)] + [i for i in _IMPLS[op] if i.name != name]


def available(op: str) -> list[str]:
    """Names that can be chosen for `op` ("auto" and "torch" always are; kernels are loaded first)."""
    _check_op(op)
    _ensure_kernels_loaded(force=True)
    names = ["auto", "torch"] + [i.name for i in _IMPLS[op] if i.name != "torch"]
    if op == "attention":  # the sparse implementations have a torch path of their own
        names += [n for n in SPARSE_IMPLS if n not in names]
    return names


ALIASES = {"sdpa": "torch"}  # the torch attention ops are F.scaled_dot_product_attention


def set_choice(op: str, name: str) -> None:
    """Force `op` to implementation `name` ("auto" restores automatic choice; "sdpa" = "torch")."""
    _check_op(op)
    name = ALIASES.get(name, name)
    _ensure_kernels_loaded(force=True)
    if name not in available(op):
        raise ConfigError(f"unknown implementation {name!r} for op {op!r}; choose one of {available(op)}")
    _CHOICE[op] = name


def get_choice(op: str) -> str:
    _check_op(op)
    return _CHOICE[op]


@contextlib.contextmanager
def use(sparse=None, **choices: str) -> Iterator[None]:
    """Temporarily force implementations, e.g. `with vdrt.ops.use(attention="torch"):`; `sparse=` a
    `vdrt.sparse.SparseConfig` for the sparse attention implementations."""
    old, old_sparse = dict(_CHOICE), _SPARSE[0]
    try:
        for op, name in choices.items():
            set_choice(op, name)
        if sparse is not None:
            set_sparse(sparse)
        yield
    finally:
        _CHOICE.update(old)
        _SPARSE[0] = old_sparse


# ---------------------------------------------------------------- sparse attention

SPARSE_IMPLS = {"vdrt-sparse": "auto", "vdrt-sparse-int8": "vdrt-int8"}  # -> the dense choice without a plan
_SPARSE: list = [None]  # the active vdrt.sparse.SparseConfig (None: its defaults)


def set_sparse(config) -> None:
    """The window / density / tile of the sparse attention implementations (a SparseConfig)."""
    from vdrt.sparse import SparseConfig

    if not isinstance(config, SparseConfig):
        raise ConfigError(f"sparse= takes a vdrt.sparse.SparseConfig, got {type(config).__name__}")
    _SPARSE[0] = config


def sparse_config():
    """The SparseConfig to plan with when the attention choice is a sparse implementation, else None.

    Models with a 3D token grid ask this once per forward: a config means "reorder the tokens into
    tiles and pass `plan=` to self-attention"."""
    if _CHOICE["attention"] not in SPARSE_IMPLS:
        return None
    from vdrt.sparse import SparseConfig

    return _SPARSE[0] or SparseConfig()


_DEBUG = [os.environ.get("VDRT_DEBUG") == "1"]


def set_debug(on: bool) -> None:
    """Debug mode: ops check their inputs for NaN/Inf (one reduction per tensor per call)."""
    _DEBUG[0] = bool(on)


def _check_finite(**tensors) -> None:
    from vdrt.errors import SamplingError

    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise SamplingError(f"attention input {name} {tuple(t.shape)} holds NaN or Inf (debug mode); "
                                "look at the layer before it, or run in float32")


def state() -> tuple:
    """Everything that decides which implementation runs: the choices and the sparse config. A CUDA
    graph captured under one state must not be replayed under another (per-step attention schedules)."""
    return tuple(sorted(_CHOICE.items())), _SPARSE[0]


def _check_op(op: str) -> None:
    if op not in _IMPLS:
        raise ConfigError(f"unknown op {op!r}; ops are {list(OPS)}")


_KERNELS_LOADED = False


def _ensure_kernels_loaded(force: bool = False) -> None:
    """Import vdrt.kernels once so its implementations register themselves (optional).

    Without a GPU (and without TRITON_INTERPRET) the automatic path skips the import, so
    CPU-only runs do not pay for importing triton; forcing a choice always loads them.
    """
    global _KERNELS_LOADED
    if _KERNELS_LOADED:
        return
    if not force and not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        return
    _KERNELS_LOADED = True
    try:
        import vdrt.kernels  # noqa: F401  (registers kernels where their toolchain exists)
    except ImportError as e:
        log.debug("vdrt.kernels not loaded: %s", e)


def _dispatch(op: str, torch_fn: Callable, *args, **kwargs):
    choice = _CHOICE[op]
    if choice == "torch" or (choice == "auto" and not _on_gpu(args)):
        return torch_fn(*args, **kwargs)  # automatic choice: kernels are for GPU tensors only
    _ensure_kernels_loaded()
    if choice != "auto":
        impl = next(i for i in _IMPLS[op] if i.name == choice)
        if impl.supports is None or impl.supports(*args, **kwargs):
            return impl.fn(*args, **kwargs)
        if impl.emulate is not None and not _on_gpu(args):
            return impl.emulate(*args, **kwargs)
        if op == "attention" and _on_gpu(args):  # a forced kernel that cannot take these inputs: refuse
            q = args[0]
            raise ConfigError(f"attention implementation {choice!r} cannot take q of shape {tuple(q.shape)} "
                              f"{q.dtype} (its kernels take head dims 64 and 128 in bf16/fp16 on sm80+); "
                              "use --attention auto or sdpa")
        _warn_fallback(op, choice)
        return torch_fn(*args, **kwargs)
    for impl in _IMPLS[op]:
        if impl.supports is None or impl.supports(*args, **kwargs):
            return impl.fn(*args, **kwargs)
    return torch_fn(*args, **kwargs)


def _on_gpu(args) -> bool:
    """Whether the call's first tensor argument lives on a GPU."""
    t = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return t is not None and t.device.type != "cpu"


def _warn_fallback(op: str, name: str) -> None:
    if (op, name) not in _WARNED:
        _WARNED.add((op, name))
        log.warning("%s: implementation %r cannot take these inputs; using the torch fallback", op, name)


# ---------------------------------------------------------------- torch references


def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, Lq, N, K), (B, Lk, N, K) x2 -> (B, Lq, N, K); softmax(q k^T / sqrt(K)) v."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def temporal_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, F, S, N, K) x3 -> (B, F, S, N, K); attention over F for every (B, S, N)."""
    b, f, s, h, d = q.shape

    def seqs(x):  # (B, F, S, N, K) -> (B*S, N, F, K)
        return x.permute(0, 2, 3, 1, 4).reshape(b * s, h, f, d)

    out = F.scaled_dot_product_attention(seqs(q), seqs(k), seqs(v))
    return out.reshape(b, s, h, f, d).permute(0, 3, 1, 2, 4)


class QuantizedActivation(NamedTuple):
    """A linear's input quantized by the kernel that produced it (adaLN, GELU): x ~ codes * scale.

    codes (..., K) float8_e4m3fn, scale (..., 1) fp32 (one per token), dtype: the activation's own dtype,
    which the linear's output takes. `ops.linear` accepts it in place of x: the fp8 implementations
    multiply the codes as they are (no second quantization pass); any other dequantizes first."""

    codes: torch.Tensor
    scale: torch.Tensor
    dtype: torch.dtype

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def dequantize(self) -> torch.Tensor:
        return (self.codes.float() * self.scale).to(self.dtype)


def linear_torch(x, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(..., K) or a QuantizedActivation, (N, K), (N,) -> (..., N)."""
    if isinstance(x, QuantizedActivation):
        x = x.dequantize()
    return F.linear(x, weight, bias)


def layer_norm_torch(x, weight=None, bias=None, eps: float = 1e-6):
    """LayerNorm over the last dim, computed in fp32 and cast back (as Wan's FP32LayerNorm)."""
    w = weight.float() if weight is not None else None
    b = bias.float() if bias is not None else None
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps).to(x.dtype)


def rms_norm_torch(x, weight=None, eps: float = 1e-6):
    """RMSNorm over the last dim (torch's fused F.rms_norm, fp32 statistics), as diffusers' torch.nn.RMSNorm."""
    w = weight.to(x.dtype) if weight is not None else None
    return F.rms_norm(x, (x.shape[-1],), w, eps)


def adaln_modulate_torch(x, shift, scale, eps: float = 1e-6, weight=None, bias=None):
    """LayerNorm(x) * (1 + scale) + shift, in fp32, cast back: (B, L, C), (B, L|1, C) x2 -> (B, L, C)."""
    w = weight.float() if weight is not None else None
    b = bias.float() if bias is not None else None
    y = F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)
    return (y * (1 + scale.float()) + shift.float()).to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]): (B, L, N, K), (L, K/2) x2 -> (B, L, N, K)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, N, K/2) each
    c, s = cos[None, :, None], sin[None, :, None]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)
    return out.flatten(-2).to(x.dtype)


def rope_qk_norm_torch(x, weight, eps: float, cos, sin, num_heads: int, grid, pos=None):
    """RMSNorm over all heads, split heads, 3D rope: (B, L, N*K) -> (B, L, N, K).

    `cos`/`sin` (L, K/2) are Wan's tables for the patch grid `grid` = (f, h, w), theta 10000, one row
    per token in the tokens' order (a kernel may compute them from `grid` instead of reading them,
    and from `pos` (L,), each token's raster index, when the tokens are reordered).
    """
    y = rms_norm_torch(x, weight, eps) if weight is not None else x
    return apply_rope(y.unflatten(-1, (num_heads, -1)), cos, sin)


# ---------------------------------------------------------------- the ops models call


def attention(q, k, v, plan=None):
    """(B, Lq, N, K), (B, Lk, N, K), (B, Lk, N, K) -> (B, Lq, N, K).

    `plan` (a `vdrt.sparse.Plan`, tokens in its tile order) is used by the sparse implementations;
    every other implementation attends to all keys (order-independent, so the result is the same).
    NaN/Inf in q, k or v propagate to the output (the sampling loop then stops, naming the step);
    with `set_debug(True)` (or VDRT_DEBUG=1) they are refused here, naming the tensor."""
    if _DEBUG[0]:
        _check_finite(q=q, k=k, v=v)
    choice = _CHOICE["attention"]
    if choice in SPARSE_IMPLS:
        if plan is not None and not plan.dense:
            return _sparse_attention(choice, q, k, v, plan)
        return _dispatch_as("attention", SPARSE_IMPLS[choice], attention_torch, q, k, v)
    return _dispatch("attention", attention_torch, q, k, v)


def _sparse_attention(name: str, q, k, v, plan):
    from vdrt import sparse

    if _on_gpu((q,)):
        _ensure_kernels_loaded()
    else:
        _ensure_kernels_loaded(force=True)  # for the emulation of a lossy kernel's numerics
    impl = next((i for i in _IMPLS["attention"] if i.name == name), None)
    if impl is not None and impl.supports(q, k, v, plan):
        return impl.fn(q, k, v, plan)
    if impl is not None and impl.emulate is not None and not _on_gpu((q,)):
        return impl.emulate(q, k, v, plan)
    if _on_gpu((q,)):
        _warn_fallback("attention", name)
    return sparse.attention_torch(q, k, v, plan)  # the same block-sparse function, in torch


def _dispatch_as(op: str, name: str, torch_fn: Callable, *args, **kwargs):
    """_dispatch with `name` as the choice (without changing the user's setting)."""
    old = _CHOICE[op]
    _CHOICE[op] = name
    try:
        return _dispatch(op, torch_fn, *args, **kwargs)
    finally:
        _CHOICE[op] = old


FUSED_QK_QUANT = ("vdrt-int8", "vdrt-sparse-int8")  # attention choices whose q/k the rope kernel quantises


def rope_attention(xq, xk, v, wq, wk, eps: float, cos, sin, num_heads: int, grid, pos=None, plan=None):
    """Self-attention from the q/k linears' outputs: (B, L, N*K) x2, (B, L, N, K) -> (B, L, N, K).

    `rope_qk_norm` on q and k, then `attention`. Under the 8-bit attention choices (FUSED_QK_QUANT) the
    implementation of the same name of op "rope_attention" runs instead: the rope kernel writes q and k as
    int8 codes for the attention kernel (on CPU tensors: its numerics emulated). Forcing
    `rope_attention="torch"` keeps the unfused path under any choice."""
    impl = _fused_impl(plan, xq)
    if impl is not None:
        if _DEBUG[0]:
            _check_finite(q=xq, k=xk, v=v)
        args = (xq, xk, v, wq, wk, eps, cos, sin, num_heads, grid)
        if impl.supports(*args, pos=pos, plan=plan):
            return impl.fn(*args, pos=pos, plan=plan)
        if not _on_gpu(args):
            return impl.emulate(*args, pos=pos, plan=plan)
    q = rope_qk_norm(xq, wq, eps, cos, sin, num_heads, grid, pos)
    k = rope_qk_norm(xk, wk, eps, cos, sin, num_heads, grid, pos)
    return attention(q, k, v, plan=plan)


def _fused_impl(plan, x) -> Impl | None:
    """The fused rope + 8-bit attention implementation the current choices name, else None."""
    name = _CHOICE["attention"]
    if _CHOICE["rope_attention"] == "torch" or name not in FUSED_QK_QUANT:
        return None
    if name == "vdrt-sparse-int8" and (plan is None or plan.dense):
        name = SPARSE_IMPLS[name]  # no plan: the dense 8-bit choice, as `attention` does
    _ensure_kernels_loaded(force=not _on_gpu((x,)))
    return next((i for i in _IMPLS["rope_attention"] if i.name == name), None)


def temporal_attention(q, k, v):
    """(B, F, S, N, K) x3 -> (B, F, S, N, K); attention over frames per spatial position."""
    return _dispatch("temporal_attention", temporal_attention_torch, q, k, v)


def linear(x, weight, bias=None):
    """(..., K) or a QuantizedActivation of (..., K), (N, K), (N,) | None -> (..., N)."""
    return _dispatch("linear", linear_torch, x, weight, bias)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-6):
    return _dispatch("layer_norm", layer_norm_torch, x, weight, bias, eps)


def rms_norm(x, weight=None, eps: float = 1e-6):
    return _dispatch("rms_norm", rms_norm_torch, x, weight, eps)


def adaln_modulate(x, shift, scale, eps: float = 1e-6, weight=None, bias=None):
    return _dispatch("adaln_modulate", adaln_modulate_torch, x, shift, scale, eps, weight, bias)


def rope_qk_norm(x, weight, eps: float, cos, sin, num_heads: int, grid, pos=None):
    """(B, L, N*K) -> (B, L, N, K): QK RMSNorm across heads fused with Wan's 3D rope; `pos` (L,) the
    tokens' raster indices when they are not in raster order (cos/sin rows then follow the tokens)."""
    extra = {} if pos is None else {"pos": pos}
    return _dispatch("rope_qk_norm", rope_qk_norm_torch, x, weight, eps, cos, sin, num_heads, grid, **extra)
