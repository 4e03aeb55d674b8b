"""The per-step attention schedule: which steps run which attention, through the one loop, and its CLI flags."""
import pytest
import torch

from vdrt import ops
from vdrt.errors import ConfigError
from vdrt.samplers import get as get_sampler
from vdrt.samplers.loop import sample
from vdrt.samplers.policies.attention import AttentionSchedule
from vdrt.sparse import SparseConfig


def test_schedule_steps():
    s = AttentionSchedule("vdrt-sparse")
    assert [s.choice_at(i, 10) for i in range(10)] == ["auto"] * 3 + ["vdrt-sparse"] * 7  # ceil(0.3 * 10)
    assert [s.choice_at(i, 4) for i in range(4)] == ["auto", "auto", "vdrt-sparse", "vdrt-sparse"]
    s = AttentionSchedule("vdrt-int8", dense_last=1)
    assert [s.choice_at(i, 4) for i in range(4)] == ["vdrt-int8"] * 3 + ["auto"]
    s = AttentionSchedule("vdrt-sparse-int8", dense_first=0, dense="torch")
    assert all(s.choice_at(i, 5) == "vdrt-sparse-int8" for i in range(5))


def test_schedule_refuses_bad_values():
    with pytest.raises(ConfigError, match="unknown attention"):
        AttentionSchedule("flash3")
    with pytest.raises(ConfigError, match="dense_first"):
        AttentionSchedule("vdrt-sparse", dense_first=-1)
    with pytest.raises(ConfigError, match="dense_last"):
        AttentionSchedule("vdrt-sparse", dense_last=True)


def test_the_loop_runs_each_step_under_its_choice():
    cfg = SparseConfig(density=0.5)
    seen = []

    def model(x, t, i):
        seen.append((ops.get_choice("attention"), ops.sparse_config()))
        return torch.zeros_like(x)

    sample(model, torch.randn(1, 3, 2, 4, 4), get_sampler("euler"), 5,
           hooks=[AttentionSchedule("vdrt-sparse", sparse=cfg)], progress=False)
    assert [c for c, _ in seen] == ["auto", "auto", "vdrt-sparse", "vdrt-sparse", "vdrt-sparse"]
    assert seen[0][1] is None and seen[-1][1] == cfg
    assert ops.get_choice("attention") == "auto"  # restored after each step


def test_cli_flags():
    from vdrt.cli.options import attention_schedule, parse_sparse

    assert attention_schedule({"attention": "sdpa"}) is None
    s = attention_schedule({"attention": "vdrt-sparse-int8", "sparse": "2x7x5", "dense_steps": 1})
    assert s.sparse == SparseConfig(window=(2, 7, 5)) and s.first(4) == 1
    assert parse_sparse("0.25") == SparseConfig(density=0.25)
    for bad, msg in [({"attention": "vdrt", "sparse": "0.25"}, "lossy --attention"),
                     ({"dense_steps": 2}, "lossy --attention"),
                     ({"attention": "vdrt-int8", "sparse": "0.25"}, "vdrt-sparse"),
                     ({"attention": "vdrt-sparse", "sparse": "lots"}, "density in"),
                     ({"attention": "vdrt-sparse", "sparse": "2"}, "density"),
                     ({"attention": "nope"}, "unknown")]:
        with pytest.raises(ConfigError, match=msg):
            attention_schedule(bad)


def test_generate_with_sparse_attention_runs_and_refuses_bad_flags_early(tmp_path):
    """The CLI on the default model: a bad --sparse is refused before loading (exit 2); a good one runs."""
    from vdrt.cli import main

    out = tmp_path / "x.gif"
    assert main(["generate", "a red circle bouncing", "-o", str(out), "--attention", "vdrt-sparse", "--sparse",
                 "9", "--no-progress"]) == 2
    assert not out.exists()
    assert main(["generate", "a red circle bouncing", "-o", str(out), "--attention", "vdrt-int8",
                 "--dense-steps", "1", "--no-progress"]) == 0
    assert out.is_file()
