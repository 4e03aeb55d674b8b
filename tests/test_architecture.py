"""The house rules, checked on the import graph (grimp; function-level imports included).

`lint-imports` (.ci/run) checks the layers contract in pyproject.toml; this test checks what a layers
contract cannot see: circles between modules of one layer (e.g. cli.generate <-> cli.parallel before the
redesign). Before the redesign (main ea0899b) the graph had 4 circles and 3 upward imports.
"""
from __future__ import annotations

import sys

import pytest

grimp = pytest.importorskip("grimp")
EVAL = ("vdrt.export",)  # build, training and evaluation code: not the runtime


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("vdrt", include_external_packages=False)


def circles(graph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def test_the_runtime_has_no_import_circles(graph):
    runtime = {m for m in graph.modules if not m.startswith(EVAL)}
    assert len(runtime) > 50
    assert circles(graph, runtime) == []


def test_the_circle_finder_finds_a_circle(graph):
    fake = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        fake.add_module(m)
    fake.add_import(importer="p.a", imported="p.b")
    fake.add_import(importer="p.b", imported="p.a")
    fake.add_import(importer="p.b", imported="p.c")
    assert circles(fake, {"p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]


def test_only_the_cli_reaches_the_exporter_and_the_oracle(graph):
    reach = [(m, w) for m in graph.modules if not m.startswith((*EVAL, "vdrt.cli"))
             for w in graph.find_modules_directly_imported_by(m) if w.startswith("vdrt.export")]
    assert reach == []
