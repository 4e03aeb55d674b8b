"""Shared helpers for model tests.

Numbers a test records with pytest's built-in `record_property(name, value)` (parity
errors, parameter counts) are listed in a "measured numbers" section of the summary.
"""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    rows = [
        (report.nodeid, name, value)
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        if report.when == "call"
        for name, value in report.user_properties
    ]
    if not rows:
        return
    terminalreporter.section("measured numbers")
    for nodeid, name, value in rows:
        shown = f"{value:.3e}" if isinstance(value, float) else str(value)
        terminalreporter.write_line(f"{nodeid}  {name} = {shown}")
