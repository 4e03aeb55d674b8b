"""A word-level tokenizer for the embedded `vdrt-tiny` model's closed vocabulary.

    tok = default_tokenizer()          # or DEFAULT; built from vdrt.text.vocab.VOCAB
    ids, mask = tok.encode(["a red circle bouncing"], max_len=16)   # (B, L) int64, (B, L) bool

Ids: 0 is padding, 1 is an unknown word, the vocabulary starts at 2 in its given order. Text is
lower-cased and punctuation becomes spaces. Unknown words are encoded as 1 and logged in one
warning per call that lists them and the vocabulary. A prompt with no known content word (the
words "a", "an", "and", "on", "the", "background" do not count) raises ConfigError listing the
vocabulary, since the model would ignore it. Longer prompts are cut to max_len with a warning.
The tokenizer ships beside the weights as JSON (`to_json` / `from_json`, `save` / `load`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from vdrt.text.vocab import VOCAB, normalise
from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

PAD_ID, UNK_ID = 0, 1
FORMAT = "vdrt-word-tokenizer"
NON_CONTENT = frozenset({"a", "an", "and", "on", "the", "background"})


class WordTokenizer:
    """Closed-vocabulary word tokenizer: pad 0, unknown 1, words from 2."""

    def __init__(self, vocab, max_len: int = 16):
        vocab = [str(w).lower() for w in vocab]
        if not vocab or len(set(vocab)) != len(vocab):
            raise ConfigError("a tokenizer vocabulary must be a non-empty list of distinct words")
        self.vocab = tuple(vocab)
        self.max_len = int(max_len)
        self._ids = {w: i + 2 for i, w in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        """Embedding rows needed: the words plus pad and unknown."""
        return len(self.vocab) + 2

    def _vocab_line(self) -> str:
        return " ".join(self.vocab)

    def _words(self, text: str) -> list[str]:
        words = normalise(text)
        if not any(w in self._ids and w not in NON_CONTENT for w in words):
            raise ConfigError(
                f"prompt {text!r} has no word the model knows; use these words: {self._vocab_line()}"
            )
        return words

    def _warn(self, unknown: list[str], truncated: list[str], max_len: int) -> None:
        if unknown:
            log.warning("unknown words %s are encoded as <unk> and ignored by the model; known words: %s",
                        sorted(set(unknown)), self._vocab_line())
        if truncated:
            log.warning("%d prompt(s) are longer than %d words and were cut: %s", len(truncated), max_len,
                        truncated)

    def encode(self, texts, max_len: int | None = None):
        """Prompts -> (ids LongTensor (B, L), mask BoolTensor (B, L)), L = max_len, pad id 0."""
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        L = self.max_len if max_len is None else int(max_len)
        ids = torch.zeros(len(texts), L, dtype=torch.long)
        unknown, truncated = [], []
        for b, text in enumerate(texts):
            words = self._words(text)
            unknown += [w for w in words if w not in self._ids]
            if len(words) > L:
                truncated.append(text)
            row = [self._ids.get(w, UNK_ID) for w in words[:L]]
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        self._warn(unknown, truncated, L)
        return ids, ids != PAD_ID

    def decode(self, ids) -> list[str]:
        """(B, L) ids -> texts; padding dropped, unknown shown as <unk>."""
        words = {PAD_ID: None, UNK_ID: "<unk>", **{i: w for w, i in self._ids.items()}}
        rows = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return [" ".join(words[i] for i in row if words.get(i)) for row in rows]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "vocab": list(self.vocab), "max_len": self.max_len,
                           "pad_id": PAD_ID, "unk_id": UNK_ID}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "WordTokenizer":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"tokenizer JSON is not valid JSON ({e}); re-save it with WordTokenizer.save") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT or "vocab" not in data:
            raise ConfigError(f"not a {FORMAT} JSON (need 'format': '{FORMAT}' and 'vocab')")
        return cls(data["vocab"], max_len=data.get("max_len", 16))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path) -> "WordTokenizer":
        return cls.from_json(Path(path).read_text())

    def __eq__(self, other) -> bool:
        return isinstance(other, WordTokenizer) and (self.vocab, self.max_len) == (other.vocab, other.max_len)

    def __hash__(self) -> int:
        return hash((self.vocab, self.max_len))

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self.vocab)} words, max_len={self.max_len})"


def default_tokenizer() -> WordTokenizer:
    """The tokenizer of the procedural captions (vdrt.text.vocab.VOCAB)."""
    return WordTokenizer(VOCAB)


DEFAULT = default_tokenizer()
