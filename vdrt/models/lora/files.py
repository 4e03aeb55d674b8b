"""Reading LoRA files safely: safetensors (with the PEFT config diffusers writes into its header); a pickle
only behind the trust flag, then with `torch.load(weights_only=True)` (vdrt.checkpoint's readers).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Mapping

import torch

from vdrt.checkpoint import PICKLE_SUFFIXES, _few, read_pickle, read_safetensors
from vdrt.errors import CheckpointError

HEADER_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY


def lora_path(source) -> Path:
    """The LoRA file a path names (a folder holding exactly one .safetensors names that file)."""
    p = Path(source).expanduser()
    if p.is_dir():
        p = _single_file(p)
    if not p.is_file():
        raise CheckpointError(f"LoRA file {p} does not exist; pass the path of a .safetensors file")
    return p


def _single_file(d: Path) -> Path:
    """diffusers' save_lora_weights writes pytorch_lora_weights.safetensors into a folder."""
    files = sorted(d.glob("*.safetensors"))
    if len(files) != 1:
        raise CheckpointError(f"LoRA folder {d} holds {len(files)} .safetensors files; pass the file itself")
    return files[0]


def check_lora_file(path: Path, trust_pickle: bool | None = None) -> Path:
    """Refuse, before anything is read, a file that is neither safetensors nor a pickle, and a pickle when
    `trust_pickle` is False (None: not known yet; the read refuses it then)."""
    if path.suffix not in (".safetensors",) + PICKLE_SUFFIXES:
        raise CheckpointError(f"LoRA file {path} is neither .safetensors nor a pickle ({', '.join(PICKLE_SUFFIXES)})")
    if path.suffix in PICKLE_SUFFIXES and trust_pickle is False:
        read_pickle(path, trust_pickle=False)  # raises the one refusal message (convert, or --trust-pickle)
    return path


def read_lora_file(path: Path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], "PeftMeta | None"]:
    """A LoRA file's tensors, and the PEFT config from its safetensors header (None if it has none)."""
    if path.suffix == ".safetensors":
        return _tensors_only(read_safetensors(path), str(path)), PeftMeta.from_header(_header(path), str(path))
    check_lora_file(path)
    return _tensors_only(read_pickle(path, trust_pickle), str(path)), None


def _header(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def _tensors_only(state, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"LoRA {source} holds a {type(state).__name__}, not a dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"LoRA {source}: entries that are not tensors: {_few(sorted(map(str, bad)))}")
    return dict(state)


@dataclasses.dataclass(frozen=True)
class PeftMeta:
    """PEFT's LoraConfig, as diffusers' save_lora_weights / save_lora_adapter store it in the safetensors
    header: the alpha of low-rank pairs that carry no `.alpha` key (scale alpha / r, or alpha / sqrt(r)
    with rsLoRA), per module through `alpha_pattern` (PEFT's `get_pattern_key` match)."""

    lora_alpha: float
    alpha_pattern: dict
    rslora: bool = False

    @classmethod
    def from_header(cls, header: Mapping[str, str], source: str) -> "PeftMeta | None":
        raw = header.get(HEADER_KEY)
        if not raw:
            return None
        try:
            d = json.loads(raw)
        except ValueError as e:
            raise CheckpointError(f"LoRA {source}: its {HEADER_KEY} header is not JSON ({e})") from e
        d = _transformer_part(d)
        if d.get("use_dora"):
            raise CheckpointError(f"LoRA {source} is a DoRA adapter (use_dora in its header); vdrt does not apply DoRA")
        if d.get("lora_alpha") is None:
            return None
        return cls(_finite(d["lora_alpha"], source), dict(d.get("alpha_pattern") or {}), bool(d.get("use_rslora")))

    def rank_scale(self, module: str, rank: int) -> float:
        """alpha / r for the pair of `module` (its module path in the file, prefix stripped)."""
        alpha = next((float(a) for p, a in self.alpha_pattern.items() if re.fullmatch(rf"(.*\.)?({p})", module)),
                     self.lora_alpha)
        return alpha / (math.sqrt(rank) if self.rslora else rank)


def _transformer_part(d: dict) -> dict:
    """A pipeline save prefixes each field with its component (`transformer.lora_alpha`); a model save does not."""
    if any(k.startswith("transformer.") for k in d):
        return {k[len("transformer."):]: v for k, v in d.items() if k.startswith("transformer.")}
    return d


def _finite(value, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"LoRA {source}: lora_alpha {value!r} in its header is not a finite number")
    return float(value)
