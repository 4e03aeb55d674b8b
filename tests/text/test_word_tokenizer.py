"""Word tokenizer: ids and mask, unknown-word warning, no-known-word error, JSON round trip."""
import logging

import pytest
import torch

from vdrt.export.tiny.data.captions import VOCAB
from vdrt.export.tiny.data.procedural import batch
from vdrt.errors import ConfigError
from vdrt.text.word_tokenizer import DEFAULT, PAD_ID, UNK_ID, WordTokenizer, default_tokenizer

LOGGER = "vdrt.text.word_tokenizer"


def test_encode_ids_and_mask():
    tok = WordTokenizer(["red", "circle", "bouncing", "a"])
    ids, mask = tok.encode(["A red circle, bouncing!", "red"], max_len=6)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape == (2, 6)
    assert ids.tolist() == [[5, 2, 3, 4, 0, 0], [2, 0, 0, 0, 0, 0]]
    assert mask.tolist() == [[True] * 4 + [False] * 2, [True] + [False] * 5]
    assert tok.vocab_size == 6
    assert tok.decode(ids) == ["a red circle bouncing", "red"]
    single, _ = tok.encode("red circle")
    assert single.shape == (1, 16)


def test_unknown_words_warn_once_listing_them_and_the_vocab(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ids, mask = DEFAULT.encode(["a red zebra bouncing", "a blue giraffe falling and a zebra"])
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert "zebra" in msg and "giraffe" in msg and " ".join(VOCAB) in msg
    assert ids[0, 2].item() == UNK_ID and mask[0, :4].all() and not mask[0, 4:].any()


def test_known_captions_do_not_warn(caplog):
    _, texts = batch("train", 0, 64)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ids, mask = default_tokenizer().encode(texts)
    assert not caplog.records
    assert (ids[mask] >= 2).all() and (ids[~mask] == PAD_ID).all()
    assert mask.sum(1).tolist() == [len(t.split()) for t in texts]


def test_prompt_without_known_words_raises_with_the_vocab():
    with pytest.raises(ConfigError) as err:
        DEFAULT.encode(["a red circle bouncing", "a zebra running on the grass"])
    assert "zebra" in str(err.value) and " ".join(VOCAB) in str(err.value)
    with pytest.raises(ConfigError):
        DEFAULT.encode("")


def test_long_prompt_is_cut_with_a_warning(caplog):
    text = " ".join(["red circle"] * 10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ids, mask = DEFAULT.encode(text, max_len=8)
    assert mask.all() and ids.shape == (1, 8)
    assert any("cut" in r.getMessage() for r in caplog.records)


def test_json_round_trip(tmp_path):
    tok = WordTokenizer(VOCAB, max_len=12)
    back = WordTokenizer.from_json(tok.to_json())
    assert back == tok and back.vocab == tuple(VOCAB) and back.max_len == 12
    tok.save(tmp_path / "tokenizer.json")
    loaded = WordTokenizer.load(tmp_path / "tokenizer.json")
    text = ["a large purple triangle moving down on a grey background"]
    assert torch.equal(loaded.encode(text)[0], tok.encode(text)[0])
    with pytest.raises(ConfigError):
        WordTokenizer.from_json('{"vocab": ["a"]}')
    with pytest.raises(ConfigError):
        WordTokenizer.from_json("not json")
    with pytest.raises(ConfigError):
        WordTokenizer(["a", "a"])
