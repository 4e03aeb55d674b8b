"""The CLI, used as a hostile user would: every bad command exits 2 with one line naming the problem and the fix,
before heavy work, leaving nothing behind. Each row: (class, argv, words the line must hold).

`{m}` is the folder of hostile media (conftest `media`), `{w}` the working folder; generate rows start from a
small valid factorized-tiny command, and the row's own flags come last (argparse: the last one wins).
"""
from __future__ import annotations

import pytest

from tests.hardening.hardening_helpers import cli_refusal, record

G = ["generate", "x", "--model", "factorized-tiny", "--frames", "5", "--height", "32", "--width", "32",
     "--steps", "1", "--no-progress", "-o", "out.gif"]
WAN = ["--model", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32"]

ROWS = [
    # ---- sizes and memory (VDRT_MEMORY_LIMIT=16G in every row: the same refusal on any machine)
    ("memory", [*WAN, "--frames", "401", "--height", "1024", "--width", "1024"],
     ("401 frames of 1024x1024", "needs about", "16.00 GiB is available", "frames fit")),
    ("memory", ["--frames", "64", "--height", "2048", "--width", "2048"], ("at most 32 frames", "--frames 32")),
    ("memory", ["--frames", "32", "--height", "4096", "--width", "4096"], ("needs about", "decode", "fit")),
    ("memory", [*WAN, "--frames", "1", "--height", "8192", "--width", "8192"], ("8192x8192", "needs about")),
    ("memory", ["--frames", "32", "--height", "1024", "--width", "1024", "--guidance", "5"],
     ("32 frames of 1024x1024", "denoise")),
    ("memory", [*WAN, "--frames", "4101", "--height", "16", "--width", "16"], ("patches per axis",)),
    ("memory", ["--steps", "100000000000"], ("num_steps=100000000000", "limit of 1000")),
    ("memory", ["--steps", "1e11"], ("--steps", "invalid int value")),
    ("memory", ["--frames", "100000"], ("num_frames=100000", "above the limit")),
    ("memory", ["--height", "1000000"], ("height=1000000", "above the limit")),
    ("memory", ["--width", "99999999999999999999"], ("width=", "above the limit")),
    ("memory", ["--frames", "0"], ("num_frames=0", "positive integer")),
    ("memory", ["--frames", "-5"], ("num_frames=-5", "positive integer")),
    ("memory", ["--width", "0"], ("width=0",)),
    ("memory", ["--height", "30"], ("height=30", "multiple of 4")),
    ("memory", [*WAN, "--frames", "6"], ("num_frames=6", "4k+1")),
    ("memory", ["--model", "vdrt-tiny", "--frames", "9"], ("trained at 17 frames", "--frames 17")),
    ("memory", ["--model", "vdrt-tiny", "--height", "128", "--width", "128", "--frames", "17"], ("trained at",)),
    ("memory", ["--threads", "0"], ("--threads 0", ">= 1")),
    ("memory", ["--gpus", "0"], ("--gpus 0", ">= 1")),
    ("memory", ["--gpus", "2"], ("--gpus 2", "--device cpu")),
    # ---- types and values of flags
    ("types", ["--seed", "-1"], ("seed=-1", "[0, 2^63)")),
    ("types", ["--seed", "9223372036854775808"], ("seed=9223372036854775808", "[0, 2^63)")),
    ("types", ["--seed", "abc"], ("--seed", "invalid int value")),
    ("types", ["--seed", "3.7"], ("--seed", "invalid int value")),
    ("types", ["--frames", "3.5"], ("--frames", "invalid int value")),
    ("types", ["--frames", "true"], ("--frames", "invalid int value")),
    ("types", ["--guidance", "high"], ("--guidance", "invalid float value")),
    ("types", ["--guidance", "inf"], ("guidance=inf", "finite")),
    ("types", ["--guidance", "nan"], ("guidance=nan", "finite")),
    ("types", ["--guidance", "-1"], ("guidance=-1", ">= 0")),
    ("types", ["--shift", "0"], ("shift=0", "> 0")),
    ("types", ["--shift", "inf"], ("shift=inf",)),
    ("types", ["--shift", "-2"], ("shift=-2",)),
    ("types", ["--fps", "0"], ("fps=0", "positive")),
    ("types", ["--fps", "-3"], ("fps=-3",)),
    ("types", ["--fps", "100000"], ("fps=100000", "below 10000")),
    ("types", ["--fps", "2.5"], ("--fps", "invalid int value")),
    ("types", ["--sampler", "ddim"], ("unknown sampler 'ddim'", "euler")),
    ("types", ["--mode", "warp"], ("unknown mode 'warp'", "t2v")),
    ("types", ["--precision", "fp64"], ("--precision 'fp64'", "bf16")),
    ("types", ["--precision", "int8"], ("--precision 'int8'",)),
    ("types", ["--precision", "float8"], ("--precision 'float8'",)),
    ("types", ["--dtype", "float64"], ("--dtype 'float64'",)),
    ("types", ["--attention", "magic"], ("--attention magic", "unknown implementation")),
    ("types", ["--sparse", "0.25"], ("--sparse", "lossy --attention")),
    ("types", ["--dense-steps", "2"], ("--dense-steps", "lossy --attention")),
    ("types", ["--attention", "vdrt-sparse", "--sparse", "1.5"], ("density", "(0, 1]")),
    ("types", ["--attention", "vdrt-sparse", "--sparse", "2x0x5"], ("window",)),
    ("types", ["--attention", "vdrt-sparse", "--sparse", "abc"], ("--sparse 'abc'", "2x7x5")),
    ("types", ["--attention", "vdrt-int8", "--sparse", "0.5"], ("--sparse goes with",)),
    ("types", ["--recipe", "nope"], ("unknown recipe 'nope'",)),
    ("types", ["--recipe", "wan-4step-distill"], ("wan-4step-distill",)),
    ("types", ["--lora", "{w}/missing.safetensors"], ("missing.safetensors",)),
    ("types", ["--lora", "{m}/text.txt"], ("text.txt",)),
    ("types", ["--lora", "{m}/clip.mp4:abc"], ("clip.mp4:abc",)),
    ("types", ["--prompt-embeds", "{w}/missing.safetensors"], ("missing.safetensors", "does not exist")),
    ("types", ["--prompt-embeds", "{m}/text.txt"], ("text.txt", "safetensors")),
    ("types", ["--config", "{w}/missing.toml"], ("cannot read run config",)),
    ("types", ["--model", "nope-7b"], ("unknown model preset 'nope-7b'",)),
    ("types", ["--model", "/no/such/dir"], ("/no/such/dir", "no such directory")),
    ("types", ["--model", "{m}/text.txt"], ("is a file", "config.json")),
    ("types", ["--model", "{m}/empty_dir"], ("not a checkpoint directory", "config.json")),
    ("types", ["--model", "{m}"], ("not a checkpoint directory",)),
    # ---- devices
    ("devices", ["--device", "cuda"], ("cuda", "CPU-only", "cpu")),
    ("devices", ["--device", "cuda:7"], ("cuda:7",)),
    ("devices", ["--device", "tpu"], ("'tpu'", "'cpu'")),
    ("devices", ["--device", "mps"], ("mps", "cpu or cuda")),
    ("devices", ["--device", ""], ("device=''",)),
    ("devices", ["--device", "cpu:banana"], ("cpu:banana",)),
    ("devices", ["--cuda-graphs"], ("--cuda-graphs", "CUDA device")),
    ("devices", ["--device", "cuda", "--precision", "bf16"], ("cuda", "CPU-only")),
    # ---- modes and inputs a mode does not use (the rule: another mode's input is refused)
    ("modes", ["--strength", "0.5"], ("mode t2v does not use strength", "v2v")),
    ("modes", ["--known-frames", "3"], ("mode t2v does not use known_frames", "extend")),
    ("modes", ["--image", "{m}/square.png"], ("mode t2v does not use image", "i2v")),
    ("modes", ["--video", "{m}/clip.mp4"], ("mode t2v does not use video",)),
    ("modes", ["--mask", "{m}/mask.png"], ("mode t2v does not use mask", "inpaint")),
    ("modes", ["--mode", "i2v"], ("mode i2v needs a first image", "--image")),
    ("modes", ["--mode", "i2v", "--image", "{m}/square.png", "--mask", "{m}/mask.png"], ("does not use mask",)),
    ("modes", ["--mode", "i2v", "--image", "{m}/square.png", "--strength", "0.3"], ("does not use strength",)),
    ("modes", ["--mode", "i2v", "--image", "{m}/square.png", "--known-frames", "2"], ("does not use known_frames",)),
    ("modes", ["--mode", "extend"], ("mode extend needs an input video", "--video")),
    ("modes", ["--mode", "extend", "--video", "{m}/clip.mp4", "--image", "{m}/square.png"], ("does not use image",)),
    ("modes", ["--mode", "extend", "--video", "{m}/clip.mp4", "--known-frames", "5"], ("known_frames=5", "below")),
    ("modes", ["--mode", "extend", "--video", "{m}/clip.mp4", "--known-frames", "0"], ("known_frames=0",)),
    ("modes", ["--mode", "v2v"], ("mode v2v needs an input video",)),
    ("modes", ["--mode", "v2v", "--video", "{m}/clip.mp4", "--known-frames", "2"], ("does not use known_frames",)),
    ("modes", ["--mode", "v2v", "--video", "{m}/clip.mp4", "--strength", "0"], ("strength=0",)),
    ("modes", ["--mode", "v2v", "--video", "{m}/clip.mp4", "--strength", "1.5"], ("strength=1.5",)),
    ("modes", ["--mode", "inpaint", "--video", "{m}/clip.mp4"], ("mode inpaint needs a mask",)),
    ("modes", ["--mode", "inpaint", "--video", "{m}/clip.mp4", "--mask", "{m}/mask_other_size.png"],
     ("mask of shape", "does not match")),
    ("modes", ["--mode", "interpolate", "--video", "{m}/clip.mp4", "--mask", "{m}/mask.png"], ("does not use mask",)),
    ("modes", ["--mode", "outpaint", "--video", "{m}/clip.mp4", "--strength", "0.4"], ("does not use strength",)),
    ("modes", ["--mode", "interpolate"], ("first and last frames",)),
    # ---- media files
    ("media", ["--mode", "i2v", "--image", "{w}/missing.png"], ("missing.png", "does not exist")),
    ("media", ["--mode", "i2v", "--image", "{m}/bomb.png"], ("11000x11000", "decompression-bomb")),
    ("media", ["--mode", "i2v", "--image", "{m}/corrupt.png"], ("cannot read", "corrupt.png")),
    ("media", ["--mode", "i2v", "--image", "{m}/truncated.png"], ("truncated.png",)),
    ("media", ["--mode", "i2v", "--image", "{m}/empty.png"], ("empty.png",)),
    ("media", ["--mode", "i2v", "--image", "{m}/text.txt"], ("unknown suffix '.txt'",)),
    ("media", ["--mode", "extend", "--video", "{m}/corrupt.mp4"], ("cannot decode", "corrupt.mp4")),
    ("media", ["--mode", "extend", "--video", "{m}/text.txt"], ("unknown suffix '.txt'",)),
    ("media", ["--mode", "extend", "--video", "{m}/empty_dir"], ("holds no",)),
    ("media", ["--mode", "extend", "--video", "{m}/mixed", "--known-frames", "2"], ("all frames need one size",)),
    ("media", ["--mode", "extend", "--video", "{m}/bomb.png"], ("decompression-bomb",)),
    ("media", ["--mode", "v2v", "--video", "{w}/missing.mp4"], ("missing.mp4", "does not exist")),
    ("media", ["--mode", "inpaint", "--video", "{m}/clip.mp4", "--mask", "{m}/mask_bad.npy"], ("[0, 1]",)),
    ("media", ["--mode", "inpaint", "--video", "{m}/clip.mp4", "--mask", "{m}/corrupt.png"], ("corrupt.png",)),
    ("media", ["--mode", "inpaint", "--video", "{m}/clip.mp4", "--mask", "{m}/bomb.png"], ("decompression-bomb",)),
    ("media", ["--mode", "interpolate", "--video", "{m}/square.png"], ("at least 2 frames",)),
    # ---- outputs, refused before any work
    ("outputs", ["-o", "out.avi"], ("unknown suffix '.avi'", ".mp4")),
    ("outputs", ["-o", "out.txt"], ("unknown suffix '.txt'",)),
    ("outputs", ["-o", "out.MP4X"], ("unknown suffix",)),
    ("outputs", ["-o", "{m}/square.png"], ("unknown suffix '.png'", "folder")),
    ("outputs", ["-o", "{m}/clip.mp4"], ("exists; pass --force",)),
    ("outputs", ["-o", "{m}/text.txt/x.gif"], ("not a writable folder",)),
    ("outputs", ["-o", "{m}/mixed/"], ("holds other files",)),
    ("outputs", ["-o", "{m}/mixed/", "--force"], ("holds other files",)),
    ("outputs", ["-o", "{m}/text.txt/", "--force"], ("it is a file",)),
    ("outputs", ["-o", "{m}/empty.png/", "--force"], ("it is a file",)),
    ("outputs", ["-o", "{m}/clip"], ("it is a file",)),
]


@pytest.fixture(scope="module")
def existing(media):
    (media / "clip").write_bytes(b"a file where a frame folder would go")
    return media


@pytest.mark.parametrize("cls, flags, words", ROWS, ids=[f"{r[0]}:{' '.join(r[1])[:60]}" for r in ROWS])
def test_generate_refuses(cls, flags, words, work, existing, capsys, monkeypatch):
    monkeypatch.setenv("VDRT_MEMORY_LIMIT", "16G")
    flags = [f.format(m=existing, w=work) for f in flags]
    record(cls, " ".join(flags), cli_refusal([*G, *flags], words, work, capsys, limit=30))


RUN_ROWS = [
    ("engines", ["run", "/no/such/engine", "x"], ("not an engine directory",)),
    ("engines", ["run", "{m}/empty_dir", "x"], ("not an engine directory",)),
    ("engines", ["run", "{e}", "x", "--frames", "9", "--height", "16", "--width", "16", "--guidance", "1"],
     ("frames=9 is outside this engine's profile",)),
    ("engines", ["run", "{e}", "x", "--frames", "5", "--height", "256", "--width", "256", "--guidance", "1"],
     ("height=256 is outside",)),
    ("engines", ["run", "{e}", "x", "--frames", "5", "--height", "16", "--width", "16", "--guidance", "1", "-o",
                 "a.avi"], ("unknown suffix",)),
    ("engines", ["run", "{t}", "x", "--frames", "5", "--height", "16", "--width", "16"], ("fingerprint",)),
    ("engines", ["verify", "{t}"], ("fingerprint",)),
    ("engines", ["verify", "/no/such"], ("/no/such",)),
    ("engines", ["inspect", "/no/such"], ("/no/such",)),
    ("engines", ["run", "{e}", "x", "--frames", "5", "--height", "16", "--width", "16", "--lora",
                 "{m}/square.png"], ("square.png",)),
]


@pytest.fixture(scope="module")
def engine_dirs(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from tests.runtime.integrity_helpers import edit_manifest, write_engine

    d = tmp_path_factory.mktemp("engines")
    good = write_engine(d / "good")
    bad = write_engine(d / "tampered")
    edit_manifest(bad, lambda m: m["profiles"]["frames"].update(max=99), refingerprint=False)
    return good, bad


@pytest.mark.parametrize("cls, argv, words", RUN_ROWS, ids=[f"{r[0]}:{' '.join(r[1])[:50]}" for r in RUN_ROWS])
def test_engine_commands_refuse(cls, argv, words, work, media, engine_dirs, capsys):
    argv = [a.format(m=media, w=work, e=engine_dirs[0], t=engine_dirs[1]) for a in argv]
    if argv[0] == "run" and "-o" not in argv:
        argv += ["-o", "out.gif"]
    record(cls, " ".join(argv), cli_refusal(argv, words, work, capsys, limit=30))
