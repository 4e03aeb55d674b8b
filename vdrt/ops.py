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
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

OPS = ("attention", "temporal_attention", "linear", "layer_norm", "rms_norm", "adaln_modulate", "rope_qk_norm")


@dataclass(frozen=True)
class Impl:
    name: str
    fn: Callable
    supports: Callable[..., bool] | None = None


_IMPLS: dict[str, list[Impl]] = {op: [] for op in OPS}
_CHOICE: dict[str, str] = {op: "auto" for op in OPS}
_WARNED: set[tuple[str, str]] = set()


def register(op: str, name: str, fn: Callable, supports: Callable[..., bool] | None = None) -> None:
    """Add (or replace) implementation `name` of `op`; later registrations are tried first."""
    _check_op(op)
    _IMPLS[op] = [Impl(name, fn, supports)] + [i for i in _IMPLS[op] if i.name != name]


def available(op: str) -> list[str]:
    """Names that can be chosen for `op` ("auto" and "torch" always are)."""
    _check_op(op)
    return ["auto", "torch"] + [i.name for i in _IMPLS[op] if i.name != "torch"]


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
def use(**choices: str) -> Iterator[None]:
    """Temporarily force implementations, e.g. `with vdrt.ops.use(attention="torch"):`."""
    old = dict(_CHOICE)
    try:
        for op, name in choices.items():
            set_choice(op, name)
        yield
    finally:
        _CHOICE.update(old)


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


def linear_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
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


def rope_qk_norm_torch(x, weight, eps: float, cos, sin, num_heads: int, grid):
    """RMSNorm over all heads, split heads, 3D rope: (B, L, N*K) -> (B, L, N, K).

    `cos`/`sin` (L, K/2) are Wan's tables for the patch grid `grid` = (f, h, w), theta 10000
    (a kernel may compute them from `grid` instead of reading them).
    """
    y = rms_norm_torch(x, weight, eps) if weight is not None else x
    return apply_rope(y.unflatten(-1, (num_heads, -1)), cos, sin)


# ---------------------------------------------------------------- the ops models call


def attention(q, k, v):
    """(B, Lq, N, K), (B, Lk, N, K), (B, Lk, N, K) -> (B, Lq, N, K)."""
    return _dispatch("attention", attention_torch, q, k, v)


def temporal_attention(q, k, v):
    """(B, F, S, N, K) x3 -> (B, F, S, N, K); attention over frames per spatial position."""
    return _dispatch("temporal_attention", temporal_attention_torch, q, k, v)


def linear(x, weight, bias=None):
    return _dispatch("linear", linear_torch, x, weight, bias)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-6):
    return _dispatch("layer_norm", layer_norm_torch, x, weight, bias, eps)


def rms_norm(x, weight=None, eps: float = 1e-6):
    return _dispatch("rms_norm", rms_norm_torch, x, weight, eps)


def adaln_modulate(x, shift, scale, eps: float = 1e-6, weight=None, bias=None):
    return _dispatch("adaln_modulate", adaln_modulate_torch, x, shift, scale, eps, weight, bias)


def rope_qk_norm(x, weight, eps: float, cos, sin, num_heads: int, grid):
    """(B, L, N*K) -> (B, L, N, K): QK RMSNorm across heads fused with Wan's 3D rope."""
    return _dispatch("rope_qk_norm", rope_qk_norm_torch, x, weight, eps, cos, sin, num_heads, grid)
