"""Attention diagnostics on the GPU: accuracy of the dense kernel's variants on outlier inputs, and one
launch of a chosen kernel for Nsight Compute (ncu) to read its pipe utilisation.

    python benchmarks/attention_profile.py accuracy           # rel err vs float64 per variant, two input kinds
    ncu --clock-control none -k regex:_attn -c 1 --section ComputeWorkloadAnalysis \\
        python benchmarks/attention_profile.py once dense|int8|sparse
"""
from __future__ import annotations

import argparse
import json

import torch

from attention import CASES, inputs, reference


def _rel(out, ref):
    o = out[:, : ref.shape[1], : ref.shape[2]].double()
    return float((o - ref).norm() / ref.norm())


def accuracy(out_path: str | None) -> None:
    from vdrt import ops
    from vdrt.kernels import attention as A

    b, n, h, d, _ = CASES["wan13b"]
    rows = []
    for kind in ("outliers", "randn"):
        if kind == "outliers":
            q, k, v = inputs(b, n, h, d)
        else:
            g = torch.Generator(device="cuda").manual_seed(1)
            q, k, v = (torch.randn(b, n, h, d, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(3))
        ref = reference(q, k, v)
        rows.append({"kind": kind, "impl": "sdpa", "rel": _rel(ops.attention_torch(q, k, v), ref)})
        for var in (A.Variant(128, 64, 8, 3), A.Variant(128, 64, 8, 1), A.Variant(128, 128, 8, 2),
                    A.Variant(64, 64, 4, 3), A.Variant(128, 64, 8, 3, tma=True), A.Variant(128, 64, 8, 3, lazy=True)):
            try:
                rows.append({"kind": kind, "impl": var.name, "rel": _rel(A.attention_fwd(q, k, v, variant=var), ref)})
            except Exception as e:  # keep going: a diagnostic
                rows.append({"kind": kind, "impl": var.name, "error": str(e)[-300:]})
        # the same computation in plain torch at bf16 P (flash-attention's attention_ref, upcast=False)
        qs, ks, vs = (t[:, :, :4] for t in (q, k, v))
        s = torch.einsum("blhd,bmhd->bhlm", qs[:, :2048].float(), ks.float()) * d ** -0.5
        p = torch.softmax(s, -1).bfloat16().float()
        rows.append({"kind": kind, "impl": "torch-bf16P", "rel": _rel(torch.einsum("bhlm,bmhd->blhd", p, vs.float()), ref)})
        del q, k, v
    for r in rows:
        print(r)
    if out_path:
        with open(out_path, "w") as f:
            json.dump(rows, f, indent=1)


def once(which: str, best_path: str | None) -> None:
    """Run one kernel twice at the Wan-1.3B shape (ncu profiles the launch it was told to), in the
    variant `attention.py` measured fastest (its _best.json) if given, else the default."""
    from vdrt.kernels import attention as A
    from vdrt.kernels import attention_int8 as A8
    from vdrt.kernels import attention_sparse as S
    from vdrt.sparse import SparseConfig

    best = json.load(open(best_path)) if best_path else {}
    b, n, h, d, grid = CASES["wan13b"]
    q, k, v = inputs(b, n, h, d)
    sp = dict(best.get("sparse", {}))
    plan = SparseConfig(density=0.25, block=sp.pop("block", 128)).plan(grid, h)
    for _ in range(2):
        if which == "dense":
            A.attention_fwd(q, k, v, variant=A.Variant(**best["dense"]) if "dense" in best else None)
        elif which == "int8":
            A8.attention_int8_fwd(q, k, v, variant=A8.Variant8(**best["int8"]) if "int8" in best else None)
        else:
            var = S.SparseVariant(**sp) if sp else None
            S.sparse_attention_fwd(q, k, v, *S.device_tables(plan, q.device), plan.layout.block, variant=var)
    torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["accuracy", "once"])
    ap.add_argument("kernel", nargs="?", default="dense", choices=["dense", "int8", "sparse"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--best", default=None, help="attention.py's _best.json")
    args = ap.parse_args()
    accuracy(args.out) if args.what == "accuracy" else once(args.kernel, args.best)


if __name__ == "__main__":
    main()
