"""Showing results: a terminal table, ratios, and sections of ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .load import Row

__all__ = [
    "COLUMNS",
    "machine",
    "markdown_table",
    "print_table",
    "write_section",
]

COLUMNS: tuple[str, ...] = ("transport", "inflight", "calls_per_s", "p50_ms", "p99_ms")

_DOC_HEADER = """# Benchmarks

Written by `python -m bench <benchmark> --write-docs`; each section is replaced whole when
its benchmark runs again. Numbers are from one run on the machine named in the section:
compare rows of the same run, not figures across machines.
"""


def _cells(row: Row) -> list[str]:
    return [
        row.transport,
        str(row.inflight),
        f"{row.calls_per_s:,.0f}",
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
    ]


def print_table(rows: Sequence[Row], title: str, console: Console | None = None) -> None:
    """Print ``rows`` as a rich table."""
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "transport" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    (console or Console()).print(table)


def markdown_table(rows: Sequence[Row]) -> str:
    """``rows`` as a GitHub markdown table with the ``--json`` column names."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """Python version, OS, core count and CPU model, in one line."""
    model = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if match:
        model = f" ({match.group(1).strip()})"
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores{model}"
    )


def write_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between the markers of section ``name`` in ``path``, replacing what was
    there; the section is appended when the file has none yet."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else _DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
