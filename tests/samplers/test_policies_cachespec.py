"""`--cache NAME[:THRESHOLD]` parsing: the policies by name, defaults, and every refusal as one line."""
import pytest

from vdrt.errors import ConfigError
from vdrt.samplers.policies.cachespec import DEFAULTS, CacheSpec, parse, parse_list
from vdrt.samplers.policies.fbcache import FirstBlockCache
from vdrt.samplers.policies.magcache import MagCache
from vdrt.samplers.policies.teacache import TeaCache


def test_names_thresholds_and_defaults():
    assert parse("teacache:0.2") == CacheSpec("teacache", 0.2)
    assert parse(" MagCache:0 ") == CacheSpec("magcache", 0.0)
    assert parse("fbcache") == CacheSpec("fbcache", DEFAULTS["fbcache"])
    assert parse(None) is None and parse("none") is None and parse("") is None
    assert str(parse("teacache:0.25")) == "teacache:0.25"
    assert [type(parse(s).build()) for s in ("teacache:0.1", "magcache:0.1", "fbcache:0.1")] == \
        [TeaCache, MagCache, FirstBlockCache]
    assert parse_list("none,teacache:0.1,fbcache:0.2") == [None, CacheSpec("teacache", 0.1), CacheSpec("fbcache", 0.2)]
    assert parse_list(None) == [None]


@pytest.mark.parametrize("text, match", [
    ("deepcache:0.1", r"unknown policy 'deepcache'; choose teacache, magcache or fbcache"),
    ("teacache:lots", r"threshold must be a number in \[0, 1\]"),
    ("teacache:1.5", r"threshold 1.5 is outside \[0, 1\]"),
    ("magcache:-0.1", r"outside \[0, 1\]"),
    ("fbcache:nan", r"outside \[0, 1\]"),
])
def test_bad_specs_are_refused_with_the_fix(text, match):
    with pytest.raises(ConfigError, match=match):
        parse(text)
