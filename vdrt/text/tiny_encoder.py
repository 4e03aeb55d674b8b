"""The text encoder of the embedded `vdrt-tiny` model: a small transformer over word ids.

    enc = TinyTextEncoder(TinyTextConfig(vocab_size=tok.vocab_size))
    ctx = enc(ids, mask)                            # (B, L) int64, (B, L) bool -> (B, L, D)
    text = TinyTextConditioner(tok, enc)
    ctx = text(["a red circle bouncing"])           # (B, max_len, D)
    null = text([""], allow_empty=True)             # all zeros: the unconditional context (CFG)

Token embedding + learned positions, `layers` pre-norm transformer encoder layers (torch's
`nn.TransformerEncoderLayer`, GELU, no dropout, key-padding mask from the tokenizer's mask), a
final LayerNorm, and the output multiplied by the mask: padded positions are exactly 0, and a row
with no token at all (an empty prompt, or a caption dropped in training) is all zeros, which is
the unconditional context the model is trained with. It is trained jointly with the denoiser
(`vdrt.export.tiny.train`) and ships in the same safetensors file under `text.`.
Alphabet: B batch, L tokens, D width.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vdrt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TinyTextConfig:
    vocab_size: int  # embedding rows: the words plus pad (0) and unknown (1)
    max_len: int = 16
    dim: int = 128
    layers: int = 2
    heads: int = 4

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "dim", "layers", "heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TinyTextConfig.{name} must be a positive int, got {v!r}")
        if self.dim % self.heads:
            raise ConfigError(f"TinyTextConfig: dim {self.dim} must be divisible by heads {self.heads}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TinyTextEncoder(nn.Module):
    """`forward(ids (B, L) int64, mask (B, L) bool) -> (B, L, D)`, zero where mask is False."""

    def __init__(self, config: TinyTextConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.pos = nn.Parameter(torch.randn(c.max_len, c.dim) * 0.02)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(c.layers)
        ])
        self.norm = nn.LayerNorm(c.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        if n > self.config.max_len or mask.shape != ids.shape:
            raise ConfigError(f"text ids {tuple(ids.shape)} / mask {tuple(mask.shape)} do not fit: need equal "
                              f"shapes (B, L) with L <= max_len={self.config.max_len}")
        mask = mask.bool()
        x = self.embed(ids) + self.pos[:n]  # (B, L, D)
        # Key padding (True = ignore). A row with no token would softmax over nothing (NaN), so it
        # attends to everything instead; its output is zeroed below either way.
        ignore = ~mask & mask.any(dim=1, keepdim=True)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=ignore)
        return self.norm(x) * mask[..., None].to(x.dtype)


class TinyTextConditioner:
    """Prompts -> the denoiser's context: `(prompts, allow_empty=False) -> float (B, max_len, D)`.

    The word tokenizer warns about unknown words and raises ConfigError for a prompt with no
    known word. With allow_empty=True an empty (or blank) prompt gives zeros without raising:
    that is the unconditional branch of classifier-free guidance.
    """

    def __init__(self, tokenizer, encoder: TinyTextEncoder):
        self.tokenizer, self.encoder = tokenizer, encoder

    @property
    def max_len(self) -> int:
        return self.encoder.config.max_len

    @property
    def dim(self) -> int:
        return self.encoder.config.dim

    @property
    def device(self) -> torch.device:
        return self.encoder.pos.device

    @torch.no_grad()
    def __call__(self, prompts, allow_empty: bool = False) -> torch.Tensor:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        out = torch.zeros(len(prompts), self.max_len, self.dim, device=self.device)
        empty = torch.tensor([allow_empty and not p.strip() for p in prompts], dtype=torch.bool)
        texts = [p for p, e in zip(prompts, empty.tolist()) if not e]
        if texts:
            ids, mask = self.tokenizer.encode(texts, max_len=self.max_len)
            out[~empty.to(self.device)] = self.encoder(ids.to(self.device), mask.to(self.device)).float()
        return out

