"""The report step: tables and goal verdicts from rows; plots skipped without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

from vidlora.benchmarks.report import write_report
from vidlora.benchmarks.rows import RunContext, goal_row, ratio_rows


def _rows(tmp_path: Path) -> list[dict]:
    ctx = RunContext("run-1", "cpu", quick=True, out_dir=tmp_path,
                     env={"device": "cpu: test (1 threads)", "device_type": "cpu", "date": "2026-01-01",
                          "vidlora": "0", "torch": "0", "triton": "0", "git_commit": "abc"})  # fmt: skip
    rows = [ctx.row("swap", "swap", "diffusers", "ms", 40.0, "ms"), ctx.row("swap", "swap", "vidlora", "ms", 8.0, "ms")]
    ratio_rows(rows, "diffusers")
    rows.append(goal_row(rows[1], "swap <= 1/10 of diffusers", 0.1))
    return rows


def test_goal_verdict_and_table(tmp_path):
    rows = _rows(tmp_path)
    assert rows[1]["ratio"] == 0.2 and rows[2]["met"] is False
    written = write_report(rows, tmp_path, "run-1")
    text = written.files[0].read_text()
    assert written.files[0].name == "REPORT-cpu-test-run-1.md"
    assert "| swap <= 1/10 of diffusers | swap: swap | vidlora | 0.2 | diffusers = 40 ms | <= 0.1 | **not met** |  |" in text
    assert "| swap | ms | vidlora | 8 | ms | 0.200 x diffusers |" in text
    assert "NOT met" in written.summary and "1 not met" in written.summary


def test_plots_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    written = write_report(_rows(tmp_path), tmp_path, "run-1")
    assert [p.suffix for p in written.files] == [".md"]
    assert "plots skipped" in written.note and "plots skipped" in written.files[0].read_text()
    assert not list(tmp_path.glob("*.png"))
