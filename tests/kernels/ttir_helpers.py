"""Front-end compile (Python AST -> TTIR) of a Triton kernel for sm_90, with no GPU.

The interpreter (TRITON_INTERPRET=1) runs kernels as NumPy and misses code-generation errors
that compiled Triton raises (e.g. a helper returning different types under a constexpr `if`:
the H100 run of 2026-11-24 failed on one). This stage needs neither a GPU nor ptxas.
"""
from __future__ import annotations


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
