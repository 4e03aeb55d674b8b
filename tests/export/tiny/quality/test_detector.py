"""The analytic detector, validated on ground-truth clips of the test split."""
import numpy as np
import pytest

from vdrt.export.tiny.data import procedural as P
from vdrt.errors import MediaError
from vdrt.export.tiny.quality import detector as D

N_CLIPS = 320


@pytest.fixture(scope="module")
def test_clips():
    return [P.dataset("test", i) for i in range(N_CLIPS)]


def test_detector_scores_ground_truth_clips(test_clips):
    result = D.evaluate([c[0] for c in test_clips], [c[1] for c in test_clips])
    print(f"\ndetector on {result['clips']} test clips / {result['objects']} objects: "
          + ", ".join(f"{a} {result[a]:.4f}" for a in (*D.ATTRIBUTES, "accuracy", "clip_accuracy")))
    assert result["clips"] == N_CLIPS and result["objects"] > N_CLIPS
    for a in (*D.ATTRIBUTES, "accuracy"):
        assert result[a] >= 0.98, (a, result[a])


def test_detections_match_the_truth(test_clips):
    for frames, _, spec in test_clips[:60]:
        _, truth = P.render_with_truth(spec)
        found = {d.colour: d for d in D.detect(frames)}
        assert set(found) == {o.colour for o in spec.objects}
        for k, obj in enumerate(spec.objects):
            det = found[obj.colour]
            full = truth.areas[k] == truth.areas[k].max()
            assert np.abs(det.centroids[full] - truth.centroids[k][full]).max() < 0.3
            assert np.abs(det.areas[full] - truth.areas[k][full]).max() <= 4  # the opening drops a triangle's tips


def _single(motion: str, **kw) -> P.ClipSpec:
    for i in range(1000):
        spec = P.dataset_spec("test", i, two_objects_prob=0.0)[0]
        obj = spec.objects[0]
        if obj.motion == motion and all(getattr(obj, k) == v for k, v in kw.items()):
            return spec
    raise AssertionError(f"no {motion} clip")


@pytest.mark.parametrize("motion, wrong", [
    ("moving left", "moving right"), ("moving down", "falling"), ("falling", "moving down"),
    ("bouncing", "moving up"), ("moving up", "bouncing"),
])
def test_wrong_motion_scores_wrong(motion, wrong):
    spec = _single(motion)
    o = spec.objects[0]
    frames = P.render(spec)
    right = D.score(frames, f"a {o.size} {o.colour} {o.shape} {motion}")
    assert right["accuracy"] == 1.0 and right["motion"] == 1.0
    bad = D.score(frames, f"a {o.size} {o.colour} {o.shape} {wrong}")
    assert bad["motion"] == 0.0 and bad["accuracy"] == 0.0
    assert bad["colour"] == bad["shape"] == bad["size"] == 1.0


def test_wrong_colour_shape_or_size_scores_wrong():
    spec = _single("moving right", shape="circle", size="small")
    o = spec.objects[0]
    other = next(c for c in P.COLOURS if c != o.colour)
    frames = P.render(spec)
    s = D.score(frames, f"a small {other} circle moving right")
    assert s["colour"] == 0.0 and s["accuracy"] == 0.0 and s["motion"] == 1.0
    s = D.score(frames, f"a small {o.colour} square moving right")
    assert s["shape"] == 0.0 and s["accuracy"] == 0.0
    s = D.score(frames, f"a large {o.colour} circle moving right")
    assert s["size"] == 0.0 and s["accuracy"] == 0.0
    s = D.score(frames, f"a {o.colour} circle moving right")
    assert s["size"] is None and s["accuracy"] == 1.0
    s = D.score(frames, f"a {o.colour} circle moving right and a {other} square falling")
    assert s["accuracy"] == 0.5 and s["extra_objects"] == 0


def test_blank_clip_has_no_objects():
    frames = P.render(P.ClipSpec((), "grey"))
    assert D.detect(frames) == []
    s = D.score(frames, "a red circle bouncing")
    assert s["accuracy"] == 0.0 and s["colour"] == 0.0


def _box_blur(frames: np.ndarray) -> np.ndarray:
    x = np.pad(frames.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return np.rint(sum(x[:, i : i + 64, j : j + 64] for i in range(3) for j in range(3)) / 9).astype(np.uint8)


def test_detector_tolerates_noise_and_blur(test_clips):
    rng = np.random.default_rng(0)
    clips = [c[0] for c in test_clips[:80]]
    texts = [c[1] for c in test_clips[:80]]
    noisy = [np.clip(f + rng.normal(0, 25, f.shape), 0, 255).astype(np.uint8) for f in clips]
    blurred = [np.clip(_box_blur(f) + rng.normal(0, 10, f.shape), 0, 255).astype(np.uint8) for f in clips]
    for name, degraded in (("noise", noisy), ("blur", blurred)):
        r = D.evaluate(degraded, texts)
        assert r["accuracy"] >= 0.95, (name, r)


def test_classify_motion_on_synthetic_tracks():
    t = np.arange(17.0)
    assert D.classify_motion(t, 30 + 0.2 * np.sin(t), 30 + 0.1 * t) == "still"
    assert D.classify_motion(t, 10 + 2 * t, 10 + 2 * t) == "diagonal"
    assert D.classify_motion(t, 10 + 2 * t, 10 + 2 * np.minimum(t, 15) - (t == 16)) == "diagonal"  # 1-px turn
    assert D.classify_motion(t, 10 + 2 * t, 50 - 4 * np.abs(t - 8)) == "bouncing"
    assert D.classify_motion(t, 50 - 2 * t, 30 + 0 * t) == "moving left"
    assert D.classify_motion(t, 30 + 0 * t, 10 + 0.15 * t * t) == "falling"
    assert D.classify_motion(t, 30 + 0 * t, 10 + 2.4 * t) == "moving down"
    assert D.classify_motion(t, 30 + 0 * t, 50 - 2 * t) == "moving up"


def test_bad_input_raises_media_error():
    with pytest.raises(MediaError):
        D.detect(np.zeros((17, 64, 64), np.uint8))
    with pytest.raises(MediaError):
        D.detect(np.zeros((17, 64, 64, 3), np.float32))
