"""The collectives the parallel engine needs: all-to-all between sequence and heads, all-gather on a dim.

Alphabet: S stacked tensors (q, k, v), B batch, L tokens, P ranks of the group, N heads, K head dim.
Rank r of a group holds tokens [r*L/P, (r+1)*L/P) and, after `seq_to_heads`, heads [r*N/P, (r+1)*N/P).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def group_size(group) -> int:
    return 1 if group is None else dist.get_world_size(group)


def group_rank(group) -> int:
    return 0 if group is None else dist.get_rank(group)


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Chunk i of dim 0 goes to group rank i; chunk j of the result came from group rank j."""
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def seq_to_heads(x: torch.Tensor, group) -> torch.Tensor:
    """(S, B, L/P, N, K) -> (S, B, L, N/P, K): gather the sequence, scatter the heads."""
    p = group_size(group)
    if p == 1:
        return x
    s, b, ls, n, k = x.shape
    x = x.reshape(s, b, ls, p, n // p, k).permute(3, 0, 1, 2, 4, 5).contiguous()  # (P, S, B, L/P, N/P, K)
    x = _all_to_all(x, group)  # chunk j: rank j's tokens, my heads
    return x.permute(1, 2, 0, 3, 4, 5).reshape(s, b, p * ls, n // p, k)


def heads_to_seq(x: torch.Tensor, group) -> torch.Tensor:
    """(B, L, N/P, K) -> (B, L/P, N, K): the inverse of `seq_to_heads` for one tensor."""
    p = group_size(group)
    if p == 1:
        return x
    b, seq, nl, k = x.shape
    x = x.reshape(b, p, seq // p, nl, k).permute(1, 0, 2, 3, 4).contiguous()  # (P, B, L/P, N/P, K)
    x = _all_to_all(x, group)  # chunk j: my tokens, rank j's heads
    return x.permute(1, 2, 0, 3, 4).reshape(b, seq // p, p * nl, k)


def all_gather_cat(x: torch.Tensor, group, dim: int) -> torch.Tensor:
    """Concatenate every group rank's `x` along `dim`, in group-rank order; the same result on every rank."""
    p = group_size(group)
    if p == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(p)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def shard(x: torch.Tensor, group, dim: int) -> torch.Tensor:
    """This group rank's contiguous 1/P slice of `x` along `dim` (the length must divide by P)."""
    p = group_size(group)
    n = x.shape[dim] // p
    return x.narrow(dim, group_rank(group) * n, n)
