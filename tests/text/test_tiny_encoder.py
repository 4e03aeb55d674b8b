"""The tiny text encoder: padding zeroed, empty prompt -> zeros, unknown-word warning, no-known-word error."""
import logging

import pytest
import torch

from vdrt.errors import ConfigError
from vdrt.text.tiny_encoder import TinyTextConditioner, TinyTextConfig, TinyTextEncoder
from vdrt.text.word_tokenizer import default_tokenizer

PROMPTS = ["a red circle bouncing", "a small blue square moving left and a large white triangle falling"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text():
    torch.manual_seed(0)
    tok = default_tokenizer()
    return TinyTextConditioner(tok, TinyTextEncoder(TinyTextConfig(tok.vocab_size, dim=32, layers=2, heads=4)).eval())


def test_padding_is_zero_and_words_are_not(text):
    out = text(PROMPTS)
    assert out.shape == (2, 16, 32) and out.dtype == torch.float32
    norms = out.norm(dim=-1)  # (B, L)
    assert (norms[0, :4] > 1.0).all() and (norms[0, 4:] == 0).all()
    assert (norms[1, :12] > 1.0).all() and (norms[1, 12:] == 0).all()  # 12 words


def test_padded_ids_and_batch_mates_do_not_leak(text):
    ids, mask = text.tokenizer.encode(PROMPTS, max_len=16)
    enc = text.encoder
    with torch.no_grad():
        ref = enc(ids, mask)
        junk = ids.clone()
        junk[~mask] = torch.randint(2, text.tokenizer.vocab_size, (int((~mask).sum()),))
        alone = enc(ids[:1], mask[:1])
        torch.testing.assert_close(enc(junk, mask), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(alone[0], ref[0], rtol=0, atol=1e-5)
    assert not torch.allclose(ref[0, :4], ref[1, :4])  # the text matters


def test_empty_prompt_gives_zeros_and_dropped_rows_keep_gradients_finite(text):
    out = text(["", PROMPTS[0], "   "], allow_empty=True)
    assert (out[0] == 0).all() and (out[2] == 0).all() and out[1].abs().sum() > 0
    torch.testing.assert_close(out[1], text([PROMPTS[0]])[0], rtol=0, atol=1e-6)
    enc = TinyTextEncoder(text.encoder.config).train()
    ids, mask = text.tokenizer.encode(PROMPTS, max_len=16)
    mask[0] = False  # a caption dropped in training
    y = enc(ids, mask)
    assert (y[0] == 0).all() and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_train_and_eval_paths_agree(text):
    ids, mask = text.tokenizer.encode(PROMPTS, max_len=16)
    enc = text.encoder
    with torch.no_grad():
        fast = enc.eval()(ids, mask)  # torch's inference fast path
        slow = enc.train()(ids, mask)
    enc.eval()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_unknown_words_warn_and_unknown_only_prompts_fail(text, caplog):
    with caplog.at_level(logging.WARNING, logger="vdrt.text.word_tokenizer"):
        out = text(["a red zebra bouncing"])
    assert any("zebra" in r.getMessage() for r in caplog.records)
    assert out[0, 2].norm() > 0  # <unk> is still a token
    for bad in ("", "a zebra on a giraffe"):
        with pytest.raises(ConfigError, match="no word the model knows"):
            text([bad])
    with pytest.raises(ConfigError, match="no word the model knows"):
        text(["zebra"], allow_empty=True)  # not empty: unknown


def test_config_is_checked():
    with pytest.raises(ConfigError, match="divisible"):
        TinyTextConfig(30, dim=30, heads=4)
    with pytest.raises(ConfigError, match="positive int"):
        TinyTextConfig(30, layers=0)
    enc = TinyTextEncoder(TinyTextConfig(30, max_len=4, dim=8, layers=1, heads=2))
    with pytest.raises(ConfigError, match="max_len"):
        enc(torch.ones(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.bool))
