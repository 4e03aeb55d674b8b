"""The caption grammar of the procedural clips, and its inverse.

    caption    := clause [" and " clause] [" on a " BACKGROUND " background"]
    clause     := "a " [SIZE " "] COLOUR " " SHAPE " " MOTION
    MOTION     := "bouncing" | "falling" | "moving " ("left" | "right" | "up" | "down")

e.g. "a small red circle bouncing", "a blue square moving left and a yellow triangle falling".
Each size word is present with probability 1/2, the background phrase with probability 0.3 but
only where the caption stays within MAX_WORDS (16) words, the word tokenizer's default length.

`caption_ids(scenes, gen)` writes the captions of a batch of scenes directly as the word
tokenizer's ids (pad 0, word i of VOCAB is i + 2), on the scenes' device with no per-clip Python
(the training data path); `decode` turns ids back into text, so a caption string and its ids
always agree.
"""
from __future__ import annotations

import torch

from vdrt.errors import ConfigError
from vdrt.export.tiny.data.world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, Scenes
from vdrt.text.vocab import DIRECTION_WORDS as DIRECTIONS
from vdrt.text.vocab import VOCAB, normalise

MAX_WORDS = 16
SIZE_PROB = 0.5
BACKGROUND_PROB = 0.3
CLAUSE_SLOTS = 6  # a, size, colour, shape, motion word, direction
_ID = {w: i + 2 for i, w in enumerate(VOCAB)}


def _table(words, device) -> torch.Tensor:
    return torch.tensor([_ID[w] for w in words], dtype=torch.long, device=device)


def _clause_ids(s: Scenes, k: int, with_size: torch.Tensor) -> torch.Tensor:
    """(N, 6) ids of slot k's clause, 0 where a word is left out."""
    dev = s.device
    first = _table([m.split()[0] for m in MOTIONS], dev)[s.motion[:, k]]
    direction = torch.tensor([_ID[m.split()[1]] if " " in m else 0 for m in MOTIONS], device=dev)[s.motion[:, k]]
    size = torch.where(with_size, _table(SIZES, dev)[s.size[:, k]], 0)
    cols = [torch.full_like(first, _ID["a"]), size, _table(COLOURS, dev)[s.colour[:, k]],
            _table(SHAPES, dev)[s.shape[:, k]], first, direction]
    return torch.stack(cols, 1) * s.present[:, k, None]


def caption_ids(scenes: Scenes, gen: torch.Generator, max_len: int = MAX_WORDS) -> torch.Tensor:
    """(N, max_len) long token ids of random captions of `scenes` (3 uniforms a scene from `gen`)."""
    s, dev = scenes, scenes.device
    u = torch.rand(len(s), 3, generator=gen, device=dev)
    c0, c1 = _clause_ids(s, 0, u[:, 0] < SIZE_PROB), _clause_ids(s, 1, u[:, 1] < SIZE_PROB)
    conj = torch.where(s.present[:, 1], _ID["and"], 0)[:, None]
    body = torch.cat([c0, conj, c1], 1)  # (N, 13)
    bg = torch.stack([torch.full_like(s.background, _ID["on"]), torch.full_like(s.background, _ID["a"]),
                      _table(BACKGROUNDS, dev)[s.background], torch.full_like(s.background, _ID["background"])], 1)
    fits = (body > 0).sum(1) + 4 <= max_len
    bg = bg * ((u[:, 2] < BACKGROUND_PROB) & fits)[:, None]
    slots = torch.cat([body, bg], 1)  # (N, 17)
    order = torch.sort((slots == 0).to(torch.uint8), dim=1, stable=True).indices
    out = torch.gather(slots, 1, order)[:, :max_len]
    return torch.nn.functional.pad(out, (0, max(0, max_len - out.shape[1])))


def decode(ids) -> list[str]:
    """(N, L) token ids -> caption strings (padding dropped)."""
    words = {i: w for w, i in _ID.items()}
    return [" ".join(words[i] for i in row if i) for row in ids.tolist()]


def _first(words: list[str], options) -> str | None:
    return next((w for w in words if w in options), None)


def _motion(words: list[str]) -> str | None:
    direction = _first(words, DIRECTIONS)
    if direction is not None:
        return f"moving {direction}"
    return _first(words, ("bouncing", "falling"))


def _parse_clause(words: list[str]) -> dict:
    return {
        "shape": _first(words, SHAPES),
        "colour": _first(words, COLOURS),
        "size": _first(words, SIZES),
        "motion": _motion(words),
    }


def _split_background(words: list[str]) -> tuple[list[str], str | None]:
    """Cut a trailing "on [a] X background" phrase off; return (rest, X or None)."""
    if "background" in words and "on" in words:
        i = len(words) - 1 - words[::-1].index("on")
        tail = [w for w in words[i + 1 :] if w not in ("a", "an", "background")]
        return words[:i], _first(tail, BACKGROUNDS)
    return words, None


def parse_caption(text: str) -> list[dict]:
    """Objects asked for: [{shape, colour, size, motion}], a missing attribute as None.

    The inverse of `caption` on this grammar, and lenient elsewhere: a clause is whatever lies
    between "and"s, and each attribute is its first known word in the clause.
    """
    words, _ = _split_background(normalise(text))
    clauses, cur = [], []
    for w in [*words, "and"]:
        if w == "and":
            clauses.append(cur)
            cur = []
        else:
            cur.append(w)
    objects = [_parse_clause(c) for c in clauses]
    objects = [o for o in objects if any(v is not None for v in o.values())]
    if not objects:
        raise ConfigError(f"caption {text!r} names no object; write e.g. 'a red circle bouncing' "
                          f"using the words {' '.join(VOCAB)}")
    return objects


def parse_background(text: str) -> str | None:
    """The background colour named by "on a X background", or None."""
    return _split_background(normalise(text))[1]


def spec_objects(spec) -> list[dict]:
    """A ClipSpec's objects as parse_caption would give them (size always filled in)."""
    return [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion} for o in spec.objects]

