"""The caption grammar of the procedural clips, and its inverse.

    caption    := clause [" and " clause] [" on a " BACKGROUND " background"]
    clause     := "a " [SIZE " "] COLOUR " " SHAPE " " MOTION
    MOTION     := "bouncing" | "falling" | "moving " ("left" | "right" | "up" | "down")

e.g. "a small red circle bouncing", "a blue square moving left and a yellow triangle falling".
Each size word is present with probability 1/2, the background phrase with probability 0.3 but
only where the caption stays within MAX_WORDS (16) words, the word tokenizer's default length.
The draws come from the caller's rng, so captions are deterministic by seed.
"""
from __future__ import annotations

import numpy as np

from vdrt.errors import ConfigError
from vdrt.export.tiny.data.procedural import BACKGROUNDS, COLOURS, SHAPES, SIZES, ClipSpec, ObjectSpec
from vdrt.text.vocab import DIRECTION_WORDS as DIRECTIONS
from vdrt.text.vocab import VOCAB, normalise

MAX_WORDS = 16
SIZE_PROB = 0.5
BACKGROUND_PROB = 0.3


def _clause(obj: ObjectSpec, with_size: bool) -> str:
    words = ["a", obj.size] if with_size else ["a"]
    return " ".join([*words, obj.colour, obj.shape, obj.motion])


def caption(spec: ClipSpec, rng: np.random.Generator) -> str:
    """A caption for `spec`, drawing the optional words from `rng`."""
    text = " and ".join(_clause(o, rng.random() < SIZE_PROB) for o in spec.objects)
    if rng.random() < BACKGROUND_PROB and len(text.split()) + 4 <= MAX_WORDS:
        text += f" on a {spec.background} background"
    return text


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


def spec_objects(spec: ClipSpec) -> list[dict]:
    """The spec's objects as parse_caption would give them (size always filled in)."""
    return [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion} for o in spec.objects]

