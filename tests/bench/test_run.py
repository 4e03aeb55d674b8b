"""vdrt.bench.run: backends x attention choices x shapes, engines built per shape and attention choice."""
import pytest
import torch

from vdrt.cli import parser

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeBuilder:
    """Stands in for the exporter: the 'engine' is the eager module; records what each build was asked."""

    def __init__(self):
        self.builds = []

    def __call__(self, module, backend, precision, size, device):
        from vdrt import ops

        self.builds.append((backend, size, ops.get_choice("attention")))
        return lambda *a, **k: module(*a, **k) + 0.0  # a different object than the module, same numbers


def test_rows_multiply_and_engines_are_built_per_shape_and_attention(monkeypatch):
    from vdrt.bench.plan import plan_from_args
    from vdrt.bench.run import bench_rows

    args = parser().parse_args(["bench", "wan-tiny", "--shapes", "5x32x32,9x32x32", "--backend", "torch,aoti",
                                "--attention", "sdpa,vdrt-int8", "--iterations", "1", "--warmup", "0",
                                "--steps", "1", "--device", "cpu"])
    b = FakeBuilder()
    rows = bench_rows(plan_from_args(args), b)
    steps = [r for r in rows if r["kind"] == "step"]
    assert [r["impl"] for r in steps[:4]] == ["vdrt-torch sdpa", "vdrt-torch vdrt-int8", "vdrt-aoti sdpa",
                                              "vdrt-aoti vdrt-int8"]
    assert len(steps) == 8 and {r["case"] for r in steps} == {"1x5x32x32 fp32", "1x9x32x32 fp32"}
    assert b.builds == [("aoti", (1, 5, 32, 32), "torch"), ("aoti", (1, 5, 32, 32), "vdrt-int8"),
                        ("aoti", (1, 9, 32, 32), "torch"), ("aoti", (1, 9, 32, 32), "vdrt-int8")]
    assert all(r["compile_s"] >= 0 for r in steps if r["backend"] == "aoti")
    assert steps[2]["rel_err_vs_first"] == 0.0 and 0 < steps[1]["rel_err_vs_first"] < 0.05  # int8: lossy
    e2e = [r for r in rows if r["kind"] == "e2e"]
    assert [r["impl"] for r in e2e] == ["vdrt-torch end-to-end clip"] * 2
    assert all(r["run"] == rows[0]["run"] and r["commit"] == rows[0]["commit"] for r in rows)  # one run
