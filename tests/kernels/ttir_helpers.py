"""Front-end compile (Python AST -> TTIR) of a Triton kernel for sm_90, with no GPU.

The interpreter (TRITON_INTERPRET=1) runs kernels as NumPy and misses code-generation errors
that compiled Triton raises (e.g. a helper returning different types under a constexpr `if`:
the H100 run of 2026-11-24 failed on one). This stage needs neither a GPU nor ptxas.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def front_end_in_fresh_process(tmp_path, code: str) -> str:
    """Run `code` (which imports ttir_helpers and prints a result) in a fresh interpreter without
    TRITON_INTERPRET (the test process's kernels are interpreter objects) -> its stdout, stripped.
    Skips the test when it prints "skip: ..."; fails with its stderr when it fails."""
    import pytest

    here = str(Path(__file__).parent)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r})\n{code}"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    if run.returncode == 0 and run.stdout.strip().startswith("skip:"):
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip()


def ttir(kernel, signature: dict[str, str], constexprs: dict):
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    ctx = ir.context()
    ir.load_dialects(ctx)
    backend.load_dialects(ctx)
    opts = backend.parse_options({})
    src = ASTSource(fn=kernel, signature={**signature, **{k: "constexpr" for k in constexprs}}, constexprs=constexprs)
    return src.make_ir(target, opts, backend.get_codegen_implementation(opts), backend.get_module_map(), ctx)


def check_quant_rows() -> str:
    """Front-end compile the quantize kernels: per-row in four variants (fp8/int8, one/two pass), per-column in two."""
    try:
        from triton.compiler import ASTSource  # noqa: F401  (internal API: skip if it moved)
    except ImportError as e:
        return f"skip: this Triton has no ASTSource front end ({e})"
    from vdrt.kernels import quant as Q

    n = 0
    for fp8 in (True, False):
        for one_pass in (True, False):
            sig = {"X": "*bf16", "Q": "*fp8e4nv" if fp8 else "*i8", "S": "*fp32", "R": "i32", "C": "i32",
                   "stride_xr": "i32", "stride_xc": "i32", "stride_qr": "i32", "stride_qc": "i32"}
            module = ttir(Q._quant_rows_kernel, sig, {"IS_FP8": fp8, "EMULATE": False, "BLOCK_R": 4,
                                                      "BLOCK_C": 2048, "ONE_PASS": one_pass})
            assert "tt.func" in str(module)
            n += 1
        sig = {"X": "*bf16", "SC": "*fp32", "Q": "*fp8e4nv" if fp8 else "*i8", "M": "i32", "C": "i32",
               "stride_xm": "i32", "stride_xc": "i32"}
        module = ttir(Q._quant_cols_kernel, sig, {"IS_FP8": fp8, "EMULATE": False, "BLOCK_M": 32, "BLOCK_C": 128})
        assert "tt.func" in str(module)
        n += 1
    return f"{n} variants compiled"


def _sig(names: str, kind: str) -> dict[str, str]:
    return {n: kind for n in names.split()}


def check_attention() -> str:
    """Front-end compile the attention kernels (dense, 8-bit, sparse, quantizers) in their Hopper variants."""
    try:
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as e:
        return f"skip: this Triton has no ASTSource front end ({e})"
    from vdrt.kernels import attention as A
    from vdrt.kernels import attention_int8 as A8
    from vdrt.kernels import attention_quant as AQ
    from vdrt.kernels import attention_sparse as S

    strides = _sig("stride_qb stride_ql stride_qh stride_kb stride_kl stride_kh stride_vb stride_vl stride_vh "
                   "stride_ob stride_ol stride_oh", "i32")
    n = 0
    dense = {**_sig("Q K V O", "*bf16"), **_sig("H Lq Lk", "i32"), "qk_scale": "fp32", **strides}
    for tma, ws, split, lazy in [(0, 0, 0, 0), (1, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 1), (0, 0, 1, 0)]:
        m = ttir(A._attn_fwd, dense, dict(HEAD_DIM=128, BLOCK_M=128, BLOCK_N=64, TMA=bool(tma), WS=bool(ws),
                                          SPLIT=bool(split), LAZY=bool(lazy), INTERP=False))
        n += "tt.func" in str(m)
    for qk, pv, tma, lazy in [("int8", True, 0, 0), ("int8", True, 1, 1), ("fp8", True, 1, 0), ("int8", False, 1, 0)]:
        codes = "*i8" if qk == "int8" else "*fp8e4nv"
        sig = {"Q8": codes, "QS": "*fp32", "K8": codes, "KS": "*fp32", "V": "*fp8e4nv" if pv else "*bf16",
               "VS": "*fp32", "O": "*bf16", **_sig("H Lq Lk L_PAD NB", "i32"),
               **_sig("stride_ql stride_qh stride_qb stride_kl stride_kh stride_kb stride_vb stride_vl stride_vh "
                      "stride_ob stride_ol stride_oh", "i32")}
        m = ttir(A8._attn8_fwd, sig, dict(HEAD_DIM=128, BLOCK_M=128, BLOCK_N=64, QK_FP8=qk == "fp8", PV_FP8=pv,
                                          TMA=bool(tma), WS=False, LAZY=bool(lazy), INTERP=False))
        n += "tt.func" in str(m)
    for eight, tma in [(0, 0), (0, 1), (1, 1), (1, 0)]:
        codes = "*i8" if eight else "*bf16"
        sig = {"Q": codes, "K": codes, "V": "*fp8e4nv" if eight else "*bf16", "O": "*bf16",
               **_sig("QS KS VS", "*fp32"), **_sig("Starts Lens Lut LutRows Counts", "*i32"),
               **_sig("H L T WIDTH L_PAD", "i32"), "qk_scale": "fp32", **strides}
        m = ttir(S._sparse_fwd, sig, dict(HEAD_DIM=128, BLOCK=128, EIGHT=bool(eight), QK_FP8=False, PV_FP8=bool(eight),
                                          TMA=bool(tma), WS=False, LAZY=False, INTERP=False, PER_HEAD=bool(tma)))
        n += "tt.func" in str(m)
    for fp8 in (True, False):
        codes = "*fp8e4nv" if fp8 else "*i8"
        sig = {"X": "*bf16", "Xq": codes, "S": "*fp32", **_sig("H L", "i32"), "extra_scale": "fp32",
               **_sig("sxb sxl sxh sqb sql sqh", "i32")}
        n += "tt.func" in str(ttir(AQ._rows_kernel, sig, dict(D=128, BLOCK=64, FP8=fp8, EMULATE=False)))
        sig = {"X": "*bf16", "Mean": "*fp32", "Starts": "*i32", "Lens": "*i32", "Xq": codes, "S": "*fp32",
               **_sig("H NB sxb sxl sxh sqb sql sqh", "i32")}
        n += "tt.func" in str(ttir(AQ._blocks_kernel, sig, dict(D=128, BLOCK=64, FP8=fp8, EMULATE=False, HAS_MEAN=True)))
    n += _check_fused_quant()
    return f"{n} variants compiled"


def _check_fused_quant() -> int:
    """The fused rope + int8 quantiser (q: per row; k: centred, uniform blocks or 3D tiles in tile order) and the
    e4m3 V^T quantiser (plain and tile-padded): 6 variants."""
    from vdrt.kernels import attention_quant as AQ
    from vdrt.kernels import rope_quant as RQ

    sig = {"X": "*bf16", "W": "*bf16", "Pos": "*i64", "Centre": "*fp32", "Starts": "*i32", "Lens": "*i32",
           "Xq": "*i8", "S": "*fp32", **_sig("L NB H GH GW sx_b sx_l", "i32"), **_sig("eps log2_theta extra_scale", "fp32")}
    n = 0
    for per_row, table, pos in [(True, False, False), (False, False, False), (False, True, True), (True, False, True)]:
        m = ttir(RQ._rope_quant_kernel, sig, dict(D=128, NT=22, NH=21, BLOCK=64, HAS_W=True, HAS_POS=pos,
                                                  HAS_CENTRE=not per_row, TABLE=table, PER_ROW=per_row,
                                                  EMULATE=False))
        n += "tt.func" in str(m)
    sig = {"V": "*bf16", "VScale": "*fp32", "Vt": "*fp8e4nv", "Starts": "*i32", "Lens": "*i32",
           **_sig("H L L_pad svb svl svh", "i32")}
    for tiled in (False, True):
        n += "tt.func" in str(ttir(AQ._v_kernel, sig, dict(D=128, BLOCK=64, EMULATE=False, TILED=tiled)))
    return n
