"""The embedded tiny models' word list and text normalisation (no model, no data code).

`VOCAB` is the closed vocabulary of the procedural world's captions (the data generator in
`vdrt.export.tiny.data` writes captions from exactly these words); a model card carries its own
copy under `text.vocab`, which wins when a card is loaded. `normalise` is how every prompt is
split into words, by the tokenizer and by the caption parser alike.
"""
from __future__ import annotations

import re

FUNCTION_WORDS = ("a", "and", "on", "background")
SIZE_WORDS = ("small", "large")
COLOUR_WORDS = ("red", "green", "blue", "yellow", "white", "purple")
SHAPE_WORDS = ("circle", "square", "triangle")
MOTION_WORDS = ("bouncing", "falling", "moving")
DIRECTION_WORDS = ("left", "right", "up", "down")
BACKGROUND_WORDS = ("black", "grey", "navy", "brown")

VOCAB: tuple[str, ...] = tuple(dict.fromkeys(
    [*FUNCTION_WORDS, *SIZE_WORDS, *COLOUR_WORDS, *SHAPE_WORDS, *MOTION_WORDS, *DIRECTION_WORDS, *BACKGROUND_WORDS]
))


def normalise(text: str) -> list[str]:
    """Lower-case, turn punctuation into spaces, split into words."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()
