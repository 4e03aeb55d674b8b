"""Story continuation: a clip extended chunk after chunk, each chunk with a new prompt (`mode="continue"`).

    pipe = vdrt.Pipeline.from_pretrained("vdrt-tiny-wan")
    for chunk in pipe.story(["a red circle moving right", "a red circle falling", "a red circle moving up"]):
        show(chunk.frames[k:])       # the first chunk is t2v; later ones start with the k frames they continue

`prompts` may be any iterable, e.g. a generator that waits for the user's next line: the next chunk is
made only when asked for. Chunk n > 0 is `mode="continue"` on chunk n - 1: its last `known_frames` frames
(default a quarter of the chunk) become the new chunk's first frames, and the new prompt says what
happens next. With `video=` the first chunk already continues that clip. Chunk n uses seed + n.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from vdrt.errors import ConfigError


def chunks(pipe, prompts: Iterable[str], video=None, known_frames: int | None = None, seed: int = 0,
           **kwargs) -> Iterator:
    """Yield one `vdrt.io.Video` per prompt (see the module doc); `kwargs` go to every `pipe(...)` call."""
    for key in ("mode", "image", "mask", "output_type", "num_videos_per_prompt", "num_videos"):
        if key in kwargs:
            raise ConfigError(f"story() sets {key} itself (continue, one video a chunk); drop {key}=")
    last = video
    for n, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ConfigError(f"story prompt {n} must be a string, got {type(prompt).__name__}")
        if last is None:
            out = pipe(prompt, seed=seed + n, **kwargs)
        else:
            out = pipe(prompt, mode="continue", video=last, known_frames=known_frames, seed=seed + n, **kwargs)
        yield out
        last = out
