"""vdrt-tiny scripts on CPU at a tiny size: teacher training, exact resume, cards, distillation, masks."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vdrt.export.tiny import common as C
from vdrt.export.tiny import distill, train

from vdrt.export.tiny.data.procedural import batch, to_float
from vdrt.fsutil import sha256_file
from vdrt.export.tiny.quality.oracle import load_card_models, read_card

TINY = ["--config", '{"dim": 32, "num_heads": 2, "num_layers": 1}',
        "--text-config", '{"dim": 32, "layers": 1, "heads": 2}']
TRAIN = ["--steps", "4", "--batch", "2", "--pool", "6", "--warmup", "2", "--log-every", "1", "--device", "cpu", *TINY]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert train.main(["--out", str(out), *TRAIN]) == 0
    return out


def _ckpt(out, group):
    d = out / "ckpt" / json.loads((out / "ckpt" / "latest.json").read_text())["dir"]
    return {k: v for f in sorted(d.glob(f"{group}-*.safetensors")) for k, v in load_file(f).items()}


def test_teacher_card_weights_and_loss(teacher_dir):
    card = json.loads((teacher_dir / "vdrt-tiny-teacher.json").read_text())
    assert set(card) == {"name", "weights", "sha256", "config", "text", "defaults", "trained"}
    assert card["name"] == "vdrt-tiny-teacher" and card["config"]["family"] == "factorized"
    assert card["sha256"] == sha256_file(teacher_dir / card["weights"])
    assert card["defaults"] == {"num_frames": 17, "height": 64, "width": 64, "num_steps": 50, "sampler": "unipc",
                                "guidance": 4.0, "shift": 3.0, "fps": 8}
    assert {"vocab", "max_len", "dim", "layers", "heads"} <= set(card["text"]) and card["text"]["dim"] == 32
    t = card["trained"]
    assert t["steps"] == 4 and t["complete"] and np.isfinite(t["final_loss"]) and t["data_seed"] == 0
    assert t["command"].startswith("python -m vdrt.export.tiny.train --out")
    weights = load_file(teacher_dir / card["weights"])
    assert all(v.dtype == torch.float16 for v in weights.values())
    assert {k.split(".")[0] for k in weights} == {"denoiser", "text"}
    ema = _ckpt(teacher_dir, "ema")
    for k, v in weights.items():  # the card ships the EMA, in fp16
        torch.testing.assert_close(v, ema[k].half(), rtol=0, atol=0)
    curve = json.loads((teacher_dir / "loss_curve.json").read_text())
    assert [r["step"] for r in curve] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in curve)
    den, text = load_card_models(read_card(teacher_dir / "vdrt-tiny-teacher.json"))
    assert den.config.dim == 32 and text.encoder.config.dim == 32


def test_resume_is_bit_identical(teacher_dir, tmp_path):
    out = tmp_path / "staged"
    assert train.main(["--out", str(out), *TRAIN, "--stop-at", "2"]) == 0
    assert json.loads((out / "ckpt" / "latest.json").read_text())["step"] == 2
    assert train.main(["--out", str(out), *TRAIN]) == 2  # refuses to overwrite without --resume
    assert train.main(["--out", str(out), *TRAIN, "--resume"]) == 0
    a = json.loads((teacher_dir / "loss_curve.json").read_text())
    b = json.loads((out / "loss_curve.json").read_text())
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    for group in ("model", "ema", "opt", "rng"):
        x, y = _ckpt(teacher_dir, group), _ckpt(out, group)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), group


def _distill_argv(teacher_dir, out):
    return ["--teacher", str(teacher_dir / "vdrt-tiny-teacher.json"), "--out", str(out), "--trajectories", "4",
            "--steps", "2", "--batch", "2", "--grid", "4", "--traj-batch", "2", "--warmup", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def student_dir(teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert distill.main(_distill_argv(teacher_dir, out)) == 0
    return out


def test_distill_writes_a_fewstep_student(teacher_dir, student_dir):
    card = read_card(student_dir / "vdrt-tiny.json")
    assert card["defaults"] == {"num_frames": 17, "height": 64, "width": 64, "num_steps": 4, "sampler": "fewstep",
                                "sampler_timesteps": [1000, 750, 500, 250], "guidance": 1.0, "shift": 1.0, "fps": 8}
    assert card["sha256"] == sha256_file(student_dir / "vdrt-tiny.safetensors")
    t = card["trained"]
    assert t["trajectories"] == 4 and t["steps"] == 2 and t["guidance"] == 4.0 and t["trajectory_seconds"] > 0
    assert np.isfinite(t["final_loss"]) and t["teacher"]["sha256"] == read_card(
        teacher_dir / "vdrt-tiny-teacher.json")["sha256"]
    teacher = load_file(teacher_dir / "vdrt-tiny-teacher.safetensors")
    student = load_file(student_dir / "vdrt-tiny.safetensors")
    assert teacher.keys() == student.keys()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)  # it trained


def test_distill_resumes_exactly_and_checks_the_grid(teacher_dir, student_dir, tmp_path):
    argv = _distill_argv(teacher_dir, tmp_path)
    assert distill.main([*argv, "--stop-at", "1"]) == 0
    assert distill.main([*argv, "--resume"]) == 0  # regenerates the same 4 trajectories, then step 2
    for group in ("model", "ema", "opt"):
        x, y = _ckpt(student_dir, group), _ckpt(tmp_path, group)
        assert all(torch.equal(x[k], y[k]) for k in x), group
    assert distill.main([*argv[:-2], "--grid", "6"]) == 2  # not a multiple of 4


def test_integrate_is_heun_with_a_final_euler_step_and_records_the_four_sigmas():
    calls = []

    class Linear:  # v = x: one Heun step of ds = -h multiplies x by 1 - h + h^2/2, Euler by 1 - h
        def velocity(self, x, s, ctx, cond):
            calls.append(s)
            return x

    z = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64) * 0.3
    states = distill.integrate(Linear(), z, None, None, grid=8)
    assert calls[:3] == [1.0, 0.875, 0.875] and len(calls) == 2 * 8 - 1
    heun = 1 - 1 / 8 + 1 / 128
    for x, k in zip(states[:4], (0, 2, 4, 6)):  # s = 1, .75, .5, .25
        torch.testing.assert_close(x, z * heun**k, rtol=1e-12, atol=0)
    torch.testing.assert_close(states[4], (z * heun**7 * (1 - 1 / 8)).clamp(-1, 1), rtol=1e-12, atol=0)


def test_conditioning_masks_follow_the_modes():
    keep, mode = C.sample_keep(500, torch.Generator().manual_seed(0), "cpu")
    assert keep.shape == (500, 1, 17, 64, 64) and keep.dtype == torch.float32
    names = list(C.MODE_PROBS)
    for i, (m, p) in enumerate(C.MODE_PROBS.items()):
        assert abs((mode == i).float().mean().item() - p) < 0.07, m
    k = keep[:, 0]  # (N, F, H, W)
    per_frame = k.mean(dim=(2, 3))  # (N, F)
    at = lambda m: mode == names.index(m)  # noqa: E731
    assert (k[at("t2v")] == 0).all()
    i2v = per_frame[at("i2v")]
    assert (i2v[:, 0] == 1).all() and (i2v[:, 1:] == 0).all()
    ext = per_frame[at("extend")]
    known = ext.sum(1)
    assert set(known.long().tolist()) == set(range(1, 9))
    assert all((row[: int(n)] == 1).all() and (row[int(n):] == 0).all() for row, n in zip(ext, known))
    interp = per_frame[at("interpolate")]
    assert (interp[:, [0, -1]] == 1).all() and (interp[:, 1:-1] == 0).all()
    for m in ("inpaint", "outpaint"):
        sp = k[at(m)]
        assert (sp == sp[:, :1]).all()  # the same mask on every frame
        hole = sp[:, 0] == (0 if m == "inpaint" else 1)  # the rectangle: generated (inpaint) or kept (outpaint)
        rows, cols = hole.any(2).sum(1), hole.any(1).sum(1)
        assert (hole.sum((1, 2)) == rows * cols).all()  # a filled rectangle
        lo, hi = (8, 40) if m == "inpaint" else (64 - 40, 64 - 8)
        assert rows.min() >= lo and rows.max() <= hi and cols.min() >= lo and cols.max() <= hi


def test_checkpoint_shards_stay_under_the_limit(tmp_path):
    g = torch.Generator().manual_seed(1)
    tensors = {f"w{i}": torch.randn(100, 50, generator=g) for i in range(7)}  # 20 kB each
    C.save_checkpoint(tmp_path, 3, {"model": tensors}, {"note": 1}, limit=45_000)
    d = tmp_path / "ckpt" / "step-0000003"
    files = sorted(d.glob("model-*.safetensors"))
    assert len(files) == 4 and all(f.stat().st_size < 45_000 + 1000 for f in files)
    groups, meta = C.load_checkpoint(tmp_path)
    assert meta["step"] == 3 and meta["note"] == 1
    assert all(torch.equal(groups["model"][k], v) for k, v in tensors.items())
    with pytest.raises(Exception, match="exceeds"):
        C.save_checkpoint(tmp_path, 4, {"model": {"big": torch.zeros(20_000)}}, {}, limit=45_000)


def test_timestep_sampling_is_shifted_logit_normal():
    s = train.sample_sigmas(40_000, torch.Generator().manual_seed(0), "cpu", shift=3.0, uniform_frac=0.1)
    assert s.min() > 0 and s.max() <= 1
    assert abs(s.median().item() - 0.73) < 0.03  # shift(0.5) = 0.75, pulled down by the uniform tenth
    assert (s > 0.9).float().mean() > 0.1 and (s < 0.1).float().mean() > 0.005  # both ends are trained


def test_default_size_card_fits_the_limits(tmp_path):
    from vdrt.export.tiny.quality.oracle import build_models

    config, text = C.sections()
    den, cond = build_models(config, text)
    n_den = sum(p.numel() for p in den.parameters())
    assert 3.0e6 < n_den < 3.3e6
    params = C.named_parameters(den, cond.encoder)
    C.write_card(tmp_path, "full", {k: p.detach() for k, p in params.items()}, config, text, {}, {})
    assert (tmp_path / "full.safetensors").stat().st_size < 8_000_000


def test_parallel_pool_rendering_matches_the_dataset():
    pool, texts = C.render_pool("train", 3, 25, "cpu", workers=2, chunk=10)
    clips, ref = batch("train", 3, 25)
    assert pool.dtype == torch.uint8 and np.array_equal(pool.numpy(), clips) and texts == ref
    x = C.clips_to_model(pool[:2])
    assert torch.equal(x, torch.from_numpy(to_float(clips[:2])))


def test_trajectory_count_fits_the_time_share():
    class Args:
        traj_share = 0.5

    class Budget:
        total = 100.0

        def elapsed(self):
            return 20.0

    # 30 s left of the 50 s share, 4 s a batch of 8: 7 more batches after the 16 done
    assert distill._fit_count(1000, 16, 8, 4.0, Args, Budget()) == 16 + 7 * 8
    assert distill._fit_count(40, 16, 8, 4.0, Args, Budget()) == 40
    Budget.total = None
    assert distill._fit_count(1000, 16, 8, 4.0, Args, Budget()) == 1000


def test_loop_fits_its_lr_horizon_to_the_time_budget(tmp_path):
    import time

    w = torch.nn.Parameter(torch.randn(3, generator=torch.Generator().manual_seed(0)))

    def loss_fn(step):
        time.sleep(0.02)
        return (w**2).sum()

    cfg = C.LoopConfig(steps=100_000, lr=1e-2, warmup=5, fit_after=2, fit_steps=3, ckpt_every=10**9, log_every=10**9)
    loop = C.Loop(tmp_path, {"w": w}, cfg, torch.Generator(), C.Budget(None))
    loop.budget = C.Budget(minutes=2.5 / 60, reserve_s=0.5)  # from here (AdamW's first import is slow)
    t0 = time.monotonic()
    done = loop.run(loss_fn)
    assert 5 < loop.horizon < 150  # 2 s at <= 50 steps/s, not the 100000 asked
    assert time.monotonic() - t0 < 2.5 and loop.step <= loop.horizon
    assert done == (loop.step == loop.horizon) and (tmp_path / "ckpt" / "latest.json").is_file()
    assert loop.curve and loop.curve[-1]["step"] == loop.step
