"""CFG parallelism (alone and with Ulysses): the [cond; uncond] call split over rank groups equals one process."""
from __future__ import annotations

import torch

import parallel_helpers as ph
from vdrt.parallel.cfg import split

TOL = 1e-5


def test_cfg2_forward_matches_single_process(w2, ref_forward, record_property):
    outs = [ph.result(w2, "w2", "cfg2", r) for r in range(2)]
    err = ph.rel_err(outs[0], ref_forward)
    record_property("cfg2_rel_err", err)
    assert outs[0].shape == ref_forward.shape and err <= TOL
    assert torch.equal(outs[0], outs[1])


def test_cfg2_x_ulysses2_forward_matches_single_process(w4, ref_forward, record_property):
    outs = [ph.result(w4, "w4", "cfg2_ulysses2", r) for r in range(4)]
    err = ph.rel_err(outs[0], ref_forward)
    record_property("cfg2_ulysses2_rel_err", err)
    assert outs[0].shape == ref_forward.shape and err <= TOL
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


def test_cfg2_sampling_loop_matches_single_process(w2, ref_loop, record_property):
    outs = [ph.result(w2, "w2", "loop_cfg2", r) for r in range(2)]
    err = ph.rel_err(outs[0], ref_loop)
    record_property("loop_cfg2_rel_err", err)
    assert err <= TOL and torch.equal(outs[0], outs[1])


def test_cfg2_x_ulysses2_sampling_loop_matches_single_process(w4, ref_loop, record_property):
    outs = [ph.result(w4, "w4", "loop_cfg2_ulysses2", r) for r in range(4)]
    err = ph.rel_err(outs[0], ref_loop)
    record_property("loop_cfg2_ulysses2_rel_err", err)
    assert err <= TOL and all(torch.equal(o, outs[0]) for o in outs[1:])


def test_world_size_mismatch_is_refused(w2):
    for r in range(2):
        msg = ph.result(w2, "w2", "bad_world", r)
        assert msg.startswith("ConfigError") and "world size 2 != cfg degree 2 x ulysses degree 2 (= 4)" in msg, msg


def test_split_takes_this_branch_rows_and_passes_the_rest():
    x = torch.randn(2, 3, 4)
    assert torch.equal(split(x, 2, 1, 2), x[1:2])
    assert torch.equal(split(torch.tensor([700.0, 300.0]), 2, 0, 2), torch.tensor([700.0]))
    one = torch.randn(1, 5)
    assert split(one, 2, 1, 2) is one  # not batched with the call: replicated
    assert split(None, 2, 0, 2) is None
