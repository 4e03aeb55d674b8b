"""Ulysses sequence parallelism: the sharded Wan forward equals the single-process model (gloo, CPU)."""
from __future__ import annotations

import pytest
import torch

import parallel_helpers as ph
from vdrt.errors import ConfigError
from vdrt.parallel import Layout, check_heads, check_layout, check_sequence, choose_degrees
from vdrt.parallel.ulysses import wan_forward

TOL = 1e-5  # float32, rel err (norm) vs the single-process forward


def test_one_rank_forward_is_the_model_forward(case, ref_forward):
    """No group: the sequence-parallel forward mirrors WanModel.forward exactly (guards against drift)."""
    with torch.inference_mode():
        out = wan_forward(ph.load_model(case), None, case["latents"], case["timestep"], case["context"])
    assert torch.equal(out, ref_forward)


@pytest.mark.parametrize("world", [2, 4])
def test_ulysses_forward_matches_single_process(world, request, ref_forward, record_property):
    d = request.getfixturevalue(f"w{world}")
    outs = [ph.result(d, f"w{world}", f"ulysses{world}", r) for r in range(world)]
    err = ph.rel_err(outs[0], ref_forward)
    record_property(f"ulysses{world}_rel_err", err)
    assert outs[0].shape == ref_forward.shape == ph.SHAPE
    assert err <= TOL, f"{world} Ulysses ranks: rel err {err:.2e} > {TOL}"
    assert all(torch.equal(o, outs[0]) for o in outs[1:]), "ranks disagree: the sampler would diverge"


def test_ulysses_sampling_loop_matches_single_process(w2, ref_loop, record_property):
    """3 UniPC steps with guidance 3 (batch 2 per call, both rows on each Ulysses group)."""
    outs = [ph.result(w2, "w2", "loop_ulysses2", r) for r in range(2)]
    err = ph.rel_err(outs[0], ref_loop)
    record_property("loop_ulysses2_rel_err", err)
    assert err <= TOL
    assert torch.equal(outs[0], outs[1])


def test_sequence_not_divisible_is_refused_on_every_rank(w2):
    for r in range(2):
        msg = ph.result(w2, "w2", "bad_sequence", r)
        assert msg.startswith("ConfigError"), msg
        assert "3x3x5 patch grid" in msg and "45 tokens" in msg and "ulysses degree 2" in msg
        assert "4 patch frames" in msg and "4 patch rows" in msg and "6 patch columns" in msg


def test_heads_not_divisible_is_refused(w2):
    msg = ph.result(w2, "w2", "bad_heads", 0)
    assert msg.startswith("ConfigError") and "ulysses degree 2" in msg and "3 attention heads" in msg, msg


def test_check_heads_names_the_degrees_that_fit():
    with pytest.raises(ConfigError, match=r"ulysses degree 8 does not divide the model's 12 attention heads.*"
                                          r"\[1, 2, 3, 4, 6, 12\]"):
        check_heads(12, 8)
    check_heads(40, 8)


def test_check_sequence_names_the_pixel_flags():
    flags = lambda axis, n: ("--frames", "--height", "--width")[axis] + f" {n}"  # noqa: E731
    with pytest.raises(ConfigError, match=r"21x30x53 .* 33390 tokens, not divisible by ulysses degree 4.*"
                                          r"22 patch frames \(--frames 22\), 32 patch rows \(--height 32\), "
                                          r"54 patch columns"):
        check_sequence((21, 30, 53), 4, flags)
    check_sequence((21, 30, 52), 8)  # Wan 480p x 81 frames: 32760 tokens


def test_layout_groups_and_coordinates():
    lay = Layout(4, cfg_degree=2, ulysses_degree=2)
    assert lay.ulysses_groups() == [[0, 1], [2, 3]] and lay.cfg_groups() == [[0, 2], [1, 3]]
    assert [lay.coords(r) for r in range(4)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert Layout(8, 1, 8).ulysses_groups() == [list(range(8))]


def test_layout_mismatch_names_the_numbers():
    with pytest.raises(ConfigError, match=r"world size 4 != cfg degree 2 x ulysses degree 3 \(= 6\)"):
        check_layout(4, 2, 3)
    with pytest.raises(ConfigError, match="cfg degree 4"):
        Layout(4, 4, 1)


def test_choose_degrees():
    assert choose_degrees(4, 12, use_cfg=True) == (2, 2)
    assert choose_degrees(2, 12, use_cfg=False) == (1, 2)
    assert choose_degrees(2, None, use_cfg=True) == (2, 1)  # a non-wan model: CFG parallel only
    assert choose_degrees(3, 12, use_cfg=True) == (1, 3)
    with pytest.raises(ConfigError, match="ulysses degree 8 does not divide the model's 12 attention heads"):
        choose_degrees(8, 12, use_cfg=False)
    with pytest.raises(ConfigError, match="only the wan family"):
        choose_degrees(4, None, use_cfg=True)
