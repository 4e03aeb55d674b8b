"""Process groups for multi-GPU inference: a 2-D layout of cfg_degree x ulysses_degree ranks.

    rank = cfg_rank * ulysses_degree + ulysses_rank

Ranks of one Ulysses group are consecutive (one CFG branch, the token sequence split over
them, all-to-all inside attention); ranks of one CFG group share a Ulysses rank (each runs
one branch of the batched [cond; uncond] call, outputs all-gathered). Example on 4 ranks,
2 CFG x 2 Ulysses: Ulysses groups {0, 1} {2, 3}, CFG groups {0, 2} {1, 3}.

`init_distributed()` joins the job from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT or the elastic agent's store); `VDRT_INIT_METHOD` (e.g. `file:///tmp/x`)
overrides the rendezvous. NCCL on CUDA devices, gloo on the CPU.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

INIT_METHOD_ENV = "VDRT_INIT_METHOD"


@dataclass(frozen=True)
class Layout:
    """cfg_degree x ulysses_degree over world_size ranks; checked on construction."""

    world_size: int
    cfg_degree: int = 1
    ulysses_degree: int = 1

    def __post_init__(self):
        check_layout(self.world_size, self.cfg_degree, self.ulysses_degree)

    def coords(self, rank: int) -> tuple[int, int]:
        """rank -> (cfg_rank, ulysses_rank)."""
        return divmod(rank, self.ulysses_degree)

    def ulysses_groups(self) -> list[list[int]]:
        u = self.ulysses_degree
        return [[c * u + i for i in range(u)] for c in range(self.cfg_degree)]

    def cfg_groups(self) -> list[list[int]]:
        u = self.ulysses_degree
        return [[c * u + i for c in range(self.cfg_degree)] for i in range(u)]


def check_layout(world_size: int, cfg_degree: int, ulysses_degree: int) -> None:
    if min(world_size, cfg_degree, ulysses_degree) < 1:
        raise ConfigError(f"world size {world_size}, cfg degree {cfg_degree} and ulysses degree {ulysses_degree} "
                          "must all be >= 1")
    if cfg_degree > 2:
        raise ConfigError(f"cfg degree {cfg_degree}: classifier-free guidance has 2 branches, so use 1 or 2")
    if cfg_degree * ulysses_degree != world_size:
        raise ConfigError(f"world size {world_size} != cfg degree {cfg_degree} x ulysses degree {ulysses_degree} "
                          f"(= {cfg_degree * ulysses_degree}); pick degrees whose product is the number of processes")


def check_heads(num_heads: int, ulysses_degree: int) -> None:
    """Ulysses scatters heads over its ranks: N must be a multiple of the degree."""
    if num_heads % ulysses_degree:
        fits = [p for p in range(1, num_heads + 1) if num_heads % p == 0]
        raise ConfigError(f"ulysses degree {ulysses_degree} does not divide the model's {num_heads} attention heads; "
                          f"ulysses degrees that fit: {fits}")


def check_sequence(grid: tuple[int, int, int], ulysses_degree: int, to_pixels=None) -> None:
    """The (f, h, w) patch grid's f*h*w tokens must split evenly over the Ulysses ranks (no padding).

    `to_pixels(axis, n)` turns a fitting patch count into the flag a user would pass (e.g. "--frames 13").
    """
    tokens = grid[0] * grid[1] * grid[2]
    if tokens % ulysses_degree == 0:
        return
    hints = []
    for axis, name in enumerate(("frames", "rows", "columns")):
        n = _next_fit(grid, axis, ulysses_degree)
        hint = f"{n} patch {name}"
        hints.append(hint + (f" ({to_pixels(axis, n)})" if to_pixels else ""))
    raise ConfigError(f"the {grid[0]}x{grid[1]}x{grid[2]} patch grid (frames x rows x columns) has {tokens} tokens, "
                      f"not divisible by ulysses degree {ulysses_degree}; sizes that fit (changing one axis): "
                      f"{', '.join(hints)}")


def _next_fit(grid, axis: int, p: int) -> int:
    """Smallest n > grid[axis] for which the token count divides by p."""
    rest = grid[0] * grid[1] * grid[2] // grid[axis]
    n = grid[axis] + 1
    while (n * rest) % p:
        n += 1
    return n


def check_gpus(requested: int, device=None) -> None:
    """`requested` processes on CUDA need that many visible devices; on the CPU they are gloo processes."""
    if device is not None and torch.device(device).type == "cpu":
        return
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < requested:
        raise ConfigError(f"fewer GPUs than requested: {requested} processes but {found} CUDA device(s) visible")


def choose_degrees(world_size: int, num_heads: int | None, use_cfg: bool) -> tuple[int, int]:
    """(cfg_degree, ulysses_degree) for `world_size` ranks: CFG parallel first (no all-to-all), Ulysses for the rest.

    num_heads None means the model has no sequence-parallel path (only CFG parallelism).
    """
    cfg = 2 if use_cfg and world_size % 2 == 0 else 1
    ulysses = world_size // cfg
    if ulysses > 1 and num_heads is None:
        raise ConfigError(f"{world_size} processes need sequence parallelism (ulysses degree {ulysses}), which only "
                          "the wan family supports; for this model use 2 processes with guidance != 1 (CFG parallel)")
    if ulysses > 1:
        check_heads(num_heads, ulysses)
    return cfg, ulysses


# ---------------------------------------------------------------- joining the job


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(device=None) -> DistEnv:
    """Join the process group from torchrun's environment; NCCL for CUDA, gloo for the CPU."""
    rank, world, local = (_env_int(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    dev = _rank_device(device, local)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        method = os.environ.get(INIT_METHOD_ENV, "env://")
        kw = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, init_method=method, rank=rank, world_size=world, **kw)
        log.info("rank %d/%d joined (%s, %s)", rank, world, backend, dev)
    return DistEnv(rank, world, local, dev)


def _env_int(key: str) -> int:
    if key not in os.environ:
        raise ConfigError(f"${key} is not set: start multi-process runs with `vdrt generate --gpus N` or "
                          "`torchrun --nproc-per-node N -m vdrt generate ... --gpus N`")
    return int(os.environ[key])


def _rank_device(device, local_rank: int) -> torch.device:
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda":
        return dev
    check_gpus(local_rank + 1)
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


# ---------------------------------------------------------------- the mesh


@dataclass
class Mesh:
    """This rank's place in a Layout, with its two process groups (None where the degree is 1)."""

    layout: Layout
    rank: int
    cfg_group: object = None
    ulysses_group: object = None

    @property
    def cfg_degree(self) -> int:
        return self.layout.cfg_degree

    @property
    def ulysses_degree(self) -> int:
        return self.layout.ulysses_degree

    @property
    def cfg_rank(self) -> int:
        return self.layout.coords(self.rank)[0]

    @property
    def ulysses_rank(self) -> int:
        return self.layout.coords(self.rank)[1]

    @classmethod
    def create(cls, cfg_degree: int = 1, ulysses_degree: int | None = None) -> "Mesh":
        """Build this rank's groups; every rank of the job must call it with the same degrees."""
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
        layout = Layout(world, cfg_degree, ulysses_degree or world // max(cfg_degree, 1))
        mesh = cls(layout, rank)
        mesh.ulysses_group = _my_group(layout.ulysses_groups(), rank) if layout.ulysses_degree > 1 else None
        mesh.cfg_group = _my_group(layout.cfg_groups(), rank) if layout.cfg_degree > 1 else None
        return mesh

    def describe(self) -> str:
        return (f"rank {self.rank}/{self.layout.world_size}: cfg {self.cfg_rank}/{self.cfg_degree}, "
                f"ulysses {self.ulysses_rank}/{self.ulysses_degree}")


def _my_group(groups: list[list[int]], rank: int):
    """new_group for every group (collective: all ranks create all groups, in order); return the one holding rank."""
    mine = None
    for ranks in groups:
        g = dist.new_group(ranks)
        if rank in ranks:
            mine = g
    return mine
