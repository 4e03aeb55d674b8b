"""The batched world: determinism, coverage, motion semantics, occlusion relations, canvas bounds at every size."""
import pytest
import torch

from vdrt.export.tiny.data import world as W
from vdrt.export.tiny.data.world import Geometry

GEOS = [Geometry(17, 64, 64), Geometry(9, 64, 64), Geometry(33, 64, 64), Geometry(17, 128, 128), Geometry(33, 64, 96)]


def _scenes(geo=Geometry(), n=2000, seed=0, **kw):
    return W.sample_scenes(n, torch.Generator().manual_seed(seed), geo, **kw)


def test_sampling_is_deterministic_by_generator():
    a, b, c = _scenes(seed=1, n=64), _scenes(seed=1, n=64), _scenes(seed=2, n=64)
    assert all(torch.equal(v, b.tensors()[k]) for k, v in a.tensors().items())
    assert not torch.equal(a.start, c.start)


def test_every_attribute_occurs_and_colours_differ():
    s = _scenes()
    for ids, names in ((s.shape, W.SHAPES), (s.colour, W.COLOURS), (s.size, W.SIZES), (s.motion, W.MOTIONS)):
        assert set(ids[s.present].tolist()) == set(range(len(names)))
    assert set(s.background.tolist()) == set(range(len(W.BACKGROUNDS)))
    two = s.present[:, 1]
    assert 0.35 < two.float().mean() < 0.45 and s.present[:, 0].all()
    assert (s.colour[two, 0] != s.colour[two, 1]).all()


@pytest.mark.parametrize("geo", GEOS, ids=lambda g: "x".join(map(str, g.shape)))
def test_objects_stay_inside_the_canvas(geo):
    s = _scenes(geo, n=500)
    pos, r = W.trajectories(s), s.radius()[..., None]  # (N, K, T, 2), (N, K, 1)
    ex, ey = geo.extent
    assert (pos >= r[..., None] - 1e-4).all()
    assert (pos[..., 0] <= ex - r + 1e-4).all() and (pos[..., 1] <= ey - r + 1e-4).all()


@pytest.mark.parametrize("geo", GEOS, ids=lambda g: "x".join(map(str, g.shape)))
def test_motions_mean_what_they_say(geo):
    s = _scenes(geo, n=1000)
    pos = W.trajectories(s)[s.present]  # (M, T, 2)
    motion, g = s.motion[s.present], s.gravity[s.present]
    step = pos[:, 1:] - pos[:, :-1]
    for m, (ux, uy) in W.AXIS_DIRS.items():
        sel = step[motion == m]
        torch.testing.assert_close(sel, sel[:, :1].expand_as(sel), atol=1e-4, rtol=0)  # constant velocity
        travel = pos[motion == m, -1] - pos[motion == m, 0]
        assert (travel[:, 0] * ux + travel[:, 1] * uy >= 10 - 1e-3).all()
        assert (travel[:, 0] * uy + travel[:, 1] * ux).abs().max() < 1e-4  # along the axis only
    fall = motion == 5
    first = pos[fall, 2:4, 1] - 2 * pos[fall, 1:3, 1] + pos[fall, :2, 1]  # before any floor contact
    torch.testing.assert_close(first, g[fall, None].expand_as(first), atol=1e-4, rtol=0)
    q = W.bounce_margin(geo.frames)
    rev = W.first_reversal(pos[motion == 0])
    assert ((rev >= q) & (rev <= geo.frames - 1 - q)).float().mean() > 0.97


def test_pair_relations_separate_and_occluding():
    geo = Geometry()
    s = _scenes(geo, n=3000, two_objects_prob=1.0, occlusion_prob=0.5)
    pos, r = W.trajectories(s), s.radius()
    over = W.overlap_frames(pos[:, 0], r[:, 0], pos[:, 1], r[:, 1])
    separate = over <= W.MAX_SEPARATE_OVERLAP
    occluding = (over >= 3) & (over <= geo.frames // 2)
    assert (separate | occluding).float().mean() > 0.97, over
    assert 0.4 < occluding.float().mean() < 0.6
