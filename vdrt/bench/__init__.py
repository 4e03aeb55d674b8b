"""What `vdrt bench` times: the denoiser step beside its peers, and one end-to-end clip.

- `step`: timing rows (first call apart, median and p90 of synchronized calls, peak memory, TFLOP/s
  against the measured ceiling), the end-to-end clip through `vdrt.Pipeline`;
- `peers`: the same model as diffusers implements it, same weights;
- `meta`: what every row carries (device, commit, date, versions) and where cards are found.
The CLI (`vdrt.cli.bench`) prints the table, and alone imports the exporter (to build an engine
to time) and the quality oracle (`--quality`), lazily.
"""
from vdrt.bench.meta import DEFAULT_MODEL, find_card

__all__ = ["DEFAULT_MODEL", "find_card"]
