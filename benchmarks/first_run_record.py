"""Rows of the first GPU run: one ``first.jsonl`` per run folder, appended as results arrive.

Every row has ``phase`` (env, compile, correctness, timing, sweep, step), ``case`` (unique
within the file) and ``ok``; each is written with one ``write`` + flush + fsync, so a kill at
any moment leaves whole lines (at most the line being written is cut, and readers skip a
line that does not parse). A phase that finishes writes ``case = "<phase>.done"``.
``current.txt`` holds the case a phase is running, so the driver can name the case that
crashed or timed out and the restarted phase can skip it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["PHASES", "ROWS_FILE", "read_rows", "done_cases", "Recorder"]

PHASES = ("env", "compile", "correctness", "timing", "sweep", "step")
ROWS_FILE = "first.jsonl"
CURRENT_FILE = "current.txt"


def read_rows(directory: Path) -> list[dict[str, Any]]:
    """Every whole row of ``directory/first.jsonl`` (a cut last line is skipped)."""
    path = Path(directory) / ROWS_FILE
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def done_cases(directory: Path) -> set[str]:
    return {str(r.get("case")) for r in read_rows(directory)}


class Recorder:
    """Appends rows of one phase; ``skip(case)`` says whether an earlier run recorded it."""

    def __init__(self, directory: Path, phase: str, base: dict[str, Any] | None = None) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.phase = phase
        self.base = dict(base or {})
        self._done = done_cases(self.directory)

    def skip(self, case: str) -> bool:
        return case in self._done

    def running(self, case: str) -> None:
        """Mark ``case`` as the one in progress (read by the driver if this process dies)."""
        (self.directory / CURRENT_FILE).write_text(f"{self.phase}\t{case}\n")

    def emit(self, case: str, ok: bool | None, **fields: Any) -> dict[str, Any]:
        row = {"phase": self.phase, "case": case, "ok": ok, **self.base, **fields,
               "t": round(time.time(), 3)}  # fmt: skip
        line = json.dumps(row, default=str) + "\n"
        with open(self.directory / ROWS_FILE, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._done.add(case)
        return row
