"""The procedural world of the embedded tiny models: clips with exactly known ground truth.

- `world`: scenes as batched tensors (objects, motions, occlusion, any size and length), sampled
  on any device; `raster`: batched rendering and ground truth (torch, GPU or CPU);
- `procedural`: one clip at a time (`ClipSpec`), and the fixed train / val / test splits;
- `captions`: the caption grammar, captions as token ids (batched), and the caption parser;
- `dataset`: `python -m vdrt.export.tiny.dataset`, a labelled data set on disk.
"""
from vdrt.export.tiny.data.captions import VOCAB, caption_ids, decode, parse_caption
from vdrt.export.tiny.data.procedural import (
    ClipSpec, ClipTruth, ObjectSpec, batch, dataset, render, render_with_truth, split_scenes, to_float, to_uint8,
)
from vdrt.export.tiny.data.world import Geometry, Scenes, sample_scenes

__all__ = [
    "VOCAB", "caption_ids", "decode", "parse_caption", "ClipSpec", "ClipTruth", "ObjectSpec", "batch", "dataset",
    "render", "render_with_truth", "split_scenes", "to_float", "to_uint8", "Geometry", "Scenes", "sample_scenes",
]
