"""Batched rendering: truth equals the pixels, exact shapes, occlusion, scale consistency, boxes."""
import numpy as np
import pytest
import torch

from vdrt.export.tiny.data import procedural as P
from vdrt.export.tiny.data import raster as R
from vdrt.export.tiny.data.world import COLOURS, Geometry


@pytest.mark.parametrize("geo", [Geometry(), Geometry(33, 64, 96), Geometry(9, 128, 128)],
                         ids=lambda g: "x".join(map(str, g.shape)))
def test_truth_matches_the_pixels(geo):
    scenes, _ = P.split_scenes("train", 0, 48, geo)
    frames, truth = R.render(scenes, with_truth=True)
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.uint8)
    for i in range(len(scenes)):
        for k in range(2):
            if not truth.present[i, k]:
                assert (truth.areas[i, k] == 0).all()
                continue
            mine = (frames[i] == palette[scenes.colour[i, k]]).all(-1)  # (T, H, W): colours are distinct
            assert torch.equal(mine.sum((1, 2)), truth.areas[i, k])
            seen = truth.areas[i, k] > 0
            ys, xs = torch.meshgrid(torch.arange(geo.height), torch.arange(geo.width), indexing="ij")
            cx = (mine * xs).sum((1, 2))[seen] / truth.areas[i, k][seen]
            torch.testing.assert_close(truth.centroids[i, k, seen, 0], cx.float())
            assert (truth.boxes[i, k, seen, 0] == torch.stack([xs[m].min() for m in mine[seen]])).all()
    assert (truth.areas <= truth.full_areas).all()


def test_exact_shapes_at_scale_one():
    geo = Geometry()
    objs = [P.ObjectSpec(s, "red", "large", "moving right", (30.0, 30.0), (0.0, 0.0)) for s in P.SHAPES]
    areas = [P.render_with_truth(P.ClipSpec((o,), "black", geo))[1].areas[0, 0] for o in objs]
    r = 11
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    want = [(dx**2 + dy**2 <= (r + 0.5) ** 2).sum(), (2 * r + 1) ** 2, (np.abs(dx) <= (dy + r) // 2).sum()]
    assert [int(a) for a in areas] == [int(w) for w in want]


def test_front_object_hides_the_back_one():
    back = P.ObjectSpec("square", "red", "small", "moving right", (10.0, 30.0), (3.0, 0.0))
    front = P.ObjectSpec("square", "blue", "large", "moving right", (40.0, 30.0), (0.0, 0.0))
    frames, truth = P.render_with_truth(P.ClipSpec((back, front), "black"))
    assert truth.areas[1].min() == truth.full_areas[1].min() == 23 * 23  # the front is always whole
    hidden = truth.areas[0] == 0
    assert hidden.any() and (truth.areas[0][:3] == 13 * 13).all()  # passes fully behind, was visible
    assert np.isnan(truth.centroids[0][hidden]).all() and (truth.boxes[0][hidden] == -1).all()
    assert (truth.amodal_boxes[0][hidden] >= 0).all()  # the amodal box still knows where it is
    assert (frames[hidden.nonzero()[0]] == COLOURS["red"]).all(-1).sum() == 0


def test_double_scale_renders_the_same_scene():
    scenes, _ = P.split_scenes("val", 0, 16, Geometry(9, 64, 64))
    big = scenes.map(lambda v: v)
    big.geometry = Geometry(9, 128, 128)
    _, small_truth = R.render(scenes, with_truth=True)
    _, big_truth = R.render(big, with_truth=True)
    seen = (small_truth.areas == small_truth.full_areas) & (big_truth.areas == big_truth.full_areas)
    seen &= small_truth.areas > 0
    err = (big_truth.centroids[seen] / 2 - small_truth.centroids[seen]).abs()
    assert err.max() < 1.0
    ratio = big_truth.full_areas[seen].float() / small_truth.full_areas[seen].float()
    assert ((ratio > 3.4) & (ratio < 4.6)).all()
