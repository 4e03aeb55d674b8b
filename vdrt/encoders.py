"""Text conditioning: turn prompts into the denoiser's context (B, L, text_dim).

- `UMT5TextEncoder`: a diffusers Wan directory's `text_encoder/` + `tokenizer/` through
  transformers (lazy), with Wan's convention: embeddings past each prompt's length are zero.
- `HashTextEncoder`: for presets with RANDOM weights only: words hashed into a fixed seeded
  embedding table, so different prompts give different (meaningless) contexts.
- precomputed embeddings are accepted everywhere by the pipeline (`prompt_embeds=`).
"""
from __future__ import annotations

import logging
import re
import zlib

import torch

from vdrt.errors import ConfigError, require

log = logging.getLogger(__name__)


class HashTextEncoder:
    """Placeholder encoder for random-weight presets: (list[str]) -> (B, max_len, text_dim)."""

    def __init__(self, text_dim: int, max_len: int = 32, buckets: int = 4096, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(buckets, text_dim, generator=g) * 0.5
        self.max_len, self.buckets = max_len, buckets

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.max_len, self.table.shape[1])
        for i, p in enumerate(prompts):
            words = re.findall(r"[a-z0-9]+", p.lower())[: self.max_len]
            ids = [zlib.crc32(w.encode()) % self.buckets for w in words]
            if ids:
                out[i, : len(ids)] = self.table[ids]
        return out


class UMT5TextEncoder:
    """Wan's UMT5 text encoder from a diffusers directory: (list[str]) -> (B, max_len, 4096)."""

    def __init__(self, root, max_len: int = 512, dtype=torch.float32, device="cpu"):
        require("transformers", "diffusers")
        from transformers import AutoTokenizer, UMT5EncoderModel

        self.tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
        self.model = UMT5EncoderModel.from_pretrained(str(root / "text_encoder")).to(device=device, dtype=dtype).eval()
        self.max_len, self.device = max_len, device

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer([p.strip() for p in prompts], padding="max_length", max_length=self.max_len,
                             truncation=True, add_special_tokens=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        hidden = self.model(ids, mask).last_hidden_state  # (B, L, D)
        return hidden * mask.unsqueeze(-1).to(hidden.dtype)  # zero past each prompt, as Wan does


def as_context(embeds: torch.Tensor, text_dim: int) -> torch.Tensor:
    """Precomputed embeddings (L, D) or (1, L, D) -> (1, L, D), checked against the model's text_dim."""
    if embeds.dim() == 2:
        embeds = embeds.unsqueeze(0)
    if embeds.dim() != 3 or embeds.shape[-1] != text_dim:
        raise ConfigError(f"prompt embeddings of shape {tuple(embeds.shape)} do not fit: the model needs (L, {text_dim})")
    if not torch.isfinite(embeds).all():
        raise ConfigError("prompt embeddings hold NaN or Inf")
    return embeds
