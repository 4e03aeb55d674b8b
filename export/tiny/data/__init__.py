"""Procedural training and evaluation data for the embedded `vdrt-tiny` model.

`procedural` renders clips with exactly known ground truth; `captions` writes and parses
their captions. Both need only numpy.
"""
from vdrt.export.tiny.data.captions import VOCAB, caption, parse_caption
from vdrt.export.tiny.data.procedural import (
    ClipSpec,
    ObjectSpec,
    Truth,
    batch,
    dataset,
    render,
    render_with_truth,
    sample_spec,
    to_float,
    to_uint8,
)

__all__ = [
    "VOCAB", "caption", "parse_caption", "ClipSpec", "ObjectSpec", "Truth", "batch", "dataset",
    "render", "render_with_truth", "sample_spec", "to_float", "to_uint8",
]
