"""Per-kernel GPU time of one Wan step, vdrt (torch ops) beside diffusers: where does the difference go?

    python benchmarks/profile_wan_step.py [--layers 4]
"""
from __future__ import annotations

import argparse

import torch

import wan_step


def top_kernels(fn, n=18):
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            fn()
            torch.cuda.synchronize()
    rows = sorted(((e.key, e.device_time_total / 1e3, e.count) for e in p.key_averages()), key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    print(f"  total GPU {total:.1f} ms")
    for k, ms, c in rows[:n]:
        print(f"  {ms:8.2f} ms  x{c:<4d} {k[:110]}")


def main():
    from vdrt import models, ops

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    a = ap.parse_args()
    cfg = models.config_from_name("wan2.1-t2v-1.3b").replace(num_layers=a.layers)
    torch.manual_seed(0)
    with torch.device("cuda"):
        dm = wan_step.diffusers_model(cfg)
    dm = dm.to(torch.bfloat16).eval()
    ours = wan_step.ours_from(dm, cfg)
    x = torch.randn(1, 16, 21, 60, 104, device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([700.0], device="cuda")
    ctx = torch.randn(1, 512, cfg.text_dim, device="cuda", dtype=torch.bfloat16)
    print("diffusers eager")
    top_kernels(lambda: dm(x, t, ctx, return_dict=False)[0])
    with ops.use(**{op: "torch" for op in ops.OPS}):
        print("vdrt eager, torch ops")
        top_kernels(lambda: ours(x, t, ctx))
    print("vdrt eager, auto ops")
    top_kernels(lambda: ours(x, t, ctx))


if __name__ == "__main__":
    main()
