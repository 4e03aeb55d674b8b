"""Reading weights safely: safetensors (single or sharded); pickles only with an explicit trust flag.

Never unpickle untrusted files: `.bin` / `.pt` / `.pth` are refused unless the caller passes
`trust_pickle=True`, and even then are read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from vdrt.errors import CheckpointError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, following a shard index if present."""
    indexes = sorted(directory.glob("*.safetensors.index.json"))
    if indexes:
        return _shards_from_index(indexes[0])
    files = sorted(directory.glob("*.safetensors"))
    return files


def _shards_from_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{index}: not a valid shard index ({e}); expected JSON with a 'weight_map'") from e
    shards = sorted({index.parent / name for name in weight_map.values()})
    missing = [str(s.name) for s in shards if not s.is_file()]
    if missing:
        raise CheckpointError(f"{index} names shards that are missing: {missing}; re-download or re-save the checkpoint")
    return shards


def pickle_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors ({e}); the file is corrupt or truncated") from e


def read_pickle(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    if not trust_pickle:
        raise CheckpointError(
            f"{path} is a pickle checkpoint; vdrt does not unpickle files by default. Convert it to "
            "safetensors, or pass trust_pickle=True (CLI: --trust-pickle) if you trust its source"
        )
    log.warning("loading pickle checkpoint %s with torch.load(weights_only=True)", path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle; re-raise as one clear error
        raise CheckpointError(f"{path}: cannot load pickle checkpoint ({type(e).__name__}: {e})") from e


def read_state_dict(directory: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in `directory`, merged across shards."""
    files = weight_files(directory)
    if files:
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(read_safetensors(f))
        return state
    pickles = pickle_files(directory)
    if pickles:
        state = {}
        for f in pickles:
            state.update(read_pickle(f, trust_pickle))
        return state
    raise CheckpointError(f"{directory} holds no weights (*.safetensors, or a shard index); is it a checkpoint directory?")


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model: missing keys {_few(missing)}; unexpected keys {_few(unexpected)}"
        )
    bad = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
           if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{source}: weight shapes do not match the config: {_few(bad)}")
    check_values(own, state, source)


def check_values(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """Each weight in a dtype its parameter takes (a float parameter is not filled from ints or complex numbers:
    never cast silently), and finite (a NaN weight makes a normal-looking but wrong video)."""
    wrong = [f"{k} ({state[k].dtype})" for k, v in own.items()
             if v.is_floating_point() and not state[k].is_floating_point()]
    if wrong:
        raise CheckpointError(f"{source}: weights of a dtype the model does not take: {_few(wrong)}; it takes "
                              "floating point (float32 / bfloat16 / float16); re-save the checkpoint from its source")
    nonfinite = [f"{k} ({n} of {state[k].numel()})" for k, n in _nonfinite(state, own)]
    if nonfinite:
        raise CheckpointError(f"{source}: weights hold NaN or Inf: {_few(nonfinite)}; the checkpoint is corrupt or "
                              "was saved after training diverged")


def _nonfinite(state: dict[str, torch.Tensor], own: dict) -> list[tuple[str, int]]:
    out = []
    for k in own:
        t = state[k]
        if t.is_floating_point() and t.dtype.itemsize > 1 and not torch.isfinite(t).all():
            out.append((k, int((~torch.isfinite(t)).sum())))
    return out


def _few(names: list[str], n: int = 8) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return "[" + ", ".join(names[:n]) + "]" + more
