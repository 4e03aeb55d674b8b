"""Ulysses sequence parallelism for the Wan DiT (DeepSpeed-Ulysses, as in xDiT / USP).

Every rank of a Ulysses group of P ranks holds a contiguous 1/P of the L = f*h*w video tokens
(in (frame, row, column) order) through the whole block stack. Self-attention is the only place
tokens meet: q, k, v (after qk-norm and rope, both per token) go through one all-to-all that
gathers the sequence and scatters the heads, `vdrt.ops.attention` runs on (B, L, N/P, K), and a
second all-to-all brings the result back to (B, L/P, N, K). Cross-attention (text and image
tokens are replicated), the FFN, the modulations and the head stay on the local shard; the rope
tables are sliced to the shard. The head's output (B, L/P, pt*ph*pw*C) is all-gathered, which
moves out_channels*4 numbers per token instead of D.

The forward reuses WanModel's submodules and mirrors `WanModel.forward` / `WanBlock.forward` /
`WanSelfAttention.forward` (wan.py and wan_blocks.py are not edited); tests/parallel/test_ulysses.py
checks it against the model on 1, 2 and 4 ranks, so a change there that this file misses shows up
as a parity failure.

Alphabet: B batch, L tokens, P Ulysses ranks, N heads, K head dim, D model dim, T text tokens.
"""
from __future__ import annotations

import torch

from vdrt import ops
from vdrt.ops import apply_rope
from vdrt.parallel.comm import all_gather_cat, group_size, heads_to_seq, seq_to_heads, shard
from vdrt.parallel.mesh import check_sequence


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group) -> torch.Tensor:
    """(B, L/P, N, K) x3 -> (B, L/P, N, K): full-sequence attention of this rank's tokens, N/P heads per rank."""
    qkv = seq_to_heads(torch.stack([q, k, v]), group)  # (3, B, L/P, N, K) -> (3, B, L, N/P, K)
    out = ops.attention(*qkv.unbind(0))  # (B, L, N/P, K)
    return heads_to_seq(out, group)


def self_attention(attn, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, group) -> torch.Tensor:
    """WanSelfAttention on a shard: (B, L/P, D), (L/P, K/2) x2 -> (B, L/P, D).

    The qk-norm and the rope run unfused here (the module's RMSNorm, then the table form of
    `ops.rope_qk_norm`): the fused kernel derives positions from a whole (f, h, w) grid starting
    at token 0, and a shard starts mid-grid.
    """
    q = apply_rope(attn.heads(attn.norm_q(attn.q(x))), cos, sin)
    k = apply_rope(attn.heads(attn.norm_k(attn.k(x))), cos, sin)
    return attn.o(ulysses_attention(q, k, attn.heads(attn.v(x)), group).flatten(2))


def block_forward(block, x, e0, context, image, cos, sin, group) -> torch.Tensor:
    """WanBlock.forward with Ulysses self-attention: (B, L/P, D) -> (B, L/P, D)."""
    shift, scale, gate, c_shift, c_scale, c_gate = (block.modulation + e0.float()).chunk(6, dim=1)
    y = self_attention(block.self_attn, ops.adaln_modulate(x, shift, scale, block.eps), cos, sin, group)
    x = (x.float() + y * gate).to(x.dtype)
    x = x + block.cross_attn(block.norm3(x), context, image)
    y = block.ffn(ops.adaln_modulate(x, c_shift, c_scale, block.eps))
    return (x.float() + y.float() * c_gate).to(x.dtype)


def wan_forward(model, group, latents, timestep, context, cond=None, image_embeds=None) -> torch.Tensor:
    """WanModel.forward with the token sequence split over `group`; the same output on every rank.

    (B, C, F, H, W), (B,), (B, T, text_dim)[, (B, Cc, F, H, W), (B, I, image_dim)] -> (B, C_out, F, H, W).
    """
    model._check_inputs(latents, cond, image_embeds)
    grid = _grid(model.config, latents)
    check_sequence(grid, group_size(group))
    x = latents if cond is None else torch.cat([latents, cond], dim=1)
    x = shard(model.patch_embedding(x), group, dim=1)  # (B, C+Cc, F, H, W) -> (B, L, D) -> (B, L/P, D)
    temb, e0 = model._time(timestep, context.dtype)  # (B, D), (B, 6, D)
    context = model.text_embedding(context)  # (B, T, text_dim) -> (B, T, D)
    image = model.img_emb(image_embeds) if image_embeds is not None else None
    cos, sin = (shard(t, group, dim=0) for t in model.rope(*grid))  # (L, K/2) -> (L/P, K/2) x2
    for block in model.blocks:
        x = block_forward(block, x, e0, context, image, cos, sin, group)
    x = all_gather_cat(model.head(x, temb), group, dim=1)  # (B, L/P, pt*ph*pw*C) -> (B, L, pt*ph*pw*C)
    return model._unpatchify(x, *grid)


def _grid(config, latents: torch.Tensor) -> tuple[int, int, int]:
    """(B, C, F, H, W) -> the (f, h, w) patch grid."""
    return tuple(n // p for n, p in zip(latents.shape[2:], config.patch_size))
