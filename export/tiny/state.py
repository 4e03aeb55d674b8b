"""Compact resumable training state: `<name>.state-NN.safetensors`, each file at most `limit` bytes.

Made for copying back from a machine that returns few, small files: a model of P parameters
saves its weights and both Adam moments in bf16 (6P bytes; 4.95M parameters -> 2 files of <= 15 MB),
the EMA travelling in the card's fp16 weights beside it; `dtype=torch.float32` also saves the EMA
and makes a resume bit-identical (used by the tests and for local runs). Every shard carries the
same JSON metadata (`vdrt_state`: step, RNG, loss curve, arguments ...) and one save id, so a
load refuses a mix of shards from different saves. Shards are written to temporaries and renamed;
stale shards of an earlier, larger save are removed last.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from vdrt.errors import CheckpointError
from vdrt.fsutil import atomic_path

MAX_FILE_BYTES = 15_000_000
META_KEY = "vdrt_state"


def shards(tensors: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    """Split named tensors, in order, into groups of at most `limit` bytes each."""
    out, cur, size = [], {}, 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if n > limit:
            raise CheckpointError(f"tensor {name} ({n / 1e6:.1f} MB) exceeds the {limit / 1e6:.0f} MB file limit")
        if cur and size + n > limit:
            out.append(cur)
            cur, size = {}, 0
        cur[name], size = t, size + n
    return out + [cur] if cur or not out else out


def state_files(out_dir, name: str) -> list[Path]:
    return sorted(Path(out_dir).glob(f"{name}.state-[0-9][0-9].safetensors"))


def save_state(out_dir, name: str, tensors: dict[str, torch.Tensor], meta: dict,
               limit: int = MAX_FILE_BYTES) -> list[Path]:
    """Write the shards (metadata in each), then delete shards left from an earlier save."""
    from safetensors.torch import save_file

    parts = shards({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, limit)
    header = {META_KEY: json.dumps({**meta, "save_id": uuid.uuid4().hex, "shards": len(parts)})}
    paths = [Path(out_dir) / f"{name}.state-{i:02d}.safetensors" for i in range(len(parts))]
    for path, part in zip(paths, parts):
        with atomic_path(path) as tmp:
            save_file(part, str(tmp), metadata=header)
    for stale in state_files(out_dir, name)[len(parts):]:
        stale.unlink()
    return paths


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"training state {path} is unreadable ({e}); delete the {path.name.split('.state')[0]}"
                              ".state-*.safetensors files to start over") from e


def load_state(out_dir, name: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, meta) of the saved state of `name` in out_dir, or None when there is none."""
    files = state_files(out_dir, name)
    if not files:
        return None
    tensors, metas = {}, []
    for f in files:
        t, m = _read(f)
        tensors.update(t)
        metas.append(m)
    ids = {m["save_id"] for m in metas}
    if len(ids) != 1 or metas[0]["shards"] != len(files):
        raise CheckpointError(f"the {name}.state-*.safetensors files in {out_dir} come from different saves "
                              f"({len(files)} files, {len(ids)} save ids); copy back all shards of one save")
    return tensors, metas[0]
