"""Frame metrics against ground truth: PSNR, SSIM, centroid error, temporal consistency, forecasting.

Frames are uint8 (or float on the 0..255 scale) with the channel last: (H, W, C), (T, H, W, C)
or (B, T, H, W, C); leading axes are flattened into a list of frames.

- `psnr`: 10 log10(255^2 / MSE) with the MSE pooled over all frames (not a mean of per-frame
  PSNRs, which exact frames inflate); uncapped: identical inputs give inf. `mse` is the pooled
  error itself, which averages (and bootstraps) over clips without bias.
- `ssim`: Wang et al. 2004 with an 11x11 gaussian window (sigma 1.5, truncated at 3.5 sigma),
  K1 = 0.01, K2 = 0.03, L = 255, population (not sample) statistics, on the valid region only
  (no padding); computed per channel and frame and averaged. This matches
  skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1) frame by frame.
"""
from __future__ import annotations

import math

import numpy as np

from vdrt.errors import MediaError
from vdrt.export.tiny.quality.detector import centroid_track, colour_masks, detect

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): an 11-tap window
SSIM_K1, SSIM_K2, DATA_RANGE = 0.01, 0.03, 255.0


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two frame stacks as float64 (N, H, W, C), checked to match."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise MediaError(f"frames must match and be (..., H, W, C); got {a.shape} and {b.shape}")
    return a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])


def mse(a, b) -> float:
    """Mean squared error over all pixels of all frames, on the 0..255 scale."""
    a, b = _pair(a, b)
    return float(((a - b) ** 2).mean())


def psnr_of(mse_value: float) -> float:
    """PSNR in dB of a (pooled) MSE; inf for 0."""
    return math.inf if mse_value == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse_value)


def psnr(a, b) -> float:
    """PSNR in dB with the MSE pooled over all frames; inf for identical frames."""
    return psnr_of(mse(a, b))


def _gaussian() -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
    return k / k.sum()


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable gaussian filter, valid region: (N, H, W, C) -> (N, H-10, W-10, C)."""
    g, view = _gaussian(), np.lib.stride_tricks.sliding_window_view
    x = view(x, g.size, axis=1) @ g  # (N, H-10, W, C)
    return view(x, g.size, axis=2) @ g


def ssim_map(a, b) -> np.ndarray:
    """Local SSIM values: float64 (N, H-10, W-10, C)."""
    a, b = _pair(a, b)
    if min(a.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise MediaError(f"SSIM needs frames of at least 11x11 pixels; got {a.shape[1:3]}")
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a**2
    var_b = _blur(b * b) - mu_b**2
    cov = _blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    return num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a, b) -> float:
    """Mean SSIM over frames, channels and window positions; 1.0 for identical frames."""
    return float(ssim_map(a, b).mean())


def _clip(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"expected one uint8 clip (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def _track(frames: np.ndarray, colour: str) -> np.ndarray:
    m = colour_masks(_clip(frames)).get(colour)
    return centroid_track(m) if m is not None else np.full((frames.shape[0], 2), np.nan)


def centroid_error(pred_frames, true_frames, colour: str) -> float:
    """Mean distance in pixels between the centroids of `colour` in two clips (T, H, W, 3).

    Averaged over the frames where the object is in the truth; a frame where the prediction has
    no such object counts the frame diagonal (the largest possible error).
    """
    pred, true = _clip(pred_frames), _clip(true_frames)
    if pred.shape != true.shape:
        raise MediaError(f"clips must match; got {pred.shape} and {true.shape}")
    tp, tt = _track(pred, colour), _track(true, colour)  # (T, 2) each
    seen = ~np.isnan(tt[:, 0])
    if not seen.any():
        raise MediaError(f"no {colour} object in the true frames; pick a colour the truth shows")
    dist = np.linalg.norm(tp[seen] - tt[seen], axis=1)
    return float(np.where(np.isnan(dist), math.hypot(*true.shape[1:3]), dist).mean())


def _object_stability(frames: np.ndarray, colour: str, mask: np.ndarray, areas: np.ndarray) -> dict:
    present = areas > 0
    a = areas[present].astype(np.float64)
    means = np.stack([frames[t][mask[t]].mean(0) for t in np.nonzero(present)[0]])  # (T', 3)
    return {"area_cv": float(a.std() / a.mean()), "colour_std": float(np.sqrt(means.var(0).sum()))}


def temporal_consistency(frames) -> dict:
    """Stability of each detected object over the clip.

    area_cv: std / mean of the object's pixel count over the frames it is present on;
    colour_std: sqrt of the summed per-channel variance over frames of the object's mean RGB
    colour (0..255 scale). Returns {area_cv, colour_std: means over objects (None when there
    is no object), objects: {colour: {area_cv, colour_std}}}.
    """
    frames = _clip(frames)
    masks = colour_masks(frames)
    objects = {d.colour: _object_stability(frames, d.colour, masks[d.colour], d.areas) for d in detect(frames)}
    mean = lambda k: float(np.mean([o[k] for o in objects.values()])) if objects else None  # noqa: E731
    return {"area_cv": mean("area_cv"), "colour_std": mean("colour_std"), "objects": objects}


def truth_masks(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Exact per-colour masks (T, H, W) of a rendered (true) clip: palette colours are flat and distinct."""
    from vdrt.export.tiny.data.world import COLOURS

    out = {}
    for name, rgb in COLOURS.items():
        m = (frames == np.asarray(rgb, np.uint8)).all(-1)
        if m.any():
            out[name] = m
    return out


def object_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Centroid error (px) and mask IoU of every true object on every frame it is visible, averaged.

    The truth's objects are its palette colours (exact masks); the prediction's are the detector's
    colour masks. A frame where the prediction lacks the object scores the frame diagonal and IoU 0.
    """
    true_masks, pred_masks = truth_masks(truth), colour_masks(pred)
    diag = math.hypot(*truth.shape[1:3])
    dists, ious = [], []
    for colour, tm in true_masks.items():
        pm = pred_masks.get(colour, np.zeros_like(tm))
        seen = tm.sum(axis=(1, 2)) > 0
        tt, tp = centroid_track(tm), centroid_track(pm)
        d = np.linalg.norm(tp - tt, axis=1)
        d = np.where(np.isnan(d), np.where(np.isnan(tt[:, 0]), np.nan, diag), d)
        dists += [x for x in d[seen] if not np.isnan(x)]
        inter, union = (pm & tm).sum(axis=(1, 2)), (pm | tm).sum(axis=(1, 2))
        ious += list((inter / np.maximum(union, 1))[seen])
    return {"centroid_error": float(np.mean(dists)) if dists else None,
            "iou": float(np.mean(ious)) if ious else None}


def forecast_metrics(pred, truth, frames) -> dict:
    """Score generated frames `frames` (indices) of pred against the truth.

    Returns {mse (pooled), psnr (of that mse, uncapped), ssim, centroid_error and iou of the true
    objects (None when none is visible), frames (how many were scored)}.
    """
    pred, truth = _clip(pred), _clip(truth)
    if pred.shape != truth.shape:
        raise MediaError(f"need matching clips; got {pred.shape}, {truth.shape}")
    p, t = pred[frames], truth[frames]
    err = mse(p, t)
    return {"mse": err, "psnr": psnr_of(err), "ssim": ssim(p, t), **object_scores(p, t), "frames": len(t)}
