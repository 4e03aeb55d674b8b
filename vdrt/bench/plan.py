"""`vdrt bench` flags -> one checked `BenchPlan`, before any model is loaded.

Lists multiply: `--backend torch,aoti --attention sdpa,vdrt-int8` times 2 x 2 step rows per shape;
shapes come from `--shapes 17x480x832,33x480x832` or the product of `--frames 17,33 --height 480
--width 832,416` (pixels, as `vdrt generate`; unset: the model's). `--cache none,teacache:0.1`
adds denoise-loop rows (eager torch only). Everything that can be refused without weights is
refused here: conflicting flags, unknown names, a --cuda-graphs without CUDA, unwritable --report /
--out folders, a missing matplotlib for --report, an engine directory with another backend, peers
or caching.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from vdrt.bench.timing import Timing, parse_percentiles
from vdrt.errors import ConfigError

PEERS = ("diffusers", "compile")
BACKENDS = ("torch", "aoti", "onnx")


@dataclass(frozen=True)
class BenchPlan:
    model: str | None
    device: torch.device
    precision: str
    backends: tuple = ("torch",)
    attentions: tuple = ("auto",)
    caches: tuple = ()  # CacheSpec | None each (None: the uncached loop); () no loop rows
    shapes: tuple = ((None, None, None),)  # (frames, height, width) pixels; None: the model's
    batch: int = 1
    timing: Timing = Timing()
    cuda_graphs: bool = False
    peers: tuple = ()
    steps: int | None = None  # the end-to-end clip's sampling steps (None: no clip row)
    cache_steps: int | None = None  # steps of each denoise loop (None: the model's)
    guidance: float | None = None  # of the denoise loops (None: the model's)
    weights_dir: str | None = None
    report: Path | None = None
    out: Path | None = None


def plan_from_args(args) -> BenchPlan:
    """Every check that needs no weights; raises ConfigError with the fix."""
    from vdrt.bench.meta import device_of
    from vdrt.pipeline.sources import precision_name

    device = device_of(args.device)
    timing = Timing(warmup=1 if args.warmup is None else args.warmup, iterations=_iterations(args), duration=args.duration,
                    percentiles=parse_percentiles(args.percentiles))
    plan = BenchPlan(
        model=args.model, device=device, timing=timing, batch=_positive(1 if args.batch is None else args.batch, "--batch"),
        precision=precision_name(args.precision or args.dtype, "--precision" if args.precision else "--dtype", device),
        backends=_names(args.backend, BACKENDS, "--backend") or ("torch",), attentions=_attentions(args.attention),
        caches=_caches(args.cache), shapes=_shapes(args), cuda_graphs=bool(args.cuda_graphs),
        peers=_names(args.peers, PEERS, "--peers"), steps=args.steps, cache_steps=args.cache_steps,
        guidance=args.guidance, weights_dir=args.weights_dir, report=writable_dir(args.report, "--report"),
        out=writable_file(args.out, "--out"))
    check(plan)
    return plan


def check(plan: BenchPlan) -> None:
    """Flags that conflict with each other or with the model's kind."""
    if plan.caches and plan.cuda_graphs:
        raise ConfigError("--cache loops decide per step in Python, which a CUDA-graph replay cannot: time --cache "
                          "and --cuda-graphs in two runs")
    if plan.cuda_graphs and plan.device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA device; this run is on {plan.device} (drop --cuda-graphs)")
    if plan.caches and "torch" not in plan.backends:
        raise ConfigError("--cache needs the eager model: add torch to --backend (compiled engines cannot skip blocks)")
    if plan.steps is not None and plan.steps < 1 or plan.cache_steps is not None and plan.cache_steps < 2:
        raise ConfigError("--steps must be >= 1 and --cache-steps >= 2")
    if plan.steps and plan.weights_dir is not None:
        raise ConfigError("--steps times the pipeline, which finds cards through VDRT_WEIGHTS_DIR: set "
                          "VDRT_WEIGHTS_DIR=DIR instead of --weights-dir DIR")
    if plan.report is not None:
        from vdrt.errors import require

        require("matplotlib", "bench")
        from vdrt.bench.ceilings import device_name
        from vdrt.bench.report import gpu_slug, read_rows

        read_rows(plan.report / gpu_slug(device_name(plan.device)) / "rows.json")  # unreadable: refused now
    _check_engine(plan)


def _check_engine(plan: BenchPlan) -> None:
    """An engine directory runs as built: its own backend, no peers (no module), no caching (no block stack)."""
    if not plan.model or not (Path(plan.model) / "manifest.json").is_file():
        return
    from vdrt.engines import inspect_engine

    own = inspect_engine(Path(plan.model)).get("backend")
    if plan.backends not in (("torch",), (own,)) or plan.peers or plan.caches or plan.attentions != ("auto",):
        raise ConfigError(f"{plan.model} is an engine directory built for {own}: it runs as built; another "
                          "--backend or --attention, --peers and --cache each needs the model itself (pass the "
                          "model it was built from)")


# ---------------------------------------------------------------- parsing


def _iterations(args) -> int | None:
    if args.iterations is not None and args.repeats is not None:
        raise ConfigError("--repeats is the older name of --iterations; pass one")
    n = args.iterations if args.iterations is not None else args.repeats
    return n if n is not None or args.duration is not None else 10


def _positive(n: int, flag: str) -> int:
    if n < 1:
        raise ConfigError(f"{flag} {n} must be >= 1")
    return n


def _names(text: str | None, known: tuple, flag: str) -> tuple:
    names = tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"{flag} {','.join(bad)}: unknown; choose from {','.join(known)}")
    return names


def _attentions(text: str | None) -> tuple:
    from vdrt import ops

    names = tuple(dict.fromkeys(n.strip() for n in (text or "auto").split(",") if n.strip()))
    known = ["auto", *ops.available("attention"), *ops.ALIASES]
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"--attention {','.join(bad)}: unknown; choose from {','.join(known)}")
    return names or ("auto",)


def _caches(text: str | None) -> tuple:
    """`--cache teacache:0.1,fbcache:0.1` -> (None, spec, spec): the uncached loop first, as the baseline."""
    if not text:
        return ()
    from vdrt.samplers.policies.cachespec import parse_list

    specs = parse_list(text)
    return tuple(dict.fromkeys([None, *specs]))


def _shapes(args) -> tuple:
    if args.shapes:
        if any(v is not None for v in (args.frames, args.height, args.width)):
            raise ConfigError("--shapes and --frames/--height/--width both given; pass one way of choosing shapes")
        return tuple(_shape(s) for s in args.shapes.split(",") if s.strip())
    axes = [_ints(v, flag) for v, flag in ((args.frames, "--frames"), (args.height, "--height"), (args.width, "--width"))]
    return tuple(itertools.product(*axes))


def _shape(text: str) -> tuple:
    try:
        f, h, w = (int(v) for v in text.strip().split("x"))
    except ValueError:
        raise ConfigError(f"--shapes {text!r}: give FRAMESxHEIGHTxWIDTH in pixels, e.g. 81x480x832") from None
    return (_positive(f, "--shapes frames"), _positive(h, "--shapes height"), _positive(w, "--shapes width"))


def _ints(value, flag: str) -> tuple:
    if value is None:
        return (None,)
    try:
        numbers = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: give a whole number or a comma list, e.g. 17,33") from None
    return tuple(_positive(n, flag) for n in numbers)  # its ConfigError is a ValueError too: outside the try


# ---------------------------------------------------------------- output paths


def writable_dir(path, flag: str) -> Path | None:
    """A folder that can be created and written, checked without leaving anything behind."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {p} is a file; give a folder")
    _writable(p, flag)
    return p


def writable_file(path, flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {p} is a folder; give a file name (rows.json)")
    _writable(p.parent, flag)
    return p


def _writable(folder: Path, flag: str) -> None:
    """The nearest existing folder at or above `folder` must take a new file (probed with a temporary one)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {folder}: {probe} is a file, so the folder cannot be made")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {folder} cannot be written ({os.strerror(e.errno) if e.errno else e}); "
                          "choose another folder") from None
