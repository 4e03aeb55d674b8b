"""vdrt.bench.ceilings: the measured H200/H100 ceilings by name, a GEMM/copy probe elsewhere, achieved rates."""
import pytest
import torch

from vdrt.bench import ceilings as c


def test_known_gpus_get_the_measured_ceilings(monkeypatch):
    monkeypatch.setattr(c, "device_name", lambda d: "NVIDIA H200")
    h200 = c.ceilings(torch.device("cpu"), "bf16")
    assert h200 == {"ceiling_tflops": 790.0, "ceiling_gbps": 4240.0, "ceiling_source": "measured 2026-11-29 (H200)"}
    monkeypatch.setattr(c, "device_name", lambda d: "NVIDIA H100 80GB HBM3")
    assert c.ceilings(torch.device("cpu"), "fp16")["ceiling_tflops"] == 706.0


def test_other_devices_are_probed_not_left_empty():
    got = c.ceilings(torch.device("cpu"), "fp32")
    assert got["ceiling_source"] == "probe (cpu, fp32)"
    assert 0.001 < got["ceiling_tflops"] < 100 and 0.1 < got["ceiling_gbps"] < 10_000  # a CPU's range
    assert c.probe("cpu", "fp32") == (got["ceiling_tflops"], got["ceiling_gbps"])  # measured once per process


def test_rates():
    r = c.rates(2e12, 10.0, {"ceiling_tflops": 400.0, "ceiling_gbps": 1.0, "ceiling_source": "x"})
    assert r["tflops"] == pytest.approx(200.0) and r["pct_of_ceiling"] == pytest.approx(50.0)
    assert r["tflop_per_step"] == 2.0 and r["ceiling_source"] == "x"
