"""The README's Python example runs as written (after the quick start), on the embedded model."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    if not README.is_file():
        pytest.skip("README.md is not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102  (our own README)
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert scope["out"].frames.shape == (1, 17, 64, 64, 3)
    assert tuple(scope["x"].shape) == (1, 16, 2, 8, 8)
