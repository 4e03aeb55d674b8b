"""What `vdrt bench` times: the denoiser step beside its peers, whole denoise loops with step caching, one clip.

- `plan`: the flags -> one checked `BenchPlan` (lists of backends, attention choices, shapes, cache
  policies; conflicts and unwritable outputs refused before anything loads);
- `run`: a plan -> rows; `step`: step rows and peers; `loops`: denoise loops per cache policy;
  `e2e`: the end-to-end clip split into text / denoise / decode / write;
- `timing`: warm-up, iterations or a duration, percentiles; `ceilings`: measured or probed limits;
- `report`: rows per GPU, markdown and plots, stale rows left out; `calibrate`: `vdrt calibrate`;
- `peers`: the same model as diffusers implements it, same weights; `meta`: what every row carries.
The CLI (`vdrt.cli.bench`) prints the table, and alone imports the exporter (to build an engine
to time) and the quality oracle (`--quality`), lazily.
"""
from vdrt.bench.meta import DEFAULT_MODEL, find_card

__all__ = ["DEFAULT_MODEL", "find_card"]
