"""Frame metrics on known cases, and SSIM against a brute-force float64 reference."""
import math

import numpy as np
import pytest

from vdrt.export.tiny.data import procedural as P
from vdrt.errors import MediaError
from vdrt.export.tiny.quality import metrics as M


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004, window by window, with an explicit 2-D gaussian (float64)."""
    r, sigma = 5, 1.5
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for f in range(a.shape[0]):
        for ch in range(a.shape[-1]):
            for i in range(a.shape[1] - 2 * r):
                for j in range(a.shape[2] - 2 * r):
                    x, y = a[f, i : i + 11, j : j + 11, ch], b[f, i : i + 11, j : j + 11, ch]
                    mx, my = (w * x).sum(), (w * y).sum()
                    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
                    cov = (w * (x - mx) * (y - my)).sum()
                    vals.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def _spec(start=(15.0, 30.0), colour="red", size="small") -> P.ClipSpec:
    return P.ClipSpec((P.ObjectSpec("square", colour, size, "moving right", start, (2.0, 0.0)),), "grey")


def test_psnr_is_pooled_and_uncapped():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, (3, 16, 16, 3)).astype(np.uint8)
    assert M.psnr(a, a) == math.inf and M.mse(a, a) == 0.0
    assert M.psnr(a, a + np.uint8(5)) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    b = a.copy()
    b[0] += 5  # one frame off by 5: the MSE is pooled over the 3 frames (a per-frame mean would be inflated)
    assert M.mse(a, b) == pytest.approx(25 / 3, abs=1e-9)
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 3 / 25), abs=1e-9)


def test_ssim_matches_the_brute_force_reference():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 16, 19, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    got = M.ssim(a, b)
    assert got == pytest.approx(_ssim_reference(a.astype(float), b.astype(float)), abs=1e-12)
    assert M.ssim(b, a) == pytest.approx(got, abs=1e-12)


def test_ssim_known_cases():
    frames = P.render(P.dataset("val", 3)[2])
    assert M.ssim(frames, frames) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(2)
    noisy = [np.clip(frames + rng.normal(0, s, frames.shape), 0, 255).astype(np.uint8) for s in (4, 16, 64)]
    scores = [M.ssim(frames, n) for n in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    assert M.psnr(frames, noisy[0]) > M.psnr(frames, noisy[1]) > M.psnr(frames, noisy[2])
    c1 = (0.01 * 255) ** 2
    flat_a, flat_b = np.full((1, 12, 12, 1), 100.0), np.full((1, 12, 12, 1), 150.0)
    assert M.ssim(flat_a, flat_b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), abs=1e-12)
    with pytest.raises(MediaError):
        M.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(MediaError):
        M.psnr(np.zeros((8, 8, 3)), np.zeros((9, 8, 3)))


def test_centroid_error_in_pixels():
    truth = P.render(_spec())
    assert M.centroid_error(truth, truth, "red") == 0.0
    assert M.centroid_error(P.render(_spec(start=(18.0, 30.0))), truth, "red") == pytest.approx(3.0, abs=1e-9)
    assert M.centroid_error(P.render(_spec(start=(18.0, 26.0))), truth, "red") == pytest.approx(5.0, abs=1e-9)
    blank = P.render(P.ClipSpec((), "grey"))
    assert M.centroid_error(blank, truth, "red") == pytest.approx(math.hypot(64, 64))
    with pytest.raises(MediaError, match="blue"):
        M.centroid_error(truth, truth, "blue")


def test_temporal_consistency_known_values():
    truth = P.render(P.dataset("test", 0, two_objects_prob=0.0)[2])  # one object, never hidden
    tc = M.temporal_consistency(truth)
    assert tc["area_cv"] == 0.0 and tc["colour_std"] == 0.0 and len(tc["objects"]) == 1
    small, large = P.render(_spec(size="small")), P.render(_spec(size="large"))
    mixed = np.concatenate([small[:8], large[8:]])
    areas = np.array([169.0] * 8 + [529.0] * 9)
    tc = M.temporal_consistency(mixed)
    assert tc["area_cv"] == pytest.approx(areas.std() / areas.mean(), abs=1e-12)
    dim = small.copy()
    dim[9:][(dim[9:] == (255, 0, 0)).all(-1)] = (235, 0, 0)
    reds = np.array([255.0] * 9 + [235.0] * 8)
    tc = M.temporal_consistency(dim)
    assert tc["colour_std"] == pytest.approx(reds.std(), abs=1e-9) and tc["area_cv"] == 0.0
    empty = M.temporal_consistency(P.render(P.ClipSpec((), "black")))
    assert empty["area_cv"] is None and empty["objects"] == {}


def test_forecast_metrics():
    truth = P.dataset("test", 5)[0]
    garbage_start = truth.copy()
    garbage_start[:4] = 0  # only the scored frames count
    perfect = M.forecast_metrics(garbage_start, truth, list(range(4, 17)))
    assert perfect["psnr"] == math.inf and perfect["mse"] == 0 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["centroid_error"] < 0.5 and perfect["iou"] > 0.95 and perfect["frames"] == 13
    frozen = np.concatenate([truth[:4], np.repeat(truth[3:4], 13, axis=0)])
    f = M.forecast_metrics(frozen, truth, list(range(4, 17)))
    assert f["psnr"] < 40 and f["ssim"] < 1.0 and f["centroid_error"] > 5.0 and f["iou"] < perfect["iou"]
    with pytest.raises(MediaError):
        M.forecast_metrics(truth[:10], truth, [4])


def test_object_scores_know_hidden_and_missing_objects():
    truth = P.render(_spec())
    blank = P.render(P.ClipSpec((), "grey"))
    missing = M.object_scores(blank, truth)
    assert missing["iou"] == 0.0 and missing["centroid_error"] == pytest.approx(math.hypot(64, 64))
    shifted = M.object_scores(P.render(_spec(start=(18.0, 30.0))), truth)
    assert shifted["centroid_error"] == pytest.approx(3.0, abs=0.3) and 0.5 < shifted["iou"] < 0.9
    assert M.object_scores(blank, blank) == {"centroid_error": None, "iou": None}
