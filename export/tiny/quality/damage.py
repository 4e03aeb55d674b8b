"""Known damage, to prove the oracle sees it: int4 weights and attention restricted to a too-small window.

    den = int4_weights(den, group=32)             # in place: every Linear weight fake-quantised to int4
    name = register_window_attention(frames=0)    # a `vdrt.ops` implementation; CardGenerator(ops={...: name})

`int4_weights`: symmetric int4 (levels -8..7) with one scale per `group` consecutive input
weights of each output row (absmax / 7), rounded to nearest, stored back in the weight's dtype
(fake quantisation: the arithmetic stays float, the information is int4). Embeddings of the text
encoder are untouched; the denoiser's patch embedding is quantised like any linear.
`register_window_attention`: stands in for a sparse-attention kernel with too small a window:
temporal attention (factorized models, (B, F, S, H, D)) limited to |frame i - frame j| <= frames,
and full attention (Wan, (B, L, H, D), tokens in frame-major order) limited to keys within
`tokens` positions. Registered as `vdrt.ops` implementations "window-f{frames}" / "window-t{tokens}".
"""
from __future__ import annotations

import torch
from torch import nn


def fake_quant_int4(w: torch.Tensor, group: int = 32) -> torch.Tensor:
    """(O, I) weight -> the same shape, each group of `group` inputs of a row on 16 levels (-8..7) * scale."""
    o, i = w.shape
    pad = (-i) % group
    x = torch.nn.functional.pad(w.float(), (0, pad)).view(o, -1, group)  # (O, G, group)
    scale = (x.abs().amax(-1, keepdim=True) / 7).clamp(min=1e-12)
    q = torch.clamp(torch.round(x / scale), -8, 7) * scale
    return q.view(o, -1)[:, :i].to(w.dtype)


@torch.no_grad()
def int4_weights(model: nn.Module, group: int = 32) -> nn.Module:
    """Fake-quantise every 2D (Linear) weight, and the patch embedding, of `model` in place; returns it."""
    for name, p in model.named_parameters():
        if name.endswith("weight") and p.dim() >= 2:
            flat = p.view(p.shape[0], -1)
            p.copy_(fake_quant_int4(flat, group).view_as(p))
    return model


def _masked_sdpa(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    """(B, N, Lq, D) x3 with a bool (Lq, Lk) mask of allowed pairs."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def window_temporal_attention(frames: int):
    def fn(q, k, v):  # (B, F, S, H, D) -> (B, F, S, H, D)
        f = q.shape[1]
        i = torch.arange(f, device=q.device)
        allowed = (i[:, None] - i[None, :]).abs() <= frames
        t = lambda x: x.permute(0, 2, 3, 1, 4)  # noqa: E731  (B, S, H, F, D)
        return _masked_sdpa(t(q), t(k), t(v), allowed).permute(0, 3, 1, 2, 4)
    return fn


def window_attention(tokens: int):
    def fn(q, k, v):  # (B, L, H, D) -> (B, L, H, D)
        lq, lk = q.shape[1], k.shape[1]
        if lq != lk:  # cross-attention to the text: untouched
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        i = torch.arange(lq, device=q.device)
        allowed = (i[:, None] - i[None, :]).abs() <= tokens
        return _masked_sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), allowed).transpose(1, 2)
    return fn


def register_window_attention(frames: int | None = None, tokens: int | None = None) -> dict[str, str]:
    """Register the windowed implementations asked for; returns the `ops=` choices for CardGenerator."""
    from vdrt import ops

    out = {}
    if frames is not None:
        ops.register("temporal_attention", f"window-f{frames}", window_temporal_attention(frames))
        out["temporal_attention"] = f"window-f{frames}"
    if tokens is not None:
        ops.register("attention", f"window-t{tokens}", window_attention(tokens))
        out["attention"] = f"window-t{tokens}"
    return out
