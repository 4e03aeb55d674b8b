"""Caption grammar: examples, batched ids against the spec, round trip, vocabulary, length bound."""
import pytest
import torch

from vdrt.errors import ConfigError
from vdrt.export.tiny.data import captions as C
from vdrt.export.tiny.data import procedural as P
from vdrt.text.word_tokenizer import WordTokenizer


def _obj(shape, colour, size, motion):
    return P.ObjectSpec(shape, colour, size, motion, (20.0, 20.0), (0.0, 0.0))


def test_examples_parse():
    assert C.parse_caption("a small red circle bouncing") == [
        {"shape": "circle", "colour": "red", "size": "small", "motion": "bouncing"}]
    assert C.parse_caption("A large blue square, moving LEFT.") == [
        {"shape": "square", "colour": "blue", "size": "large", "motion": "moving left"}]
    two = C.parse_caption("a blue square moving left and a yellow triangle falling on a black background")
    assert two == [
        {"shape": "square", "colour": "blue", "size": None, "motion": "moving left"},
        {"shape": "triangle", "colour": "yellow", "size": None, "motion": "falling"},
    ]
    assert C.parse_background("a blue square moving left on a black background") == "black"
    assert C.parse_background("a blue square moving left") is None


def test_caption_ids_follow_the_grammar():
    objs = (_obj("circle", "red", "small", "moving left"), _obj("square", "blue", "large", "moving up"))
    scenes = P.scenes_from_specs([P.ClipSpec(objs, "navy")] * 300)
    ids = C.caption_ids(scenes, torch.Generator().manual_seed(0))
    assert ids.shape == (300, C.MAX_WORDS) and ids.dtype == torch.long
    texts = set(C.decode(ids))
    assert "a red circle moving left and a blue square moving up" in texts
    assert "a small red circle moving left and a large blue square moving up" in texts
    assert "a small red circle moving left and a blue square moving up on a navy background" in texts  # 16
    assert "a small red circle moving left and a large blue square moving up on a navy background" not in texts
    assert all(len(t.split()) <= C.MAX_WORDS for t in texts)


def test_caption_ids_are_the_tokenizers_ids():
    scenes, ids = P.split_scenes("train", 0, 64)
    tok_ids, mask = WordTokenizer(C.VOCAB).encode(C.decode(ids), max_len=C.MAX_WORDS)
    assert torch.equal(tok_ids, ids) and torch.equal(mask, ids > 0)


def test_round_trip_on_500_clips():
    sizes_named = backgrounds_named = 0
    scenes, ids = P.split_scenes("train", 0, 500)
    for spec, text in zip(P.specs_from_scenes(scenes), C.decode(ids)):
        parsed = C.parse_caption(text)
        truth = C.spec_objects(spec)
        assert len(parsed) == len(truth), text
        for got, want in zip(parsed, truth):
            assert got["size"] in (None, want["size"]), text
            sizes_named += got["size"] is not None
            assert {**got, "size": want["size"]} == want, text
        bg = C.parse_background(text)
        assert bg in (None, spec.background), text
        backgrounds_named += bg is not None
        assert len(text.split()) <= C.MAX_WORDS and set(text.split()) <= set(C.VOCAB)
    assert 0.35 < sizes_named / 700 < 0.65  # ~700 objects (40% of clips have two), half name their size
    assert 100 < backgrounds_named < 200


def test_vocab_is_complete_and_distinct():
    assert len(set(C.VOCAB)) == len(C.VOCAB)
    words = set(P.SHAPES) | set(P.COLOURS) | set(P.SIZES) | set(P.BACKGROUNDS)
    words |= {w for m in P.MOTIONS for w in m.split()} | {"a", "and", "on", "background"}
    assert set(C.VOCAB) == words


def test_unparseable_caption_raises():
    with pytest.raises(ConfigError, match="names no object"):
        C.parse_caption("hello world")
    with pytest.raises(ConfigError):
        C.parse_caption("")
    assert C.parse_caption("a dog moving right") == [
        {"shape": None, "colour": None, "size": None, "motion": "moving right"}]
