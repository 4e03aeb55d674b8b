"""The hostile suite's harness: run a scenario (a CLI command in-process, an API call, or a real process),
classify what happened, and keep the count per class for docs/reliability.md.

| outcome   | what                                                                                        |
| CLEAR     | refused with one line (CLI: `vdrt CMD: error: ...`, exit 2; API: a vdrt.errors exception of the |
|           | builtin expected) naming the problem, nothing new on disk; or the correct result             |
| TRACEBACK | an exception from deep inside (not a VdrtError), or a refusal a user cannot act on           |
| WRONG     | ran when it should have been refused, a wrong result, or files left behind                   |
| HANG      | past the scenario's time limit                                                              |
| CRASH     | the process died (a signal)                                                                 |

`VDRT_HARDENING_REPORT=path.json pytest tests/hardening` writes {class: {outcome: count}}.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from vdrt.errors import VdrtError

OUTCOMES = ("CLEAR", "TRACEBACK", "WRONG", "HANG", "CRASH")
RESULTS: list[tuple[str, str, str]] = []  # (class, scenario, outcome): filled as the suite runs


class Hang(Exception):
    pass


@dataclasses.dataclass
class Ran:
    outcome: str
    detail: str = ""


@contextmanager
def time_limit(seconds: float):
    """Raise Hang in the main thread after `seconds` (SIGALRM; no limit where signals are not available)."""
    if not hasattr(signal, "setitimer"):
        yield
        return
    seconds = min(seconds, float(os.environ.get("VDRT_HARDENING_LIMIT", seconds)))  # e.g. 5 for a run against main

    def alarm(*_):
        raise Hang(f"over {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_clear_line(err: str, words: tuple, prefix: str = "vdrt") -> str | None:
    """None if `err` holds exactly one `vdrt ...: error:` line with every expected word; else what is wrong."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prefix} ") and ": error: " in ln]
    if "Traceback" in err:
        return "a traceback"
    if len(lines) != 1:
        return f"{len(lines)} error lines in {err[-400:]!r}"
    missing = [w for w in words if w.lower() not in lines[0].lower()]
    return f"missing {missing} in {lines[0]!r}" if missing else None


def cli_refusal(argv: list[str], words: tuple, workdir: Path, capsys, limit: float = 60) -> Ran:
    """Run `vdrt ARGV` in-process in `workdir`; CLEAR when it exits 2 with one line naming `words`, leaving
    nothing new in `workdir`."""
    from vdrt.cli import main

    before = files_under(workdir)
    capsys.readouterr()
    try:
        with time_limit(limit):
            rc = main(["--threads", "1", *argv])
    except Hang as e:
        return Ran("HANG", str(e))
    except SystemExit as e:  # argparse's own refusals exit 2 with a usage line
        rc = e.code
    except VdrtError as e:
        return Ran("TRACEBACK", f"escaped main: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - classified, not swallowed: the test fails on it
        return Ran("TRACEBACK", f"{type(e).__name__}: {e}")
    out, err = capsys.readouterr()
    left = sorted(files_under(workdir) - before)
    if rc == 0:
        return Ran("WRONG", "exit 0: ran instead of refusing")
    if left:
        return Ran("WRONG", f"left behind {left}")
    problem = one_clear_line(err, words)
    if argv[0] == "verify" and out.startswith(("TAMPERED", "INVALID")):  # its report: a verdict, then the reasons
        missing = [w for w in words if w.lower() not in out.lower()]
        problem = f"missing {missing} in {out!r}" if missing else None
    if rc != 2 or problem is not None:
        return Ran("TRACEBACK", f"rc={rc}: {problem}")
    return Ran("CLEAR")


def api_refusal(call, builtin: type, words: tuple, workdir: Path | None = None, limit: float = 60) -> Ran:
    """`call()` must raise a VdrtError that is also a `builtin`, one line naming `words`, nothing new on disk."""
    before = files_under(workdir) if workdir else set()
    try:
        with time_limit(limit):
            call()
    except Hang as e:
        return Ran("HANG", str(e))
    except VdrtError as e:
        msg = str(e)
        left = sorted(files_under(workdir) - before) if workdir else []
        if left:
            return Ran("WRONG", f"left behind {left}")
        missing = [w for w in words if w.lower() not in msg.lower()]
        if not isinstance(e, builtin) or "\n" in msg or missing:
            return Ran("TRACEBACK", f"{type(e).__name__} (a {builtin.__name__}? {isinstance(e, builtin)}): "
                                    f"missing {missing} in {msg!r}")
        return Ran("CLEAR")
    except Exception as e:  # noqa: BLE001
        return Ran("TRACEBACK", f"{type(e).__name__}: {e}")
    return Ran("WRONG", "no error: the call was accepted")


def process(argv: list[str], cwd: Path, timeout: float = 120, env: dict | None = None):
    """A real `vdrt` process: (returncode, stdout, stderr); HANG -> returncode None."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    try:
        p = subprocess.run([sys.executable, "-m", "vdrt", *argv], cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired:
        return None, "", ""
    return p.returncode, p.stdout, p.stderr


def process_refusal(argv, words, cwd: Path, timeout: float = 120, env: dict | None = None) -> Ran:
    before = files_under(cwd)
    rc, _, err = process(argv, cwd, timeout, env)
    if rc is None:
        return Ran("HANG", f"over {timeout} s")
    if rc < 0:
        return Ran("CRASH", f"signal {-rc}")
    if rc == 0:
        return Ran("WRONG", "exit 0")
    left = sorted(files_under(cwd) - before)
    if left:
        return Ran("WRONG", f"left behind {left}")
    problem = one_clear_line(err, words)
    return Ran("CLEAR") if rc == 2 and problem is None else Ran("TRACEBACK", f"rc={rc}: {problem}")


def record(cls: str, scenario: str, ran: Ran) -> None:
    """Keep the outcome for the report, then require CLEAR."""
    RESULTS.append((cls, scenario, ran.outcome))
    assert ran.outcome == "CLEAR", f"[{cls}] {scenario}: {ran.outcome}: {ran.detail}"
