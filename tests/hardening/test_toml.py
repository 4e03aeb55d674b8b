"""TOML run configs (`vdrt generate --config run.toml`) written by a hostile user: wrong types (a string is not a
bool, a bool is not an int), unknown keys, values out of range, broken TOML. One line, exit 2, nothing written."""
from __future__ import annotations

import pytest

from tests.hardening.hardening_helpers import cli_refusal, record

BASE = 'model = "factorized-tiny"\nframes = 5\nheight = 32\nwidth = 32\nsteps = 1\nno-progress = true\n'

ROWS = [
    ('trust-pickle = "false"', ("trust-pickle", "bool")),
    ('trust_pickle = 0', ("trust-pickle",)),
    ('force = "yes"', ("force",)),
    ('cuda-graphs = 1', ("cuda-graphs",)),
    ('frames = true', ("frames", "integer")),
    ('frames = 5.0', ("frames",)),
    ('frames = "5"', ("frames",)),
    ('frames = 0', ("frames", "greater than 0")),
    ('steps = -1', ("steps",)),
    ('seed = 3.7', ("seed",)),
    ('seed = -1', ("seed",)),
    ('seed = 9223372036854775808', ("seed",)),
    ('seed = "0"', ("seed",)),
    ('guidance = "high"', ("guidance",)),
    ('guidance = inf', ("guidance",)),
    ('guidance = nan', ("guidance",)),
    ('guidance = -3.0', ("guidance",)),
    ('shift = 0.0', ("shift",)),
    ('strength = 2.0', ("strength",)),
    ('fps = 0', ("fps",)),
    ('prompt = 5', ("prompt",)),
    ('prompt = ["a", "b"]', ("prompt",)),
    ('lora = 5', ("lora",)),
    ('gpus = 0', ("gpus",)),
    ('stepz = 3', ("unknown key 'stepz'", "known keys")),
    ('[generate.extra]\nx = 1', ("unknown key 'extra'",)),
    ('generate = 5', ("[generate] must be a table",)),
    ('frames = ', ("not valid toml",)),
    ('seed = 5\nseed = 6', ("not valid toml",)),
    ('mode = "warp"', ("unknown mode 'warp'",)),
    ('sampler = "ddim"', ("unknown sampler",)),
    ('device = "tpu"', ("'tpu'",)),
    ('precision = "fp64"', ("fp64",)),
    ('out = "clip.avi"', ("unknown suffix '.avi'",)),
    ('strength = 0.5', ("does not use strength",)),
    ('image = "/no/such.png"\nmode = "i2v"', ("/no/such.png",)),
]


@pytest.mark.parametrize("line, words", ROWS, ids=[r[0][:40] for r in ROWS])
def test_a_bad_run_config_is_refused(line, words, work, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    key = line.split("=")[0].strip().replace("_", "-")
    base = "".join(ln + "\n" for ln in BASE.splitlines() if ln.split("=")[0].strip() != key)
    text = line if line.startswith(("[generate", "generate =")) else base + line
    cfg.write_text(("[generate]\n" + BASE if line.startswith("[generate.") else "") + text + "\n")
    argv = ["generate", "x", "--config", str(cfg)] + ([] if "out =" in line else ["-o", "out.gif"])
    record("toml", line, cli_refusal(argv, words, work, capsys, limit=30))


def test_a_binary_file_as_config(work, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_bytes(b"\xff\xfe\x00garbage\x00")
    record("toml", "binary file", cli_refusal(["generate", "x", "--config", str(cfg)], ("not UTF-8",), work, capsys))


def test_a_folder_as_config(work, tmp_path, capsys):
    record("toml", "a folder", cli_refusal(["generate", "x", "--config", str(tmp_path)], ("cannot read run config",),
                                          work, capsys))
