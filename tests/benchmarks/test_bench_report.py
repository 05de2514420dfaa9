"""The report step: tables and goal verdicts from rows; plots skipped without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

from vidlora.benchmarks.report import write_report
from vidlora.benchmarks.rows import RunContext, goal_row, overhead_goal_row, ratio_rows


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


def _overhead(tmp_path: Path, ours: float, theirs: float) -> dict:
    ctx = RunContext("run-1", "cpu", quick=True, out_dir=tmp_path,
                     env={"device": "cpu: test (2 threads)", "device_type": "cpu", "date": "2026-01-01",
                          "vidlora": "0", "torch": "0", "triton": "0", "git_commit": "abc"})  # fmt: skip
    rows = [ctx.row("forward", "c", "peft", "overhead", theirs, "fraction of base", threads=1),
            ctx.row("forward", "c", "vidlora", "overhead", ours, "fraction of base", threads=1)]  # fmt: skip
    ratio_rows(rows, "peft")
    return rows


def test_a_negative_or_noisy_overhead_is_not_decidable(tmp_path):
    rows = _overhead(tmp_path, -0.0031, 0.022)  # ratio -0.141: vidlora "faster than no LoRA"
    goal = overhead_goal_row(rows[1], "overhead <= 1/2 of PEFT's", 0.5)
    assert rows[1]["ratio"] < 0 and goal["met"] is False and goal["verdict"] == "not decidable"
    assert "timing noise" in goal["note"]
    within = overhead_goal_row(_overhead(tmp_path, 0.01, 0.03)[1], "g", 0.5, noise=0.043)
    assert within["verdict"] == "not decidable" and "within this run's noise" in within["note"]
    clear = overhead_goal_row(_overhead(tmp_path, 0.05, 0.30)[1], "g", 0.5, noise=0.02)
    assert clear["verdict"] == "met" and clear["met"] is True
    over = overhead_goal_row(_overhead(tmp_path, 0.25, 0.30)[1], "g", 0.5, noise=0.02)
    assert over["verdict"] == "not met"

    written = write_report([*rows, goal], tmp_path, "run-2")
    text = written.files[0].read_text()
    assert "**not decidable**" in text and "**met**" not in text
    assert "1 not decidable" in written.summary and "0 met" in written.summary


def test_a_single_thread_timing_is_labelled_as_such(tmp_path):
    from vidlora.benchmarks.harness import device_name
    from vidlora.benchmarks.report import render_markdown

    import torch

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device_name("cpu").endswith("(1 thread)")
        torch.set_num_threads(2)
        assert device_name("cpu").endswith("(2 threads)")
    finally:
        torch.set_num_threads(old)
    text = render_markdown(_overhead(tmp_path, 0.1, 0.2), {}, "")
    assert "cpu: test (2 threads), timed on 1 thread" in text and "1 threads" not in text
