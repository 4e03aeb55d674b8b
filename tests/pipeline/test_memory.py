"""vdrt.pipeline.memory: the model's size limits and the memory estimate, refused before any allocation.

The calibration tests re-measure the peak RSS of real fp32 generations on the CPU (in a fresh process,
the high-water mark reset after loading) and require the estimate to cover it without being loose.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import torch

import vdrt
from vdrt.errors import ConfigError, MemoryLimitError
from vdrt.pipeline import memory
from vdrt.pipeline.sources import describe
from vdrt.request import GenerateRequest

GiB = 1 << 30

PEAK = r"""
import json, sys, gc, torch
torch.set_num_threads(1)
import vdrt
from vdrt.pipeline import memory
from vdrt.request import GenerateRequest

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

model, f, h, w, g = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
pipe = vdrt.Pipeline.from_pretrained(model, device="cpu", dtype=torch.float32)
req = GenerateRequest(prompt="a red circle", num_frames=f, height=h, width=w, num_steps=1, guidance=g)
est = memory.estimate(req.resolved(pipe.defaults, pipe.codec.geometry), memory.plan_loaded(pipe))
gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark: measure the call alone
base = rss("VmRSS")
pipe(req, progress=False)
print(json.dumps({"measured": rss("VmHWM") - base, "estimate": est.device_peak}))
"""


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
@pytest.mark.parametrize("model, f, h, w, g", [("factorized-tiny", 16, 128, 128, 5.0), ("wan-tiny", 9, 128, 128, 1.0),
                                               ("wan-tiny", 5, 256, 256, 1.0)])
def test_the_estimate_covers_the_measured_peak_and_is_not_loose(model, f, h, w, g):
    out = subprocess.run([sys.executable, "-c", PEAK, model, str(f), str(h), str(w), str(g)], capture_output=True,
                         text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["measured"] <= r["estimate"] <= 3.5 * r["measured"], r


@pytest.fixture
def limit(monkeypatch):
    def set_to(text):
        monkeypatch.setenv("VDRT_MEMORY_LIMIT", text)
    return set_to


def _plan(model="wan-tiny", device="cpu", dtype=torch.float32, **kw):
    return memory.plan_before_load(describe(model), torch.device(device), dtype, **kw)


def _req(model="wan-tiny", **kw):
    info = describe(model)
    return GenerateRequest(prompt="x", **kw).resolved(info.defaults, info.geometry, model)


def test_wan_tiny_401_frames_of_1024_is_refused_in_well_under_a_second(limit):
    limit("16G")
    t0 = time.perf_counter()
    with pytest.raises(MemoryLimitError) as e:
        memory.check(_req(num_frames=401, height=1024, width=1024), _plan())
    assert time.perf_counter() - t0 < 0.5  # from the model's name: described, planned, estimated, refused
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, MemoryError) and isinstance(e.value, ValueError)
    for part in ("401 frames of 1024x1024", "needs about", "16.00 GiB is available", "decode", "at most",
                 "frames fit", "VDRT_MEMORY_LIMIT"):
        assert part in msg, msg


def test_the_hostile_size_needs_more_than_a_big_box_has():
    est = memory.estimate(_req(num_frames=401, height=1024, width=1024), _plan())
    assert est.device_peak > 24 * GiB  # refused on any machine with less free (this box: 24 GB in all)


def test_what_would_fit_fits_and_one_more_step_does_not(limit):
    limit("3G")
    plan, req = _plan(), _req(num_frames=81, height=256, width=256)
    with pytest.raises(MemoryLimitError) as e:
        memory.check(req, plan)
    n = int(re.search(r"at most (\d+) frames fit", str(e.value)).group(1))
    assert (n - 1) % 4 == 0 and n < 81
    memory.check(req.replace(num_frames=n), plan)
    with pytest.raises(MemoryLimitError):
        memory.check(req.replace(num_frames=n + 4), plan)


def test_when_no_frame_count_fits_the_largest_size_is_named(limit):
    limit("1G")
    plan, req = _plan(), _req(num_frames=1, height=1024, width=512)
    with pytest.raises(MemoryLimitError) as e:
        memory.check(req, plan)
    w, h = map(int, re.search(r"At 1 frames at most (\d+)x(\d+) fits", str(e.value)).groups())
    assert h == 2 * w and h % 16 == 0  # the same aspect, the model's multiple
    memory.check(req.replace(height=h, width=w), plan)


def test_the_estimate_grows_with_every_part_it_names():
    plan = _plan()
    base = memory.estimate(_req(), plan)
    assert memory.estimate(_req(guidance=5.0), plan).denoise > memory.estimate(_req(guidance=1.0), plan).denoise
    assert memory.estimate(_req(num_videos=4), plan).frames == 4 * base.frames
    assert memory.estimate(_req(output_type="np"), plan).frames == 5 * base.frames
    assert memory.estimate(_req(output_type="latent"), plan).decode == 0
    assert base.weights > 0 and memory.plan_loaded.__doc__  # before loading the weights are counted
    bf16 = memory.estimate(_req(), _plan(dtype=torch.bfloat16))
    assert bf16.weights < base.weights and bf16.denoise < base.denoise


@pytest.mark.parametrize("attention, device, dtype, quadratic", [
    ("auto", "cpu", torch.float32, False), ("torch", "cuda", torch.bfloat16, False),
    ("auto", "cuda", torch.float64, True),  # SDPA's math path
    ("vdrt-int8", "cpu", torch.float32, True),  # the float64 emulation
    ("vdrt-sparse", "cpu", torch.float32, True), ("vdrt-int8", "cuda", torch.bfloat16, False),
])
def test_attention_workspace_follows_the_op(attention, device, dtype, quadratic):
    req = _req(num_frames=17, height=256, width=256)
    small = memory.estimate(req, _plan(device=device, dtype=dtype, attention=attention)).attention
    big = memory.estimate(req.replace(num_frames=33), _plan(device=device, dtype=dtype, attention=attention)).attention
    if attention in ("auto", "torch") and not quadratic:
        assert small == big == 0
    else:
        ratio = big / small
        assert (ratio > 1.85) == quadratic, ratio  # tokens x 1.8: a linear workspace grows 1.8x, L^2 3.2x


def test_the_parameter_count_is_a_tight_upper_bound():
    from vdrt import models

    for name in models.preset_names():
        c = models.config_from_name(name)
        with torch.device("meta"):
            real = sum(p.numel() for p in models.build_model(c).parameters())
        assert real <= memory.param_count(c) <= 1.01 * real, name


def test_model_limits_are_refused_before_loading():
    with pytest.raises(ConfigError, match="factorized-tiny takes at most 32 frames"):
        memory.check(_req("factorized-tiny", num_frames=64, height=64, width=64), _plan("factorized-tiny"))
    with pytest.raises(ConfigError, match="patches per axis"):
        plan = _plan()
        plan = memory.Plan(**{**plan.__dict__, "config": plan.config.replace(rope_max_seq_len=8)})
        memory.check(_req(num_frames=17, height=256, width=256), plan)


def test_an_engine_profile_is_checked_before_loading():
    plan = memory.Plan(**{**_plan().__dict__, "profiles": {"batch": {"min": 1, "max": 1},
                                                             "frames": {"min": 1, "max": 5}}})
    with pytest.raises(ConfigError, match="batch=2 is outside this engine's profile.*--guidance 1"):
        memory.check(_req(num_frames=17, guidance=5.0), plan)
    with pytest.raises(ConfigError, match="frames=9 is outside"):
        memory.check(_req(num_frames=33, guidance=1.0), plan)
    memory.check(_req(num_frames=17, guidance=1.0), plan)


def test_on_a_gpu_the_frames_are_checked_against_the_host(monkeypatch):
    have = {"cuda": 100 * GiB, "cpu": 1 * GiB}
    monkeypatch.setattr(memory, "available", lambda d: have[d.type])
    plan = _plan(device="cuda", dtype=torch.bfloat16)
    with pytest.raises(MemoryLimitError, match="on the host"):
        memory.check(_req(num_frames=81, height=512, width=512, num_videos=32), plan)
    memory.check(_req(num_frames=17, height=128, width=128), plan)


def test_available_memory_sources(monkeypatch):
    monkeypatch.delenv("VDRT_MEMORY_LIMIT", raising=False)
    have = memory.available(torch.device("cpu"))
    assert have is not None and 0 < have < 1 << 50
    assert memory.parse_size("12G") == 12 * GiB and memory.parse_size("1.5GiB") == int(1.5 * GiB)
    assert memory.parse_size("800M") == 800 << 20 and memory.parse_size("4096") == 4096
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(ConfigError, match="VDRT_MEMORY_LIMIT"):
            memory.parse_size(bad)


def test_the_switch_turns_the_estimate_off_but_not_the_limits(monkeypatch):
    monkeypatch.setenv("VDRT_MEMORY_LIMIT", "1M")
    monkeypatch.setenv("VDRT_MEMORY_CHECK", "0")
    assert memory.check(_req(), _plan()) is None
    with pytest.raises(ConfigError, match="max_frames"):
        memory.check(_req("factorized-tiny", num_frames=64, height=64, width=64), _plan("factorized-tiny"))


def test_the_pipeline_refuses_before_any_step(monkeypatch):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu", dtype=torch.float32)
    calls = []
    engine = pipe.engine
    monkeypatch.setattr(pipe, "engine", type("E", (), {**{k: getattr(engine, k) for k in
                                                          ("device", "dtype", "config", "manifest")},
                                                       "__call__": lambda self, *a, **k: calls.append(1)})())
    monkeypatch.setenv("VDRT_MEMORY_LIMIT", "64M")
    with pytest.raises(MemoryLimitError, match="factorized-tiny: 32 frames of 256x256"):
        pipe("x", num_frames=32, height=256, width=256, num_steps=2, progress=False)
    assert calls == []
