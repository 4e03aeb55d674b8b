"""The tiny architectures: sizes that ship in the wheel, the configs the cards carry, the CPU speed budget."""
import time

import pytest
import torch

from vdrt.export.tiny import arch as A
from vdrt.export.tiny.quality.cards import build_models
from vdrt.export.tiny.state import MAX_FILE_BYTES


@pytest.mark.parametrize("arch, params", [("wan", 4_952_512), ("factorized", 4_061_952)])
def test_sizes(arch, params):
    config, text = A.sections(arch)
    den, cond = build_models(config, text)
    n = sum(p.numel() for p in den.parameters()) + sum(p.numel() for p in cond.encoder.parameters())
    assert n == params and 2 * n < MAX_FILE_BYTES  # fp16 card weights
    assert config["cond_channels"] == 8 and tuple(config["patch_size"]) == (1, 8, 8)
    assert A.teacher_name(arch).endswith("-teacher") and A.student_name(arch).startswith("vdrt-tiny-")


def test_unknown_arch():
    with pytest.raises(Exception, match="--arch"):
        A.sections("unet")


@pytest.mark.usefixtures("one_thread")
def test_a_4_step_default_clip_is_cheap_on_cpu():
    """Measures (prints) a 4-step 17x64x64 clip of each architecture at random weights; bounded loosely."""
    for arch in A.ARCHS:
        config, text = A.sections(arch)
        den, cond = build_models(config, text)
        x, c, ctx = torch.randn(1, 3, 17, 64, 64), torch.zeros(1, 8, 17, 64, 64), cond(["a red circle bouncing"])
        with torch.no_grad():
            den(x, torch.tensor([1000.0]), ctx, cond=c)
            t0 = time.perf_counter()
            for t in (1000.0, 750.0, 500.0, 250.0):
                den(x, torch.tensor([t]), ctx, cond=c)
        s = time.perf_counter() - t0
        print(f"\n{arch}: 4 denoiser steps at 17x64x64 in {s:.2f} s (1 thread)")
        assert s < 6.0
