"""The `vdrt` command line: generate, build, run, bench, inspect, info (each with --help).

Every `VdrtError` (bad input, missing dependency) becomes one line on stderr and exit code 2;
nothing else is caught, so real bugs keep their traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys

from vdrt.errors import VdrtError

COMMANDS = ("generate", "build", "run", "bench", "inspect", "verify", "info")


def parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="vdrt", description="vdrt: a compiled inference runtime for video diffusion")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vdrt.cli.{name}").add_parser(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if args.command is None:
        parser().print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VdrtError as e:
        print(f"vdrt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vdrt {args.command}: interrupted", file=sys.stderr)
        return 130


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.INFO if verbose == 0 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("httpx", "urllib3", "filelock", "torch", "diffusers", "transformers", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
