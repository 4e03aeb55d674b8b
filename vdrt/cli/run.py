"""`vdrt run ENGINE_DIR PROMPT -o out.mp4`: generate with a built engine (same flags as generate)."""
from __future__ import annotations


def add_parser(sub):
    from vdrt.cli.generate import add_parser as gen_parser

    return gen_parser(sub, name="run")
