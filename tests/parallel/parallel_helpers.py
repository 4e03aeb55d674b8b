"""Multi-process test jobs for vdrt.parallel: CPU, gloo, a file rendezvous, sockets on 127.0.0.1 only.

The parent (pytest) writes a case (weights + inputs) with `make_case`, runs `run_job(job, world, dir)`,
which starts `world` copies of this file as ranks (RANK / WORLD_SIZE / LOCAL_RANK, as torchrun sets
them, and VDRT_INIT_METHOD=file://...), and compares each rank's saved outputs with its own
single-process computation. The module name is unique on purpose (tests/ has several conftests).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
SHAPE = (2, 16, 3, 8, 12)  # (B, C, F, H, W): a 3x4x6 patch grid, 72 tokens (splits over 2 and 4 ranks)
BAD_SHAPE = (2, 16, 3, 6, 10)  # a 3x3x5 grid, 45 tokens: splits over no even number of ranks
TEXT = (2, 7, 64)  # (B, T, text_dim)
LOOP = dict(num_frames=3, height=8, width=12, num_steps=3, guidance=3.0, sampler="unipc", shift=3.0)


def tiny_config(**kw):
    from vdrt.models.wan import WanConfig

    return WanConfig.from_name("wan-tiny", **{"num_heads": 4, **kw})  # dim 128: 4 heads of 32


def make_case(directory: Path) -> Path:
    """Random weights and inputs (fresh, never zeros), saved for the ranks; returns the file."""
    from vdrt import models

    torch.manual_seed(1234)
    model = models.build_model(tiny_config()).eval()
    case = {"state": model.state_dict(), "latents": torch.randn(SHAPE), "timestep": torch.tensor([700.0, 310.0]),
            "context": torch.randn(TEXT), "bad_latents": torch.randn(BAD_SHAPE)}
    path = directory / "case.pt"
    torch.save(case, path)
    return path


def load_model(case: dict):
    from vdrt import models

    model = models.build_model(tiny_config()).eval().requires_grad_(False)
    model.load_state_dict(case["state"])
    return model


class CaptureCodec:
    """Latents are the 'video' (16 channels, no compression); decode records the final latents."""

    def __init__(self):
        from vdrt.pipeline.codecs import LatentGeometry

        self.geometry = LatentGeometry(channels=16, time_factor=1, space_factor=1, multiple=2)
        self.latents = None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.latents = latents.clone()
        return latents[:3].tanh()


def tiny_pipeline(engine):
    """A Pipeline over `engine` (a WanModel or an engine) with the capture codec and a hashed-word encoder."""
    import vdrt
    from vdrt.pipeline.encoders import HashTextEncoder
    from vdrt.pipeline.sources import ModelInfo, Parts
    from vdrt.request import Defaults
    from vdrt.engines.torch import TorchEngine

    if isinstance(engine, torch.nn.Module):
        engine = TorchEngine(engine)
    info = ModelInfo("test", "wan-tiny-4h", engine.config, Defaults(**LOOP))
    return vdrt.Pipeline(Parts(engine, CaptureCodec(), HashTextEncoder(64), info))


def sample(pipe) -> torch.Tensor:
    """3 UniPC steps with guidance 3 -> the final latents (16, F, H, W)."""
    pipe("a red fox running", negative_prompt="blurry static", seed=7, progress=False)
    return pipe.codec.latents


# ---------------------------------------------------------------- the parent side


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(out).all(), "NaN/Inf in the parallel output"
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()



def run_job(job: str, world: int, directory: Path, timeout: float = 240) -> None:
    """Run `job` on `world` local ranks; raise with every rank's output if one fails (the rest are killed) or hangs."""
    import time

    store, logs = directory / f"store_{job}_{world}", [directory / f"{job}_rank{r}.log" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(HERE), job, str(directory)], env=_rank_env(r, world, store),
                              stdout=logs[r].open("w"), stderr=subprocess.STDOUT) for r in range(world)]
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    if any(p.returncode != 0 for p in procs):
        text = "\n".join(f"--- rank {r} (exit {p.returncode})\n{logs[r].read_text()}" for r, p in enumerate(procs))
        raise RuntimeError(f"job {job} on {world} ranks failed or timed out after {timeout} s:\n{text}")


def _rank_env(rank: int, world: int, store: Path) -> dict:
    return {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "VDRT_INIT_METHOD": f"file://{store}", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def result(directory: Path, job: str, name: str, rank: int):
    return torch.load(directory / f"{job}_{name}_rank{rank}.pt")


# ---------------------------------------------------------------- a rank


def _save(directory: Path, job: str, name: str, value) -> None:
    import torch.distributed as dist

    torch.save(value, directory / f"{job}_{name}_rank{dist.get_rank()}.pt")


def _error_of(fn) -> str:
    """The ConfigError message of fn(), or a note that none was raised."""
    from vdrt.errors import ConfigError

    try:
        fn()
    except ConfigError as e:
        return f"ConfigError: {e}"
    return "no error"


def _forward(case, cfg_degree: int, ulysses: int):
    from vdrt.parallel import Mesh, ParallelEngine

    engine = ParallelEngine(load_model(case), Mesh.create(cfg_degree, ulysses))
    return engine(case["latents"], case["timestep"], case["context"])


def _loop(case, cfg_degree: int, ulysses: int):
    from vdrt.parallel import Mesh, ParallelEngine

    return sample(tiny_pipeline(ParallelEngine(load_model(case), Mesh.create(cfg_degree, ulysses))))


def _bad_inputs(case, directory: Path, job: str) -> None:
    from vdrt import models
    from vdrt.parallel import Mesh, ParallelEngine

    engine = ParallelEngine(load_model(case), Mesh.create(1, 2))
    _save(directory, job, "bad_sequence", _error_of(lambda: engine(case["bad_latents"], case["timestep"],
                                                                   case["context"])))
    three_heads = models.build_model(tiny_config(dim=96, num_heads=3))
    _save(directory, job, "bad_heads", _error_of(lambda: ParallelEngine(three_heads, Mesh.create(1, 2))))
    _save(directory, job, "bad_world", _error_of(lambda: Mesh.create(2, 2)))


def job_w2(case, directory: Path) -> None:
    """2 ranks: Ulysses 2, CFG 2, both through the sampling loop, and the bad inputs."""
    _save(directory, "w2", "ulysses2", _forward(case, 1, 2))
    _save(directory, "w2", "cfg2", _forward(case, 2, 1))
    _save(directory, "w2", "loop_cfg2", _loop(case, 2, 1))
    _save(directory, "w2", "loop_ulysses2", _loop(case, 1, 2))
    _bad_inputs(case, directory, "w2")


def job_w4(case, directory: Path) -> None:
    """4 ranks: Ulysses 4, 2 CFG x 2 Ulysses, and 2 x 2 through the sampling loop."""
    _save(directory, "w4", "ulysses4", _forward(case, 1, 4))
    _save(directory, "w4", "cfg2_ulysses2", _forward(case, 2, 2))
    _save(directory, "w4", "loop_cfg2_ulysses2", _loop(case, 2, 2))


def main(job: str, directory: str) -> int:
    import torch.distributed as dist

    from vdrt.parallel import init_distributed

    init_distributed("cpu")
    try:  # an exception exits 1 with its traceback in the rank's log; run_job then stops the others
        d = Path(directory)
        {"w2": job_w2, "w4": job_w4}[job](torch.load(d / "case.pt"), d)
        dist.barrier()
        return 0
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
