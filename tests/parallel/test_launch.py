"""`vdrt generate --gpus N`: the launcher's command, its checks, and one end-to-end run on 2 CPU processes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vdrt.cli import main, parser
from vdrt.errors import ConfigError
from vdrt.cli import parallel as cli_parallel
from vdrt.parallel import launch

ONE_GPU_OR_NONE = pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has 2+ GPUs")
SMALL = ["--model", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--seed", "3"]


def _opts(argv):
    return {k: v for k, v in vars(parser().parse_args(argv)).items() if k != "func"}


@ONE_GPU_OR_NONE
def test_more_gpus_than_visible_exits_2(capsys):
    assert main(["generate", "a fox", "--gpus", "2", "-o", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert "--gpus 2: fewer GPUs than requested: 2 processes but" in err and "--device cpu" in err


def test_gpus_below_one_exits_2(capsys):
    assert main(["generate", "a fox", "--gpus", "0"]) == 2
    assert "--gpus 0 must be >= 1" in capsys.readouterr().err


def test_child_command_reparses_to_the_same_options():
    argv = ["-v", "generate", "-a fox, at night", "--gpus", "4", "--device", "cpu", "--guidance", "4.5",
            "--no-progress", "-o", "clip.gif", *SMALL]
    opts = _opts(argv)
    child = cli_parallel.child_argv(opts)
    assert child[-2:] == ["--", "-a fox, at night"]  # a prompt that looks like a flag stays the prompt
    assert _opts(child) == opts


def test_child_command_for_run_keeps_the_engine_dir_first():
    opts = _opts(["run", "engines/x", "a fox", "--gpus", "2"])
    child = cli_parallel.child_argv(opts)
    assert child[0] == "run" and child[-3:] == ["--", "engines/x", "a fox"]
    assert _opts(child) == opts


def test_launcher_arguments_parse_as_one_loopback_node():
    from torch.distributed.run import get_args_parser

    args = get_args_parser().parse_args(launch.launcher_args(4, 29123, ["generate", "--", "a fox"]))
    assert (args.nnodes, args.nproc_per_node, args.master_addr, args.master_port) == ("1", "4", "127.0.0.1", 29123)
    assert args.rdzv_backend == "static" and args.module and args.training_script == "vdrt"
    assert args.training_script_args == ["generate", "--", "a fox"] and args.max_restarts == 0


def test_child_environment(monkeypatch):
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "eth0")  # a user's setting wins
    env = launch.child_env(2)
    assert env["VDRT_PARALLEL_CHILD"] == "1" and env["NCCL_NVLS_ENABLE"] == "0"
    assert env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1" and env["NVSHMEM_DISABLE_NVLS"] == "1"
    assert env["GLOO_SOCKET_IFNAME"] == "lo" and env["NCCL_SOCKET_IFNAME"] == "eth0"


def test_launched_child_detection(monkeypatch):
    for k in ("VDRT_PARALLEL_CHILD", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert not launch.in_launched_child() and not cli_parallel.wants_parallel({"gpus": 1})
    assert cli_parallel.wants_parallel({"gpus": 2})
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # started by torchrun without --gpus
    assert launch.in_launched_child() and cli_parallel.wants_parallel({"gpus": None})


def test_preflight_checks_presets_before_starting_processes():
    cli_parallel.preflight({"model": "wan2.1-t2v-1.3b", "gpus": 8}, 8)  # guidance 5: 2 CFG x 4 Ulysses, 12 heads
    with pytest.raises(ConfigError, match="ulysses degree 8 does not divide the model's 12 attention heads"):
        cli_parallel.preflight({"model": "wan2.1-t2v-1.3b", "gpus": 8, "guidance": 1.0}, 8)
    cli_parallel.preflight({"model": "some/dir", "gpus": 8}, 8)  # not a preset: checked in the children


def test_size_check_names_the_flags_that_fit():
    """Wan 464x832 x 81 frames: a 21x29x52 grid, 31668 tokens, splits over 4 Ulysses ranks but not 8."""
    from types import SimpleNamespace

    from vdrt.pipeline.codecs import LatentGeometry
    from vdrt.pipeline.sources import WAN_FULL
    from vdrt.request import GenerateRequest
    from vdrt.models.wan import WanConfig

    pipe = SimpleNamespace(codec=SimpleNamespace(geometry=LatentGeometry(16, 4, 8, 16)),
                           config=WanConfig.from_name("wan2.1-t2v-1.3b"))
    d = GenerateRequest(num_frames=81, height=464, width=832)
    assert WAN_FULL.num_frames == 81 and WAN_FULL.width == 832
    cli_parallel.check_size(pipe, d, 4)
    with pytest.raises(ConfigError, match=r"21x29x52 .* 31668 tokens, not divisible by ulysses degree 8.*"
                                          r"\(--frames 85\).*\(--height 480\).*\(--width 896\)"):
        cli_parallel.check_size(pipe, d, 8)


def test_ranks_other_than_0_skip_the_decode_only():
    from types import SimpleNamespace

    codec = SimpleNamespace(geometry="g", encode=lambda v: v * 2, decode=lambda x: 1 / 0)
    other = launch.RankZeroDecodes(codec)
    assert other.geometry == "g" and other.encode(torch.ones(1)).item() == 2.0
    assert other.decode(torch.randn(16, 2, 4, 4)).shape == (3, 1, 2, 2)


def test_loopback_store_listens_on_127_0_0_1_only():
    with launch.loopback_store() as port:
        listening = _listening_ports()
    assert ("0100007F", port) in listening and not any(p == port and a != "0100007F" for a, p in listening)


def _listening_ports() -> list[tuple[str, int]]:
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(name):
            with open(name) as f:
                lines = f.read().splitlines()[1:]
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":
                    addr, port = local.split(":")
                    rows.append((addr, int(port, 16)))
    return rows


@pytest.mark.slow
def test_two_cpu_processes_end_to_end_match_one_process(tmp_path):
    """torch.distributed.run, 2 gloo ranks (guidance 1: 2 Ulysses ranks); rank 0 alone writes; same frames."""
    from vdrt.io import read_video

    par, one = tmp_path / "par", tmp_path / "one"
    cmd = [sys.executable, "-m", "vdrt", "generate", "a red fox", "--gpus", "2", "--device", "cpu", "--guidance",
           "1", "--no-progress", "-o", str(par / "frames"), *SMALL]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1 and "1 CFG x 2 Ulysses ranks" in run.stdout
    assert sorted(p.name for p in par.iterdir()) == ["frames"]
    assert main(["-q", "generate", "a red fox", "--device", "cpu", "--guidance", "1", "--no-progress", "-o",
                 str(one / "frames"), *SMALL]) == 0
    a, b = read_video(par / "frames"), read_video(one / "frames")
    assert a.shape == b.shape == (5, 32, 32, 3) and a.std() > 0
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
