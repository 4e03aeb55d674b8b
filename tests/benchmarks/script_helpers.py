"""Loading a script of benchmarks/ as a module in the tests (a unique module name: test folders share one import
namespace). A tree without benchmarks/ (an installed wheel's tests) skips."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(file_name: str, module_name: str | None = None, register: bool = False):
    """benchmarks/<file_name> executed as module `module_name` (default: the file's stem); `register` puts it in
    sys.modules first (dataclasses and pickling-free type lookups need their module there)."""
    path = BENCHMARKS / file_name
    if not path.is_file():
        pytest.skip("benchmarks/ is not in this tree")
    name = module_name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
