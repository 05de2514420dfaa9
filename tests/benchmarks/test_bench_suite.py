"""``vidlora bench``: a minimal quick run writes rows with the required keys, ratios whose
baselines were measured in the same run, and the report files."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace

import pytest

pytest.importorskip("peft")  # the swap benchmark compares against diffusers + PEFT

from vidlora.benchmarks import swap_bench
from vidlora.benchmarks.rows import REQUIRED_KEYS, check_rows
from vidlora.benchmarks.suite import ENTRIES, default_out_dir, run_suite
from vidlora.app.cli import main as cli_main


def _rows(folder):
    (path,) = folder.glob("suite-cpu-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_quick_subset_rows_baselines_and_report(tmp_path, monkeypatch):
    # one block of the Wan 1.3B shape keeps the swap benchmark at ~10 s
    monkeypatch.setattr(swap_bench, "QUICK_LAYERS", 1)
    args = Namespace(quick=True, only=["roofline", "swap"], out=str(tmp_path), list=False)
    assert run_suite(args) == 0

    rows = _rows(tmp_path)
    assert {r["benchmark"] for r in rows} == {"roofline", "swap"}
    assert len({r["run_id"] for r in rows}) == 1
    for r in rows:
        assert [k for k in REQUIRED_KEYS if k not in r] == [], r
        assert r["device_type"] == "cpu" and r["device"].startswith("cpu")
    assert check_rows(rows) == []

    swap = [r for r in rows if r["benchmark"] == "swap" and r.get("kind") != "goal"]
    assert {r["case"] for r in swap} == {"attach+add", "swap {a,b}->{a,c}", "strength 1.0<->0.5"}
    assert all("1 of 30 blocks" in r["model"] for r in swap)  # the reduced depth is said in every row
    ratios = [r for r in swap if "ratio" in r]
    assert len(ratios) == len(swap) - 3  # every method but the one baseline per case
    for r in ratios:
        (base,) = [b for b in swap if b["case"] == r["case"] and b["method"] == r["baseline"]]
        assert base["run_id"] == r["run_id"] and base["value"] == r["baseline_value"] > 0
    goals = [r for r in rows if r.get("kind") == "goal"]
    assert {g["method"] for g in goals} == {"vidlora attach+add", "vidlora remove+add", "vidlora set_weight"}
    assert all(isinstance(g["met"], bool) for g in goals)
    assert all(r["kind"] == "projection" for r in rows if r["benchmark"] == "roofline")

    (md,) = tmp_path.glob("REPORT-cpu-*.md")
    text = md.read_text()
    assert "## Goals" in text and "## swap" in text and "## roofline" in text
    assert "no GPU number" in text and "projection" in text
    if importlib.util.find_spec("matplotlib") is None:
        assert "plots skipped" in text
    else:
        pngs = sorted(p.name.rsplit("-", 1)[-1] for p in tmp_path.glob("REPORT-cpu-*.png"))
        assert pngs == ["roofline.png", "swap.png"]
        for png in tmp_path.glob("*.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in text


def test_check_rows_catches_a_baseline_from_another_run():
    base = {k: "x" for k in REQUIRED_KEYS} | {"benchmark": "b", "run_id": "r1", "case": "c", "metric": "ms"}
    rows = [
        base | {"method": "diffusers", "value": 10.0},
        base | {"method": "vidlora", "value": 2.0, "ratio": 0.2, "baseline": "diffusers", "baseline_value": 10.0},
    ]
    assert check_rows(rows) == []
    assert "not measured in run" in check_rows([rows[0] | {"run_id": "r0"}, rows[1]])[0]
    assert "not measured in run" in check_rows([rows[0], rows[1] | {"baseline_value": 9.0}])[0]
    assert "ratio" in check_rows([rows[0], rows[1] | {"ratio": 0.3}])[0]
    assert "missing" in check_rows([{k: v for k, v in rows[0].items() if k != "git_commit"}])[0]


def test_cli_list_and_unknown_name(capsys, tmp_path):
    assert cli_main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    assert [line.split()[0] for line in listed.splitlines()] == [e.name for e in ENTRIES]
    assert cli_main(["bench", "--quick", "--only", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'nope'" in err and "kernel_bench" in err
    assert list(tmp_path.iterdir()) == []


def test_default_out_dir_is_the_vidlora_cache(tmp_path, monkeypatch):
    # not benchmarks/results (untracked files in a checkout) nor the current folder
    monkeypatch.setenv("VIDLORA_CACHE", str(tmp_path / "cache"))
    folder, why = default_out_dir()
    assert folder == tmp_path / "cache" / "bench-results" and "--out" in why


def test_cli_startup_benchmark_rows(monkeypatch):
    from vidlora.benchmarks import cli_startup
    from vidlora.benchmarks.rows import RunContext

    monkeypatch.setattr(cli_startup, "CASES", {"--out o.gif": cli_startup.CASES["--out o.gif"]})
    ctx = RunContext("run-1", "cpu", quick=True, out_dir=None)
    rows = list(cli_startup.run(ctx, repeats=1, warmup=0))
    assert check_rows(rows) == []
    by = {r["method"]: r for r in rows if r.get("kind") != "goal"}
    assert set(by) == {cli_startup.BASELINE, "python -c pass", "vidlora: --out o.gif"}
    assert by["vidlora: --out o.gif"]["baseline"] == cli_startup.BASELINE
    (goal,) = [r for r in rows if r.get("kind") == "goal"]
    assert goal["method"] == "vidlora: --out o.gif" and goal["verdict"] in ("met", "not met")


def test_time_budget_skips_with_a_row_and_still_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_BENCH_BUDGET_S", "0")
    assert run_suite(Namespace(quick=True, only=["memory", "roofline"], out=str(tmp_path), list=False)) == 0
    rows = _rows(tmp_path)
    assert [(r["benchmark"], r["kind"]) for r in rows] == [("memory", "skipped"), ("roofline", "skipped")]
    assert check_rows(rows) == [] and "time budget" in rows[0]["reason"]
    (md,) = tmp_path.glob("REPORT-*.md")
    assert "## Not run" in md.read_text()


def test_loop_benchmark_rows(monkeypatch):
    # one block keeps it at a few seconds; the real run uses 4 (and the 14B block part)
    from vidlora.benchmarks import loop_bench
    from vidlora.benchmarks.rows import RunContext

    monkeypatch.setattr(loop_bench, "LAYERS", 1)
    ctx = RunContext("run-1", "cpu", quick=True, out_dir=None)
    rows = list(loop_bench.run(ctx, repeats=1, warmup=0, big=False, threads=(2,)))
    assert check_rows(rows) == []
    goals = {g["method"]: g for g in rows if g.get("kind") == "goal"}
    assert set(goals) == {"vidlora attach+add", "vidlora remove+add"}
    assert goals["vidlora attach+add"]["baseline"] == "diffusers lora_state_dict+load_lora_into_transformer"
    assert goals["vidlora remove+add"]["baseline"] == "diffusers delete_adapters+load"
    swap = [r for r in rows if r["case"].startswith("swap") and r.get("kind") != "goal"]
    assert all(r["check_rel_diff"] <= loop_bench._AGREE for r in swap)  # both sides ended with the same adapters
    assert all(r["fused_units"] and r["threads"] in (1, 2) for r in rows)
