"""Procedural clips: determinism, disjoint splits, coverage, visibility, motion semantics, speed."""
import hashlib
import time
from dataclasses import replace

import numpy as np
import pytest

from vdrt.export.tiny.data import procedural as P
from vdrt.errors import ConfigError

N = 500


@pytest.fixture(scope="module")
def train_specs():
    return [P.dataset_spec("train", i)[0] for i in range(N)]


def _digest(frames: np.ndarray) -> str:
    return hashlib.sha1(frames.tobytes()).hexdigest()


def test_dataset_is_deterministic_and_batch_matches():
    a, b = P.dataset("train", 7), P.dataset("train", 7)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert a[0].dtype == np.uint8 and a[0].shape == (17, 64, 64, 3)
    assert a[2].seed == P.split_seed("train", 7) == 7
    clips, texts = P.batch("train", 5, 4)
    assert clips.shape == (4, 17, 64, 64, 3) and clips.dtype == np.uint8
    for i in range(4):
        frames, text, _ = P.dataset("train", 5 + i)
        assert np.array_equal(clips[i], frames) and texts[i] == text
    assert not np.array_equal(P.dataset("train", 8)[0], a[0])


@pytest.mark.parametrize("split, index, text, digest", [
    ("train", 0, "a yellow triangle moving up and a green circle moving down", "ab10cec4342fe0b5"),
    ("val", 1, "a red circle moving left", "4927efcacf4c9008"),
    ("test", 2, "a large red circle falling and a blue circle moving left on a grey background", "5a78abf7d30bd399"),
])
def test_splits_are_pinned(split, index, text, digest):
    """The splits are fixed: evaluation numbers stay comparable. Change these only on purpose."""
    frames, caption, _ = P.dataset(split, index)
    assert caption == text and _digest(frames)[:16] == digest


def test_sample_spec_is_deterministic_by_rng():
    s1 = P.sample_spec(np.random.default_rng(123), 0.5)
    s2 = P.sample_spec(np.random.default_rng(123), 0.5)
    assert s1 == s2 and np.array_equal(P.render(s1), P.render(s2))
    assert P.sample_spec(np.random.default_rng(124), 0.5) != s1


def test_splits_use_disjoint_seeds_and_give_different_clips(train_specs):
    test = [P.dataset_spec("test", i)[0] for i in range(N)]
    val = [P.dataset_spec("val", i)[0] for i in range(N)]
    seeds = [{s.seed for s in specs} for specs in (train_specs, val, test)]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    worlds = [{(s.objects, s.background) for s in specs} for specs in (train_specs, test)]
    assert len(worlds[0]) == N and not worlds[0] & worlds[1]
    digests = [{_digest(P.render(s)) for s in specs[:200]} for specs in (train_specs, test)]
    assert not digests[0] & digests[1]


def test_every_attribute_occurs(train_specs):
    objs = [o for s in train_specs for o in s.objects]
    assert {o.shape for o in objs} == set(P.SHAPES)
    assert {o.colour for o in objs} == set(P.COLOURS)
    assert {o.size for o in objs} == set(P.SIZES)
    assert {o.motion for o in objs} == set(P.MOTIONS)
    assert {s.background for s in train_specs} == set(P.BACKGROUNDS)
    two = [s for s in train_specs if len(s.objects) == 2]
    assert 0.2 < len(two) / N < 0.4
    assert all(s.objects[0].colour != s.objects[1].colour for s in two)


def test_palette_is_well_separated():
    palette = {**P.COLOURS, **P.BACKGROUNDS}
    for name, rgb in P.COLOURS.items():
        d = [np.linalg.norm(np.subtract(rgb, other)) for n, other in palette.items() if n != name]
        assert min(d) >= 145, name


def test_objects_stay_visible_and_truth_matches_pixels(train_specs):
    for spec in train_specs[:300]:
        frames, truth = P.render_with_truth(spec)
        for k, obj in enumerate(spec.objects):
            full = len(P.shape_offsets(obj.shape, obj.size)[0])
            assert (truth.areas[k] > 0).all()
            assert (truth.areas[k] == full).sum() >= 17 - P.MAX_OVERLAP_FRAMES  # in frame, rarely hidden
            r = obj.radius
            c = np.rint(truth.positions[k])
            assert c.min() >= r and c[:, 0].max() <= 63 - r and c[:, 1].max() <= 63 - r
            colour_px = (frames == P.COLOURS[obj.colour]).all(-1).sum(axis=(1, 2))
            assert (colour_px == truth.areas[k]).all()


def test_truth_centroids_of_unoccluded_objects():
    spec = P.ClipSpec((P.ObjectSpec("triangle", "red", "large", "moving right", (15.2, 30.0), (2.0, 0.0)),), "grey")
    frames, truth = P.render_with_truth(spec)
    dy, dx = P.shape_offsets("triangle", "large")
    want_x = np.rint(15.2 + 2.0 * np.arange(17)) + dx.mean()
    np.testing.assert_allclose(truth.centroids[0, :, 0], want_x, atol=1e-9)
    np.testing.assert_allclose(truth.centroids[0, :, 1], 30 + dy.mean(), atol=1e-9)
    assert dy.mean() > 1.5  # the apex is up: the centroid sits below the box centre
    assert (truth.areas[0] == len(dy)).all()


def _motion_specs(train_specs, motion):
    return [o for s in train_specs for o in s.objects if o.motion == motion]


def test_axis_motions_move_clearly_at_constant_speed(train_specs):
    for motion, (ux, uy) in P._AXIS_VELOCITY.items():
        for o in _motion_specs(train_specs, motion):
            pos = P.trajectory(o)
            step = np.diff(pos, axis=0)
            np.testing.assert_allclose(step - step[0], 0.0, atol=1e-9)
            travel = pos[-1] - pos[0]
            assert travel[0] * ux + travel[1] * uy >= 19.0
            assert abs(travel[0] * uy) + abs(travel[1] * ux) == 0.0


def test_falling_accelerates_from_the_top_and_bouncing_reflects(train_specs):
    falls = _motion_specs(train_specs, "falling")
    for o in falls:
        y = P.trajectory(o)[:, 1]
        assert y[0] <= o.radius + 8 and 0.25 <= o.gravity <= 0.4
        first = np.diff(y, 2)[:6]  # before any floor contact
        np.testing.assert_allclose(first, o.gravity, atol=1e-9)
    assert any(np.diff(P.trajectory(o)[:, 1]).min() < 0 for o in falls)  # some bounce on the floor
    for o in _motion_specs(train_specs, "bouncing"):
        assert 4 <= P._first_reversal(P.trajectory(o)) <= 12
        assert min(abs(o.velocity[0]), abs(o.velocity[1])) >= 1.2


def test_float_helpers_round_trip():
    clips, _ = P.batch("val", 0, 2)
    x = P.to_float(clips)
    assert x.shape == (2, 3, 17, 64, 64) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(P.to_uint8(x), clips)
    assert P.to_float(clips[0]).shape == (3, 17, 64, 64)


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="split"):
        P.dataset("training", 0)
    with pytest.raises(ConfigError, match="index"):
        P.dataset("train", -1)
    spec = P.dataset("train", 0)[2]
    with pytest.raises(ConfigError, match="background"):
        P.render(replace(spec, background="pink"))
    with pytest.raises(ConfigError, match="out buffer"):
        P.batch("train", 0, 2, out=np.empty((3, 17, 64, 64, 3), np.uint8))


def test_render_throughput_is_reported():
    """Measures (does not assert) clips/s on this process's CPU time; see the commit message."""
    buf = np.empty((256, 17, 64, 64, 3), np.uint8)
    P.batch("train", 10_000, 256, out=buf)  # warm caches
    t = time.process_time()
    clips, texts = P.batch("train", 0, 256, out=buf)
    rate = 256 / (time.process_time() - t)
    print(f"\nprocedural.batch: {rate:.0f} clips/s (CPU time, one core)")
    assert clips is buf and len(texts) == 256 and len(set(texts)) > 50
