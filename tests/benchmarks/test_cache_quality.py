"""benchmarks/cache_quality.py: its `Stepped` denoiser runs a cache policy exactly as the loop's step hooks do."""
import sys
from pathlib import Path

import pytest
from script_helpers import load_script
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cache_quality.py"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samplers"))


@pytest.fixture(scope="module")
def cq():
    return load_script("cache_quality.py")


def test_stepped_equals_the_loop_with_the_hook_over_several_runs(cq):
    from cache_helpers import model_and_inputs

    from vdrt.samplers import get, sample
    from vdrt.samplers.policies.cachespec import parse

    m, noise, ctx = model_and_inputs("wan-tiny")
    hooked = parse("teacache:0.3").build()
    stepped = cq.Stepped(m, parse("teacache:0.3").build(), 6)
    skipped = 0
    with torch.no_grad():
        for seed in (0, 1):  # two generations: the wrapper resets the policy at each step 0
            x = noise + 0.1 * seed
            want = sample(lambda z, t, i: m(z, t, ctx), x, get("euler", shift=3.0), 6, hooks=[hooked], progress=False)
            got = sample(lambda z, t, i: stepped(z, t, ctx), x, get("euler", shift=3.0), 6, progress=False)
            assert torch.equal(got, want)
            skipped += hooked.stats["skipped"]
    assert stepped.skipped_fraction() == pytest.approx(skipped / 12) and skipped > 0
    assert stepped.totals["run"] + stepped.totals["skipped"] == 12


def test_markdown_table(cq):
    rows = [{"policy": "teacache", "threshold": 0.1, "skipped": 0.3, "t2v_fidelity_psnr": 31.234, "verdict": "worse"}]
    text = cq.markdown(rows)
    assert text.splitlines()[0] == "| policy | threshold | skipped | t2v_fidelity_psnr | verdict |"
    assert "| teacache | 0.1 | 0.3 | 31.23 | worse |" in text
