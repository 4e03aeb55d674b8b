"""THE table printer (tabulate): benchmark rows, `vdrt info`, key/value blocks. Numbers to 4 significant digits."""
from __future__ import annotations

from typing import Iterable, Sequence


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def table(rows: Iterable[dict], columns: Sequence[tuple[str, str]], title: str | None = None) -> str:
    """Rows as a plain aligned table: `columns` are (key, header); the first column left-aligned, the rest right."""
    from tabulate import tabulate

    body = [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    align = ["left"] + ["right"] * (len(columns) - 1)
    text = tabulate(body, headers=[h for _, h in columns], tablefmt="plain", colalign=align, disable_numparse=True)
    return text if title is None else f"{title}\n{text}"


def pairs(rows: Iterable[dict]) -> str:
    """One block per row: `key  value` lines, blocks separated by a blank line."""
    from tabulate import tabulate

    return "\n\n".join(tabulate([[k, fmt(v)] for k, v in r.items()], tablefmt="plain", disable_numparse=True)
                       for r in rows)
