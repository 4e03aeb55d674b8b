"""`vdrt generate ... --gpus N`: the CLI's side of multi-process generation (the parent and the child entry).

The parent checks what it can (GPU count, degrees for presets) and starts N copies of the same
command through `vdrt.parallel.launch.elastic_run`. Each child joins the process group, builds
the same request and pipeline on `cuda:LOCAL_RANK` (or the CPU with `--device cpu`, gloo: for
testing), wraps its engine in a `ParallelEngine` (CFG parallel first, Ulysses for the rest) and
runs the same loop with the same seed. Rank 0 decodes and writes; the others skip the decode.
"""
from __future__ import annotations

import logging
import os

from vdrt.errors import ConfigError
from vdrt.parallel.launch import RankZeroDecodes, elastic_run, in_launched_child
from vdrt.parallel.mesh import check_gpus, check_sequence, choose_degrees

log = logging.getLogger(__name__)


def wants_parallel(opts: dict) -> bool:
    gpus = opts.get("gpus")
    if gpus is not None and gpus < 1:
        raise ConfigError(f"--gpus {gpus} must be >= 1")
    return (gpus or 1) > 1 or in_launched_child()


def run(opts: dict) -> int:
    """The `vdrt generate` entry when --gpus > 1: launch the children, or be one."""
    if in_launched_child():
        return run_child(opts)
    n = opts["gpus"]
    try:
        check_gpus(n, opts.get("device"))
    except ConfigError as e:
        raise ConfigError(f"--gpus {n}: {e}; lower --gpus, or add --device cpu to run {n} CPU processes (gloo, "
                          "for testing)") from None
    preflight(opts, n)
    return elastic_run(n, child_argv(opts))


def preflight(opts: dict, world_size: int) -> None:
    """Check the request, and for a named preset its sizes and degrees, before starting N processes.

    Other sources (directories, engines) are checked in the children, which load them anyway.
    """
    from vdrt import models
    from vdrt.cli.options import checked_request, request

    name = opts.get("model")
    if not name or name not in models.preset_names():
        request(opts)
        return
    req = checked_request(opts)
    cfg = models.config_from_name(name)
    choose_degrees(world_size, cfg.num_heads if cfg.family == "wan" else None, req.guidance != 1)


def child_argv(opts: dict) -> list[str]:
    """The command each child runs after `python -m vdrt`: the parent's merged options as flags."""
    from vdrt.cli.options import GEN_FLAGS, REPEATED_FLAGS, SWITCHES

    cmd = opts.get("command") or "generate"
    argv = [cmd] + ["-v"] * int(opts.get("verbose") or 0) + (["-q"] if opts.get("quiet") else [])
    if opts.get("out"):
        argv += ["-o", str(opts["out"])]
    if cmd == "generate" and opts.get("model"):
        argv += ["--model", str(opts["model"])]
    for flag, _, _ in GEN_FLAGS + [("--dtype", str, ""), ("--threads", int, "")]:
        value = opts.get(flag.lstrip("-").replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, _ in SWITCHES if opts.get(flag.lstrip("-").replace("-", "_"))]
    argv += [a for flag, _, _ in REPEATED_FLAGS for v in opts.get(flag.lstrip("-")) or [] for a in (flag, str(v))]
    positional = ([str(opts["model"])] if cmd == "run" else []) + ([opts["prompt"]] if opts.get("prompt") else [])
    return argv + (["--", *positional] if positional else [])


# ---------------------------------------------------------------- a child


def run_child(opts: dict) -> int:
    import torch.distributed as dist

    from vdrt.parallel.mesh import init_distributed

    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # one rank's log lines are enough
    env = init_distributed(opts.get("device"))
    if opts.get("gpus") not in (None, env.world_size):
        raise ConfigError(f"--gpus {opts['gpus']} but this job has {env.world_size} processes (WORLD_SIZE); "
                          "make them match")
    try:
        return _generate_on_rank(opts, env)
    finally:
        dist.destroy_process_group()


def _generate_on_rank(opts: dict, env) -> int:
    import torch.distributed as dist

    from vdrt.cli.options import build_pipeline, checked_request
    from vdrt.parallel.engine import ParallelEngine

    opts = {**opts, "device": str(env.device), "no_progress": bool(opts.get("no_progress") or env.rank != 0)}
    req = checked_request(opts)
    pipe = build_pipeline(opts)
    mesh = _mesh(pipe, req, env.world_size)
    pipe.engine = ParallelEngine(pipe.engine, mesh)
    if env.rank != 0:
        pipe.codec = RankZeroDecodes(pipe.codec)
    video = pipe(req, progress=not opts["no_progress"])
    if env.rank == 0:
        video.save(req.out)
        print(f"wrote {req.out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
              f"model {pipe.name}, {mesh.cfg_degree} CFG x {mesh.ulysses_degree} Ulysses ranks)")
    dist.barrier()
    return 0


def _mesh(pipe, req, world_size: int):
    from vdrt.engines.torch import TorchEngine
    from vdrt.parallel.mesh import Mesh

    wan = pipe.config.family == "wan" and isinstance(pipe.engine, TorchEngine)
    cfg, ulysses = choose_degrees(world_size, pipe.config.num_heads if wan else None, req.guidance != 1)
    if ulysses > 1:
        check_size(pipe, req, ulysses)
    return Mesh.create(cfg, ulysses)


def check_size(pipe, req, ulysses: int) -> None:
    """The patch grid's token count must divide by the Ulysses degree; name the flags that would fit."""
    g, (pt, ph, pw) = pipe.codec.geometry, pipe.config.patch_size
    _, nf, nh, nw = g.latent_shape(req.num_frames, req.height, req.width)
    flags = (lambda n: f"--frames {(n * pt - 1) * g.time_factor + 1}", lambda n: f"--height {n * ph * g.space_factor}",
             lambda n: f"--width {n * pw * g.space_factor}")
    check_sequence((nf // pt, nh // ph, nw // pw), ulysses, lambda axis, n: flags[axis](n))
