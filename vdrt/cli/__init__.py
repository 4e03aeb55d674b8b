"""The `vdrt` command line: generate, build, run, bench, calibrate, inspect, info (each with --help); `vdrt --version`.

argparse only: flags -> a GenerateRequest (or a build / bench description) -> the library. Every
`VdrtError` (bad input, missing dependency) becomes one line on stderr and exit code 2; nothing
else is caught, so real bugs keep their traceback. `-v`/`-q` and `--threads` are taken before or
after the command.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from vdrt.errors import VdrtError

COMMANDS = ("generate", "build", "run", "bench", "calibrate", "inspect", "verify", "info")
COMPUTE = ("generate", "build", "run", "bench", "calibrate")


def _common() -> argparse.ArgumentParser:
    """Options every command takes after its name too (SUPPRESS: a value given before the command stays)."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: debug)")
    c.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    c.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                   help="CPU threads for torch (default: $OMP_NUM_THREADS, else the physical cores)")
    return c


def parser() -> argparse.ArgumentParser:
    import importlib

    import vdrt

    p = argparse.ArgumentParser(prog="vdrt", description="vdrt: a compiled inference runtime for video diffusion")
    p.add_argument("--version", action="version", version=f"vdrt {vdrt.__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    sub = _WithCommon(p.add_subparsers(dest="command", metavar="COMMAND"), _common())
    for name in COMMANDS:
        importlib.import_module(f"vdrt.cli.{name}").add_parser(sub)
    return p


class _WithCommon:
    """The subparsers action, giving every command the common options (-v, -q, --threads)."""

    def __init__(self, sub, common: argparse.ArgumentParser):
        self.sub, self.common = sub, common

    def add_parser(self, name: str, **kw):
        return self.sub.add_parser(name, parents=[self.common, *kw.pop("parents", [])], **kw)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.command is None:
        parser().print_help()
        return 2
    try:
        if args.command in COMPUTE:
            set_threads(args.threads)
        return int(args.func(args) or 0)
    except VdrtError as e:
        print(f"vdrt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vdrt {args.command}: interrupted", file=sys.stderr)
        return 130


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.INFO if verbose == 0 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("httpx", "urllib3", "filelock", "torch", "diffusers", "transformers", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def set_threads(threads: int | None) -> int:
    """torch's intra-op threads: --threads, else $OMP_NUM_THREADS, else the physical cores (2x faster than the
    logical count on a busy 2-core box). Returns the number set."""
    from vdrt.errors import ConfigError

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be >= 1")
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = threads or (int(env) if env.isdigit() and int(env) > 0 else physical_cores())
    import torch

    torch.set_num_threads(n)
    return n


def physical_cores() -> int:
    """Physical cores this process may run on (/proc/cpuinfo's core ids; the logical count where unknown)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return logical
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            phys = value.strip()
        elif key.strip() == "core id":
            cores.add((phys, value.strip()))
    return max(1, min(len(cores) or logical, logical))


if __name__ == "__main__":
    sys.exit(main())
