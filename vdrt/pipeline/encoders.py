"""Conditioning encoders: prompts -> the denoiser's context (B, L, text_dim); images -> CLIP embeddings.

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
        require("transformers")
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


class ClipImageEncoder:
    """Wan I2V's CLIP vision tower from a diffusers directory: (3, H, W) in [-1, 1] -> (1, 257, 1280).

    CLIP's penultimate hidden states, as Wan I2V uses them.
    """

    def __init__(self, root, device="cpu"):
        require("transformers")
        from transformers import CLIPImageProcessor, CLIPVisionModel

        self.model = CLIPVisionModel.from_pretrained(str(root / "image_encoder")).to(device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(str(root / "image_processor"))
        self.device = device

    @torch.no_grad()
    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        pixels = [((im.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().cpu().numpy() for im in images]
        inputs = self.processor(images=pixels, return_tensors="pt").to(self.device)
        out = self.model(**inputs, output_hidden_states=True)
        return out.hidden_states[-2]


def encode_prompts(text_encoder, text_dim: int, prompt: str, negative_prompt: str, prompt_embeds=None,
                   negative_prompt_embeds=None, guided: bool = False):
    """(positive (1, L, D), negative (1, L', D) or None) in float32, from text or embeddings.

    They stay where the encoder made them; `CFGModel` moves them to the denoiser's device once.

    The negative branch exists only when guidance is on: the negative prompt's encoding, the given
    negative embeddings, or zeros when only positive embeddings were given.
    """
    if prompt_embeds is not None:
        pos = as_context(torch.as_tensor(prompt_embeds).float(), text_dim)
    else:
        pos = _encode(text_encoder, prompt)
    if not guided:
        return pos, None
    if negative_prompt_embeds is not None:
        return pos, as_context(torch.as_tensor(negative_prompt_embeds).float(), text_dim)
    if prompt_embeds is not None:
        return pos, torch.zeros_like(pos)
    return pos, _encode(text_encoder, negative_prompt, negative=True)


def _encode(text_encoder, text: str, negative: bool = False) -> torch.Tensor:
    if text_encoder is None:
        raise ConfigError("this model has no text encoder; pass prompt_embeds= (CLI: --prompt-embeds FILE)")
    kw = {"allow_empty": True} if negative and _accepts_empty(text_encoder) else {}
    return text_encoder([text], **kw).float()


def _accepts_empty(encoder) -> bool:
    import inspect

    try:
        return "allow_empty" in inspect.signature(encoder.__call__).parameters
    except (TypeError, ValueError):
        return False
