"""`vdrt generate ... --gpus N`: N processes through torch.distributed.run; rank 0 writes the video.

The parent checks what it can (GPU count, degrees for presets), then runs the elastic launcher
in-process (`torch.distributed.run.run`) on `python -m vdrt <the same command>` with
`VDRT_PARALLEL_CHILD=1`. Each child joins the process group, builds the same pipeline on
`cuda:LOCAL_RANK` (or the CPU with `--device cpu`, gloo: for testing), wraps its engine in a
`ParallelEngine` (CFG parallel first, Ulysses for the rest) and runs the same loop with the same
seed. Rank 0 decodes and writes; the other ranks skip the VAE decode and write nothing.

Only 127.0.0.1 is bound: the launcher's rendezvous store listens on a loopback socket made here
(the agent's TCPStore reuses it: same port, multi-tenant), gloo and NCCL bootstrap use `lo`.
Equivalent by hand (torchrun's own store then listens on all interfaces):

    torchrun --nproc-per-node N -m vdrt generate PROMPT --gpus N -o out.mp4
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import sys
from pathlib import Path

import torch

from vdrt.errors import ConfigError
from vdrt.parallel.mesh import check_gpus, check_sequence, choose_degrees

log = logging.getLogger(__name__)

CHILD_ENV = "VDRT_PARALLEL_CHILD"
LOOPBACK = "127.0.0.1"
# NVLink multicast (NVLS) stays off on the lent multi-GPU hosts; loopback for the bootstrap sockets.
CHILD_DEFAULTS = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
                  "GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"}
SWITCHES = ("cuda_graphs", "trust_pickle", "no_progress")


def in_launched_child() -> bool:
    """True inside a process started by this launcher or by torchrun with more than one process."""
    return os.environ.get(CHILD_ENV) == "1" or ("RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1)


def wants_parallel(opts: dict) -> bool:
    gpus = opts.get("gpus")
    if gpus is not None and gpus < 1:
        raise ConfigError(f"--gpus {gpus} must be >= 1")
    return (gpus or 1) > 1 or in_launched_child()


def run_parallel(opts: dict) -> int:
    """The `vdrt generate` entry when --gpus > 1: launch the children, or be one."""
    if in_launched_child():
        return run_child(opts)
    return launch(opts)


# ---------------------------------------------------------------- the parent


def launch(opts: dict) -> int:
    n = opts["gpus"]
    check_gpus(n, opts.get("device"))
    preflight(opts, n)
    return elastic_run(n, child_argv(opts))


def elastic_run(nproc: int, argv: list[str], module: str | None = "vdrt") -> int:
    """Run `python -m MODULE ARGV` (or the script ARGV[0] when module is None) on `nproc` local ranks.

    The children get CHILD_DEFAULTS (NCCL without NVLS, loopback sockets); returns 0 or a failed rank's exit code.
    """
    with _environ(child_env(nproc)), loopback_store() as port:
        return _run_elastic(launcher_args(nproc, port, argv, module), nproc)


def preflight(opts: dict, world_size: int) -> None:
    """For a named preset, check the degrees before starting N processes (others are checked in the children)."""
    from vdrt import models
    from vdrt.assemble import defaults_for

    name = opts.get("model")
    if not name or name not in models.preset_names():
        return
    cfg = models.config_from_name(name)
    guidance = defaults_for(cfg, name).replace(guidance=opts.get("guidance")).guidance
    choose_degrees(world_size, cfg.num_heads if cfg.family == "wan" else None, guidance != 1)


def child_argv(opts: dict) -> list[str]:
    """The command each child runs after `python -m vdrt`: the parent's merged options as flags."""
    from vdrt.cli.generate import GEN_FLAGS

    cmd = opts.get("command") or "generate"
    argv = ["-v"] * int(opts.get("verbose") or 0) + (["-q"] if opts.get("quiet") else []) + [cmd]
    if opts.get("out"):
        argv += ["-o", str(opts["out"])]
    if cmd == "generate" and opts.get("model"):
        argv += ["--model", str(opts["model"])]
    for flag, _, _ in GEN_FLAGS:
        value = opts.get(flag.lstrip("-").replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--" + s.replace("_", "-") for s in SWITCHES if opts.get(s)]
    positional = ([str(opts["model"])] if cmd == "run" else []) + ([opts["prompt"]] if opts.get("prompt") else [])
    return argv + (["--", *positional] if positional else [])


def launcher_args(nproc: int, port: int, argv: list[str], module: str | None = "vdrt") -> list[str]:
    """torch.distributed.run's arguments: one node, static rendezvous on loopback, `-m vdrt ARGV`."""
    return ["--nnodes", "1", "--nproc-per-node", str(nproc), "--rdzv-backend", "static", "--master-addr", LOOPBACK,
            "--master-port", str(port), "--max-restarts", "0", *(["-m", module] if module else []), *argv]


def child_env(nproc: int) -> dict[str, str]:
    threads = str(max(1, (os.cpu_count() or 1) // nproc))
    return {CHILD_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
            **{k: os.environ.get(k, v) for k, v in CHILD_DEFAULTS.items()}}


@contextlib.contextmanager
def loopback_store():
    """A TCPStore server listening on 127.0.0.1 only; the agent's store (multi-tenant, same port) reuses it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    store = torch.distributed.TCPStore(LOOPBACK, port, 1, True, datetime.timedelta(seconds=300),
                                       wait_for_workers=False, multi_tenant=True, master_listen_fd=sock.detach())
    try:
        yield port
    finally:
        del store


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_elastic(args: list[str], nproc: int) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    log.info("launching: %s -m torch.distributed.run %s", sys.executable, " ".join(args))
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        log.error("the %d-process run failed (exit codes %s); the ranks' errors are above", nproc, codes)
        return next((c for c in codes if 0 < c < 256), 1)
    return 0


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

    from vdrt.cli import generate as gen
    from vdrt.parallel.engine import ParallelEngine

    opts = {**opts, "device": str(env.device), "no_progress": bool(opts.get("no_progress") or env.rank != 0)}
    pipe = gen._pipeline(opts)
    mesh = _mesh(pipe, opts, env.world_size)
    pipe.engine = ParallelEngine(pipe.engine, mesh)
    if env.rank != 0:
        pipe.codec = RankZeroDecodes(pipe.codec)
    video = gen._generate(pipe, opts)
    if env.rank == 0:
        out = Path(opts.get("out") or "out.mp4")
        video.save(out)
        print(f"wrote {out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
              f"model {pipe.name}, {mesh.cfg_degree} CFG x {mesh.ulysses_degree} Ulysses ranks)")
    dist.barrier()
    return 0


def _mesh(pipe, opts: dict, world_size: int):
    from vdrt.parallel.mesh import Mesh

    d = pipe.defaults.replace(guidance=opts.get("guidance"), num_frames=opts.get("frames"),
                              height=opts.get("height"), width=opts.get("width"))
    wan = pipe.config.family == "wan" and getattr(pipe.engine, "module", None) is not None
    cfg, ulysses = choose_degrees(world_size, pipe.config.num_heads if wan else None, d.guidance != 1)
    if ulysses > 1:
        _check_size(pipe, d, ulysses)
    return Mesh.create(cfg, ulysses)


def _check_size(pipe, d, ulysses: int) -> None:
    """The patch grid's token count must divide by the Ulysses degree; name the flags that would fit."""
    g, (pt, ph, pw) = pipe.codec.geometry, pipe.config.patch_size
    _, nf, nh, nw = g.latent_shape(d.num_frames, d.height, d.width)
    flags = (lambda n: f"--frames {(n * pt - 1) * g.time_factor + 1}", lambda n: f"--height {n * ph * g.space_factor}",
             lambda n: f"--width {n * pw * g.space_factor}")
    check_sequence((nf // pt, nh // ph, nw // pw), ulysses, lambda axis, n: flags[axis](n))


class RankZeroDecodes:
    """The codec of ranks other than 0: encodes as usual (conditioning must match), skips the decode."""

    def __init__(self, codec):
        self._codec = codec

    def __getattr__(self, name):
        return getattr(self._codec, name)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.zeros(3, 1, 2, 2)  # a placeholder: this rank writes nothing
