"""Starting N local processes through torch.distributed.run, and what a rank other than 0 skips.

`elastic_run(n, argv)` runs the elastic launcher in-process (`torch.distributed.run.run`) on
`python -m vdrt ARGV` with `VDRT_PARALLEL_CHILD=1` in each child's environment; what the children
do (the `vdrt generate --gpus N` child entry) lives in `vdrt.cli.parallel`: this package knows
nothing of the CLI's flags. `RankZeroDecodes` wraps the codec of ranks other than 0.

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

import torch


log = logging.getLogger(__name__)

CHILD_ENV = "VDRT_PARALLEL_CHILD"
LOOPBACK = "127.0.0.1"
# NVLink multicast (NVLS) stays off on the lent multi-GPU hosts; loopback for the bootstrap sockets.
CHILD_DEFAULTS = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
                  "GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"}


def in_launched_child() -> bool:
    """True inside a process started by this launcher or by torchrun with more than one process."""
    return os.environ.get(CHILD_ENV) == "1" or ("RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1)


def elastic_run(nproc: int, argv: list[str], module: str | None = "vdrt") -> int:
    """Run `python -m MODULE ARGV` (or the script ARGV[0] when module is None) on `nproc` local ranks.

    The children get CHILD_DEFAULTS (NCCL without NVLS, loopback sockets); returns 0 or a failed rank's exit code.
    """
    with _environ(child_env(nproc)), loopback_store() as port:
        return _run_elastic(launcher_args(nproc, port, argv, module), nproc)


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


class RankZeroDecodes:
    """The codec of ranks other than 0: encodes as usual (conditioning must match), skips the decode."""

    def __init__(self, codec):
        self._codec = codec

    def __getattr__(self, name):
        return getattr(self._codec, name)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.zeros(3, 1, 2, 2)  # a placeholder: this rank writes nothing
