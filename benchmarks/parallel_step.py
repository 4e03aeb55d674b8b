"""One Wan2.1 denoiser step on 1 and N GPUs in the same call: Ulysses and CFG parallelism, scaling efficiency.

    python benchmarks/parallel_step.py --worlds 1,2 --out benchmarks/results/h200x2/parallel_step.json
    python benchmarks/parallel_step.py --preset wan2.1-t2v-14b --worlds 1,2      # 720p x 81 frames
    python benchmarks/parallel_step.py --device cpu --preset wan-tiny --worlds 1,2  # a CPU smoke run (gloo)

The parent touches no GPU: for each world size W it runs this file as W ranks through
torch.distributed.run (vdrt.parallel.launch.elastic_run: loopback rendezvous, NVLS off). Each rank
builds the same random-weight bf16 model (same seed), the same inputs, and times two cases:
  B1: one step without guidance (batch 1); W ranks = W-way Ulysses;
  B2: one step with CFG batched (batch 2); W ranks = 2 CFG x W/2 Ulysses (W = 1: batch 2 on one GPU).
Default shapes: 1.3B at 480p x 81f (latents 16x21x60x104, 32760 tokens), 14B at 720p x 81f
(16x21x90x160, 75600 tokens), 512 text tokens. Timing: a barrier, then CUDA events around one call,
median over --iters, the slowest rank's median; the first call's time is reported apart.
efficiency = ms(1 GPU) / (W x ms(W GPUs)). rel_err_vs_1gpu compares rank 0's output with the 1-GPU one.
"""
from __future__ import annotations

import os

# NVLink multicast stays off on the lent multi-GPU hosts: set for this process and every child.
os.environ.update(NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from common import Row, meta, write_rows  # noqa: E402

log = logging.getLogger("parallel_step")
SHAPES = {"wan2.1-t2v-1.3b": (21, 60, 104), "wan2.1-t2v-14b": (21, 90, 160), "wan-tiny": (3, 8, 12)}


@dataclass
class Result(Row):
    world_size: int
    efficiency: float | None = None
    cfg_degree: int = 1
    ulysses_degree: int = 1
    tflops: float | None = None
    first_call_s: float | None = None
    rel_err_vs_1gpu: float | None = None
    error: str | None = None


def args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--shape", default=None, help="latent F,H,W (default: the preset's 480p/720p x 81 frames)")
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--worlds", default="1,2", help="comma-separated world sizes, run one after another")
    ap.add_argument("--device", default="cuda", help="cuda (NCCL) or cpu (gloo, a smoke run)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attention", default=None, help="force vdrt.ops attention (e.g. torch)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a rank: the directory for its results
    return ap


# ---------------------------------------------------------------- the parent


def main(args) -> int:
    from vdrt.parallel.launch import elastic_run

    worlds = [int(w) for w in args.worlds.split(",")]
    with tempfile.TemporaryDirectory(prefix="parallel_step_") as tmp:
        for w in worlds:
            rc = elastic_run(w, [str(Path(__file__).resolve()), *_forward_args(args), "--worker", tmp], module=None)
            if rc:
                log.error("world size %d failed (exit %d); its rows are missing", w, rc)
        rows = _collect(Path(tmp), worlds)
    write_rows(rows, args.out)
    return 0 if rows else 1


def _forward_args(args) -> list[str]:
    out = []
    for k, v in vars(args).items():
        if k not in ("worker", "out", "worlds") and v is not None:
            out += ["--" + k.replace("_", "-"), str(v)]
    return out


def _collect(tmp: Path, worlds: list[int]) -> list[dict]:
    """Rows of every world size, with efficiency and rel err against the 1-GPU row of the same case."""
    files = [tmp / f"rows_{w}.json" for w in worlds]
    rows = [r for f in files if f.is_file() for r in json.loads(f.read_text())]
    base = {r["case"]: r for r in rows if r["world_size"] == 1 and r["ms"]}
    for r in rows:
        b = base.get(r["case"])
        if b and r["ms"]:
            r["efficiency"] = b["ms"] / (r["world_size"] * r["ms"])
            r["rel_err_vs_1gpu"] = _rel_err(tmp, r, b)
    return rows


def _rel_err(tmp: Path, row: dict, base: dict) -> float | None:
    a, b = tmp / _out_name(row["case"], row["world_size"]), tmp / _out_name(base["case"], 1)
    if not (a.is_file() and b.is_file()):
        return None
    x, y = torch.load(a).double(), torch.load(b).double()
    return ((x - y).norm() / y.norm()).item()


def _out_name(case: str, world: int) -> str:
    return f"out_{case.split()[1]}_{world}.pt"  # case "preset B1 ..." -> out_B1_2.pt


# ---------------------------------------------------------------- a rank


def worker(args) -> int:
    import torch.distributed as dist

    from vdrt import ops
    from vdrt.parallel import init_distributed

    env = init_distributed(args.device)
    if args.attention:
        ops.set_choice("attention", args.attention)
    try:
        rows = [_case(args, env, batch) for batch in (1, 2)]
        if env.rank == 0:
            Path(args.worker, f"rows_{env.world_size}.json").write_text(json.dumps([r.__dict__ for r in rows]))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def _case(args, env, batch: int) -> Result:
    from vdrt.errors import ConfigError
    from vdrt.parallel import Mesh, ParallelEngine

    f, h, w = _shape(args)
    case = f"{args.preset} B{batch} {f}x{h}x{w} ({f * (h // 2) * (w // 2)} tok) text{args.text_len} {args.dtype}"
    cfg_deg = 2 if batch == 2 and env.world_size % 2 == 0 else 1
    mesh = Mesh.create(cfg_deg, env.world_size // cfg_deg)
    res = Result("parallel_step", case, _impl(mesh), None, **meta(), world_size=env.world_size, cfg_degree=cfg_deg,
                 ulysses_degree=mesh.ulysses_degree)
    try:
        engine = ParallelEngine(_model(args, env.device), mesh)
        inputs = _inputs(args, engine.config, batch, env.device)
        _time(engine, inputs, res, args, env)
        res.tflops = _flops(engine.config, f * (h // 2) * (w // 2), args.text_len) * batch / res.ms / 1e9
        out = engine(*inputs)  # every rank: the call is collective
        if env.rank == 0:
            torch.save(out.float().cpu(), Path(args.worker, _out_name(case, env.world_size)))
        del engine
    except (torch.OutOfMemoryError, ConfigError) as e:  # 14B at 720p on one GPU may not fit: keep the other rows
        res.error = f"{type(e).__name__}: {str(e)[:200]}"
    if env.device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("%s", res)
    return res


def _impl(mesh) -> str:
    if mesh.layout.world_size == 1:
        return "vdrt-torch-eager (1 rank)"
    return f"vdrt-parallel {mesh.cfg_degree} CFG x {mesh.ulysses_degree} Ulysses"


def _shape(args) -> tuple[int, int, int]:
    return tuple(int(x) for x in args.shape.split(",")) if args.shape else SHAPES[args.preset]


_MODEL = {}


def _model(args, device):
    """The same random weights on every rank and in every launch (seeded), built once per process."""
    from vdrt import models
    from vdrt.cli.runconfig import parse_dtype

    if "m" not in _MODEL:
        torch.manual_seed(0)
        with torch.device(device):
            m = models.build_model(models.config_from_name(args.preset))
        _MODEL["m"] = m.to_dtype(parse_dtype(args.dtype)).eval().requires_grad_(False)
    return _MODEL["m"]


def _inputs(args, cfg, batch: int, device):
    from vdrt.cli.runconfig import parse_dtype

    g, dt = torch.Generator().manual_seed(1), parse_dtype(args.dtype)
    x = torch.randn(batch, cfg.in_channels, *_shape(args), generator=g)
    t = torch.tensor([700.0] * batch)
    ctx = torch.randn(batch, args.text_len, cfg.text_dim, generator=g)
    return x.to(device, dt), t.to(device), ctx.to(device, dt)


def _time(engine, inputs, res: Result, args, env) -> None:
    """First call apart; then --iters calls, each after a barrier; the slowest rank's median (ms)."""
    import torch.distributed as dist

    t0 = time.perf_counter()
    engine(*inputs)
    _sync(env.device)
    res.first_call_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        engine(*inputs)
    times = []
    for _ in range(args.iters):
        dist.barrier()
        times.append(_timed(lambda: engine(*inputs), env.device))
    ms = torch.tensor([statistics.median(times)], dtype=torch.float64, device=_comm_device(env.device))
    dist.all_reduce(ms, op=dist.ReduceOp.MAX)
    res.ms = ms.item()


def _timed(fn, device) -> float:
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _comm_device(device):
    return device if device.type == "cuda" else torch.device("cpu")


def _flops(cfg, tokens: int, text: int) -> float:
    """Matmul FLOPs of one batch-1 step (the same model as benchmarks/wan_step.py)."""
    from wan_step import step_flops

    return step_flops(cfg, tokens, text)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    a = args_parser().parse_args()
    sys.exit(worker(a) if a.worker else main(a))
