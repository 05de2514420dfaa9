"""The micro-benchmark's arithmetic and baselines (its timings are never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from vidlora.benchmarks import harness, kernel_bench
from vidlora.kernels import lora_linear_reference


def test_roofline_floor_matches_the_issue_example():
    # Wan 14B 5120 x 5120 projection, rank 32, 32,760 tokens, on the H100 model
    # (700 TFLOP/s, 3.35 TB/s): 1.25% more FLOPs plus one more read of x -> ~1.055x.
    base_ms = 2 * 32760 * 5120 * 5120 / 700e12 * 1e3
    floor = kernel_bench.roofline_floor_ms(base_ms, 32760, 5120, 5120, 32, 2, 3.35e12)
    assert floor / base_ms == pytest.approx(1.055, abs=0.003)
    assert kernel_bench.roofline_floor_ms(base_ms, 32760, 5120, 5120, 0, 2, 3.35e12) == base_ms


def test_peft_style_and_merged_baselines_compute_the_same_function():
    case = harness.make_linear_case(33, 40, 24, 8, torch.float32, seed=3)
    case.lora_scale.fill_(0.7)  # PEFT-style applies one scalar per adapter
    ref = lora_linear_reference(*case.args())
    torch.testing.assert_close(kernel_bench.peft_style(case)(), ref, atol=1e-5, rtol=1e-5)
    merged = torch.nn.functional.linear(case.x, kernel_bench.merged_weight(case), case.bias)
    torch.testing.assert_close(merged, ref, atol=1e-5, rtol=1e-5)


def test_cpu_rows_carry_the_environment_and_same_run_ratios(tmp_path):
    timer = lambda fns: harness.time_cpu_interleaved(fns, repeats=5, warmup=1)  # noqa: E731
    env = harness.environment("cpu")
    rows = kernel_bench._measure("t", 64, 40, 24, 8, torch.float32, "cpu", env, timer, {"run": "cpu", "bandwidth": 1e10})
    assert {r["method"] for r in rows} == {"base", "peft", "merged", "vidlora"}
    for r in rows:
        assert r["device"].startswith("cpu") and r["torch"] == torch.__version__ and r["date"]
        assert r["ratio_vs_base"] == pytest.approx(r["ms"] / rows[0]["ms"])
    assert "floor_ms" in next(r for r in rows if r["method"] == "vidlora")
    path = harness.write_rows(rows, harness.results_path("kernel_bench", "cpu", tmp_path))
    assert [json.loads(line)["method"] for line in path.read_text().splitlines()] == [r["method"] for r in rows]
    with pytest.raises(FileExistsError):
        harness.write_rows(rows, path)  # results are never overwritten
    assert "CPU run" in kernel_bench._report(rows)


def test_cpu_timers_need_five_runs():
    with pytest.raises(ValueError, match="at least 5"):
        harness.time_cpu(lambda: None, repeats=3)


def test_gpu_goal_lines_judge_ratios_measured_in_the_run():
    # Synthetic rows (not measurements): only the judging logic is under test.
    def row(shape, r, method, ratio, ms=1.0):
        return {"shape": shape, "m": 32760, "r": r, "method": method, "ratio_vs_base": ratio, "ms": ms}

    rows = [row("wan14b.proj", 32, "triton_r0", 1.02), row("wan14b.qkv", 32, "vidlora", 1.06, ms=2.0),
            row("wan14b.qkv", 4, "vidlora", 1.05, ms=2.1)]  # fmt: skip
    lines = kernel_bench._gpu_goal_lines(rows)
    assert "goal (Triton R = 0 within 1.05x cuBLAS): 1.020x: met" in lines
    assert "goal (rank 32, fused q/k/v <= 1.04x base): 1.060x: NOT met" in lines
    assert "goal (rank 32, FFN up <= 1.04x base): not measured in this run" in lines
    assert any(line.startswith("goal (rank 4 no slower than 32") and line.endswith("NOT met") for line in lines)
