"""Inputs that are odd but valid: the correct result, and a log line wherever an input is changed or not used
(resized, stretched, retimed, a negative prompt at guidance 1), never silently. Long and huge inputs are decoded
only as far as the generation needs."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import vdrt
import vdrt.io as vio
from tests.hardening.hardening_helpers import Ran, record
from vdrt.cli import main
from vdrt.io import read_video

SMALL = ["--model", "factorized-tiny", "--frames", "5", "--height", "32", "--width", "32", "--steps", "1",
         "--no-progress"]


def _cli(argv, capsys, caplog):
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rc = main(["--threads", "1", *argv])
    return rc, capsys.readouterr(), caplog.text


def _judge(ok: bool, detail: str = "") -> Ran:
    return Ran("CLEAR" if ok else "WRONG", detail)


LOGGED = [  # (scenario, extra flags, a log line that must appear, frames expected)
    ("negative prompt at guidance 1", ["--negative-prompt", "blurry", "--guidance", "1"],
     "negative prompt is not used: guidance is 1", 5),
    ("i2v with an image of another aspect", ["--mode", "i2v", "--image", "{m}/wide.png"], "stretched to 32x32", 5),
    ("i2v with an image of this aspect, other size", ["--mode", "i2v", "--image", "{m}/square.png", "--height", "16",
                                                      "--width", "16"], "resized from 32x32 to 16x16", 5),
    ("v2v with a shorter video", ["--mode", "v2v", "--video", "{m}/clip.mp4", "--frames", "12", "--steps", "2"],
     "its last frame is repeated to make 12", 12),
    ("v2v with a longer video", ["--mode", "v2v", "--video", "{m}/long.mp4", "--frames", "4", "--steps", "2"],
     "using the first 4 frames", 4),
    ("inpaint with a longer video", ["--mode", "inpaint", "--video", "{m}/clip.mp4", "--mask", "{m}/mask.png",
                                     "--frames", "3"], "using the first 3 frames", 3),
    ("extend from a long 480x270 video", ["--mode", "extend", "--video", "{m}/long.mp4", "--frames", "8"],
     "stretched to 32x32", 8),
]


@pytest.mark.parametrize("name, flags, line, frames", LOGGED, ids=[r[0] for r in LOGGED])
def test_changed_inputs_are_logged_and_the_result_is_right(name, flags, line, frames, work, media, capsys, caplog):
    flags = [f.format(m=media) for f in flags]
    rc, _, log = _cli(["generate", "x", "-o", "o.gif", *SMALL, *flags], capsys, caplog)
    out = read_video(work / "o.gif") if rc == 0 else None
    ok = rc == 0 and line in log and out.shape[1:] == (int(flags[flags.index("--height") + 1]) if "--height" in flags
                                                       else 32, out.shape[2], 3)
    record("silently changed input", name, _judge(ok, f"rc={rc}, log: {log[-300:]!r}"))


def test_extend_decodes_only_the_frames_it_keeps(work, media, monkeypatch):
    decoded = []
    real = vio._Frames.add
    monkeypatch.setattr(vio._Frames, "add", lambda self, f: decoded.append(f.shape) or real(self, f))
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    pipe("x", mode="extend", video=str(media / "long.mp4"), num_frames=16, num_steps=1, height=32, width=32,
         progress=False)
    record("memory: input media", "extend from a 120-frame video decodes 4 frames",  # 16 // 4 kept, of 120
           _judge(len(decoded) == 4, str(decoded)))


def test_v2v_decodes_one_frame_more_than_it_uses(work, media, monkeypatch):
    decoded = []
    real = vio._Frames.add
    monkeypatch.setattr(vio._Frames, "add", lambda self, f: decoded.append(f.shape) or real(self, f))
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    pipe("x", mode="v2v", video=str(media / "long.mp4"), num_frames=6, num_steps=2, height=16, width=16,
         progress=False)
    record("memory: input media", "v2v from a 120-frame video decodes 7 frames", _judge(len(decoded) == 7))


def test_i2v_from_a_video_decodes_its_first_frame_only(work, media, monkeypatch):
    decoded = []
    real = vio._Frames.add
    monkeypatch.setattr(vio._Frames, "add", lambda self, f: decoded.append(f.shape) or real(self, f))
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    pipe("x", mode="i2v", video=str(media / "long.mp4"), num_frames=3, num_steps=1, height=16, width=16,
         progress=False)
    record("memory: input media", "i2v from a video decodes 1 frame", _judge(len(decoded) == 1))


API_OK = [
    ("seed=None is the default seed", dict(seed=None), dict(seed=0)),
    ("prompt=None is the empty prompt (diffusers)", dict(prompt=None), dict(prompt="")),
    ("dtype names: the same as torch dtypes", "float16-by-name", None),
    ("an int timestep engine call", "int-timestep", None),
]


@pytest.mark.parametrize("name, kw, same_as", API_OK, ids=[r[0] for r in API_OK])
def test_api_spellings_give_the_same_result(name, kw, same_as, work):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    size = dict(num_frames=3, height=16, width=16, num_steps=1, progress=False)
    if kw == "float16-by-name":
        a = vdrt.load_denoiser("factorized-tiny", dtype="bf16")
        b = vdrt.load_denoiser("factorized-tiny", dtype=torch.bfloat16)
        ok = all(torch.equal(p, q) and p.dtype == torch.bfloat16 for p, q in zip(a.parameters(), b.parameters()))
    elif kw == "int-timestep":
        x, c = torch.randn(1, 3, 2, 8, 8), torch.randn(1, 4, 64)
        ok = torch.equal(pipe.engine(x, torch.tensor([500]), c), pipe.engine(x, torch.tensor([500.0]), c))
    else:
        prompt = {"prompt": kw.pop("prompt", "x")}
        a = pipe(prompt["prompt"], **size, **kw).frames
        b = pipe(same_as.pop("prompt", "x"), **size, **same_as).frames
        ok = np.array_equal(a, b)
    record("api: accepted spellings", name, _judge(ok))


def test_force_replaces_and_a_new_folder_is_made(work, capsys, caplog):
    (work / "o.gif").write_bytes(b"old")
    rc, _, _ = _cli(["generate", "x", "-o", "o.gif", "--force", *SMALL], capsys, caplog)
    record("outputs: correct", "--force replaces a file", _judge(rc == 0 and read_video(work / "o.gif").shape[0] >= 1))
    rc, _, _ = _cli(["generate", "x", "-o", "new/deeper/clip.webp", *SMALL], capsys, caplog)
    record("outputs: correct", "a new nested folder", _judge(rc == 0 and (work / "new/deeper/clip.webp").is_file()))
    rc, _, _ = _cli(["generate", "x", "-o", "frames/", *SMALL], capsys, caplog)
    ok = rc == 0 and sorted(p.name for p in (work / "frames").iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]
    record("outputs: correct", "a PNG folder", _judge(ok))
    rc, _, _ = _cli(["generate", "x", "-o", "frames/", "--force", *SMALL, "--frames", "3"], capsys, caplog)
    ok = rc == 0 and len(list((work / "frames").iterdir())) == 3
    record("outputs: correct", "a PNG folder replaced with --force", _judge(ok))


def test_the_same_seed_gives_the_same_video_and_another_seed_another(work):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    size = dict(num_frames=3, height=16, width=16, num_steps=2, progress=False)
    a, b, c = (pipe("x", seed=s, **size).frames for s in (7, 7, 8))
    record("api: accepted spellings", "determinism", _judge(np.array_equal(a, b) and not np.array_equal(a, c)))
