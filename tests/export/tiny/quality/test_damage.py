"""Damage helpers against float64 references; the oracle flags int4 weights and a too-small window."""
import pytest
import torch

from vdrt.export.tiny.quality import damage


def test_int4_fake_quant_matches_a_float64_reference():
    w = torch.randn(24, 70, dtype=torch.float32)
    q = damage.fake_quant_int4(w, group=32)
    x = torch.nn.functional.pad(w.double(), (0, 26)).view(24, 3, 32)
    scale = x.abs().amax(-1, keepdim=True) / 7
    ref = (torch.clamp(torch.round(x / scale), -8, 7) * scale).view(24, -1)[:, :70]
    torch.testing.assert_close(q.double(), ref, rtol=0, atol=1e-6)
    levels = (x / scale).round().clamp(-8, 7)
    assert levels.unique().numel() <= 16 and (q - w).abs().max() > 0
    assert ((q.double() - w.double()).abs() <= scale.max() / 2 + 1e-6).all()


def test_int4_weights_changes_every_linear_and_keeps_shapes():
    model = torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.LayerNorm(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    damage.int4_weights(model)
    after = model.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    assert torch.equal(after["0.bias"], before["0.bias"]) and torch.equal(after["1.weight"], before["1.weight"])


def _reference_attention(q, k, v, allowed):
    """(B, N, L, D) float64 softmax attention with a bool mask of allowed pairs."""
    s = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, -1) @ v.double()


def test_window_attention_matches_a_masked_reference():
    q, k, v = (torch.randn(2, 10, 3, 8) for _ in range(3))  # (B, L, H, D)
    got = damage.window_attention(2)(q, k, v)
    i = torch.arange(10)
    ref = _reference_attention(*(x.transpose(1, 2) for x in (q, k, v)), (i[:, None] - i[None]).abs() <= 2)
    torch.testing.assert_close(got.double(), ref.transpose(1, 2), rtol=1e-5, atol=1e-5)
    full = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
    torch.testing.assert_close(damage.window_attention(100)(q, k, v), full, rtol=1e-5, atol=1e-5)


def test_window_temporal_attention_zero_is_per_frame():
    q, k, v = (torch.randn(1, 5, 4, 2, 8) for _ in range(3))  # (B, F, S, H, D)
    torch.testing.assert_close(damage.window_temporal_attention(0)(q, k, v), v, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_oracle_flags_int4_weights_and_a_frame_window_on_the_shipped_model():
    """The shipped vdrt-tiny: int4 weights and temporal attention limited to one frame both read as worse."""
    from vdrt import embedded
    from vdrt.export.tiny.quality import oracle
    from vdrt.export.tiny.quality.compare import compare
    from vdrt.export.tiny.quality.generate import CardGenerator

    card = embedded.card_path("vdrt-tiny")
    run = lambda **kw: oracle.evaluate(CardGenerator.from_card(card, device="cpu", batch_size=6, **kw), 6,  # noqa
                                       tasks=("extend",), workers=1)
    ref = run()
    int4 = compare(ref, run(transform=damage.int4_weights))
    assert int4["verdict"] == "worse" and int4["fidelity"]["extend"]["psnr"] < 30, int4
    window = compare(ref, run(ops=damage.register_window_attention(frames=0)))
    assert window["verdict"] == "worse" and "extend.psnr" in window["worse"], window
