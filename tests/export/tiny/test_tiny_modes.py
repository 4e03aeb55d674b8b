"""Training conditioning: every mode's mask, hint and target mean what the table in modes.py says."""
import torch

from vdrt.export.tiny import modes as M
from vdrt.export.tiny.data import raster
from vdrt.export.tiny.data.captions import decode
from vdrt.export.tiny.data.world import Geometry, sample_scenes, trajectories


def _batch(geo=Geometry(), n=256, seed=0, probs=M.MODE_PROBS):
    gen = torch.Generator().manual_seed(seed)
    s = sample_scenes(n, gen, geo)
    return s, M.make_batch(s, gen, probs)


def _only(name):
    return tuple(1.0 if m == name else 0.0 for m in M.MODES)


def test_shapes_modes_and_known_pixels():
    s, b = _batch(Geometry(9, 64, 96))
    assert b.x0.shape == (256, 3, 9, 64, 96) and b.cond.shape == (256, 8, 9, 64, 96) and b.ids.shape == (256, 16)
    counts = torch.bincount(b.mode, minlength=len(M.MODES)).float() / 256
    assert (counts[[M.MODES.index(m) for m in M.MODES if m != "remove"]] > 0).all()
    keep = b.cond[:, 3:4]
    torch.testing.assert_close(b.cond[:, :3], b.x0 * keep)  # known pixels are the target's
    t2v = b.mode == M.MODES.index("t2v")
    assert (b.cond[t2v] == 0).all()


def test_frame_modes():
    t = torch.arange(17)
    for name, check in [("i2v", lambda k: k.tolist() == [True] + [False] * 16),
                        ("extend", lambda k: 1 <= k.sum() <= 8 and k[: k.sum()].all()),
                        ("interpolate", lambda k: k.tolist() == [True] + [False] * 15 + [True]),
                        ("slowmo", lambda k: k.tolist() in ([bool(i % 2 == 0) for i in t],
                                                            [bool(i % 4 == 0) for i in t]))]:
        _, b = _batch(n=16, probs=_only(name))
        frames = b.cond[:, 3].amax((2, 3)).bool()  # (B, T)
        assert (b.cond[:, 3] == frames[:, :, None, None]).all(), name  # whole frames
        assert all(check(k) for k in frames), name


def test_remove_drops_the_object_inside_a_per_frame_hole():
    s, b = _batch(n=64, probs=_only("remove"))
    two = s.present[:, 1]
    assert (b.mode[two] == M.MODES.index("remove")).all() and (b.mode[~two] == M.MODES.index("inpaint")).all()
    keep = b.cond[two, 3]  # (B, T, H, W)
    per_frame = keep.flatten(2).float().mean(-1)
    assert (per_frame < 1).all() and (per_frame > 0.5).all()
    assert not torch.equal(keep[:, 0], keep[:, -1])  # the hole follows the object
    target_objects = (b.x0[two] != b.x0[two][:, :, :1, :1, :1]).any(1)  # pixels off the background
    assert target_objects.flatten(1).any(1).all()  # one object stays
    assert all(" and " not in text for text in decode(b.ids[two]))  # captioned with the one left


def test_v2v_hint_keeps_the_motion_and_changes_the_look():
    s, b = _batch(n=32, probs=_only("v2v"))
    assert (b.cond[:, 7] == 1).all() and (b.cond[:, 3] == 0).all()
    hint, x0 = b.cond[:, 4:7], b.x0
    assert (hint != x0).flatten(1).any(1).all()
    moving = ((hint - hint[:, :, :1]).abs().sum(1) > 0) & ((x0 - x0[:, :, :1]).abs().sum(1) > 0)
    assert moving.any()


def test_upscale_hint_is_the_half_size_render():
    geo = Geometry(9, 128, 128)
    s, b = _batch(geo, n=8, probs=_only("upscale"))
    half = raster.to_model(raster.render(M.dataclasses.replace(s, geometry=Geometry(9, 64, 64))))
    torch.testing.assert_close(b.cond[:, 4:7, :, ::2, ::2], half)
    _, odd = _batch(Geometry(9, 64, 72), n=8, probs=_only("upscale"))  # a 32x36 half is not patch-aligned
    assert (odd.mode == M.MODES.index("t2v")).all() and (odd.cond == 0).all()


def test_remove_hole_covers_the_object():
    s = sample_scenes(16, torch.Generator().manual_seed(1), Geometry())
    hole = M.remove_hole(s, torch.zeros(16, dtype=torch.long))
    full = raster.masks(s, trajectories(s))[:, 0]
    assert (full <= hole).all()


def test_continue_switches_motion_where_the_known_frames_end():
    from vdrt.export.tiny.data.captions import parse_caption
    from vdrt.export.tiny.quality.detector import detect

    s, b = _batch(Geometry(33, 64, 64), n=24, probs=_only("continue"))
    keep = b.cond[:, 3].amax((2, 3)).bool()  # (B, T)
    k = keep.sum(1)
    assert (k >= 2).all() and all(row[:n].all() and not row[n:].any() for row, n in zip(keep, k))
    old = raster.to_model(raster.render(s))
    late = torch.arange(33)[None] >= k[:, None]
    assert torch.equal(b.x0[:, :, :8][~late[:, None, :8].expand(-1, 3, -1)], old[:, :, :8][~late[:, None, :8]
                       .expand(-1, 3, -1)])  # the known frames are the old scene's
    right = 0
    texts = decode(b.ids)
    clips = ((b.x0.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for clip, text, n in zip(clips, texts, k.tolist()):
        want = {o["colour"]: o["motion"] for o in parse_caption(text)}
        got = {d.colour: d.motion for d in detect(clip[n:])}
        right += sum(want[c] == got.get(c) or (want[c] == "bouncing" and got.get(c) == "diagonal") for c in want)
    n_obj = sum(len(parse_caption(t)) for t in texts)
    assert right / n_obj > 0.8  # the caption tells the motion after the switch
