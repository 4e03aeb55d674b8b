"""Writing the result when the disk fills up or permission is refused mid-write: one line, exit 2 (the CLI) or one
MediaError (the API), and nothing half-written left in the output folder."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import vdrt
import vdrt.io as vio
from tests.hardening.hardening_helpers import api_refusal, cli_refusal, record

G = ["generate", "x", "--model", "factorized-tiny", "--frames", "6", "--height", "16", "--width", "16",
     "--steps", "1", "--no-progress"]
ERRNOS = [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "quota"), (errno.EACCES, "permission denied"),
          (errno.EROFS, "read-only")]
FORMATS = [("out.mp4", "_to_av"), ("out.gif", "_to_pil"), ("out.webp", "_to_pil"), ("frames/", "_to_pil")]


def failing(monkeypatch, hook: str, code: int, after: int = 3):
    real, calls = getattr(vio, hook), []

    def fake(*args):
        calls.append(1)
        if len(calls) == after:
            raise OSError(code, os.strerror(code))
        return real(*args)
    monkeypatch.setattr(vio, hook, fake)


@pytest.mark.parametrize("code, words", ERRNOS, ids=[errno.errorcode[c] for c, _ in ERRNOS])
@pytest.mark.parametrize("out, hook", FORMATS, ids=[f for f, _ in FORMATS])
def test_the_cli_says_a_full_disk_in_one_line(work, capsys, monkeypatch, code, words, out, hook):
    failing(monkeypatch, hook, code)
    ran = cli_refusal([*G, "-o", out], (words, "nothing was left behind"), work, capsys)
    record("outputs: disk full / permission", f"vdrt generate -o {out}: {errno.errorcode[code]}", ran)


@pytest.mark.parametrize("code, words", ERRNOS[:2], ids=[errno.errorcode[c] for c, _ in ERRNOS[:2]])
def test_the_api_replacing_a_file_keeps_the_old_one(work, monkeypatch, code, words):
    target = work / "keep.gif"
    frames = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    vdrt.Video(frames).save(target)
    before = target.read_bytes()
    failing(monkeypatch, "_to_pil", code)
    ran = api_refusal(lambda: vdrt.Video(frames[::-1].copy()).save(target), ValueError, (words,))
    if ran.outcome == "CLEAR" and (target.read_bytes() != before or sorted(os.listdir(work)) != ["keep.gif"]):
        ran.outcome, ran.detail = "WRONG", f"the old file changed or temporaries left: {os.listdir(work)}"
    record("outputs: disk full / permission", f"Video.save over a file: {errno.errorcode[code]}", ran)
