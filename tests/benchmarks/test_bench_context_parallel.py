"""The multi-GPU context-parallel benchmark: its launches, and that it refuses to time on CPU."""

from __future__ import annotations

import torch

from vidlora.benchmarks import context_parallel as bench


def test_dry_run_lists_one_torchrun_launch_per_gpu_count_baseline_first(capsys):
    assert bench.main(["--gpus", "4,2", "--layers", "2", "--ring", "2", "--fp8", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" GPU")[0] for line in lines] == ["1", "2", "4"]  # the 1-GPU baseline always runs
    assert all("torch.distributed.run" in line and "--layers 2" in line and "--fp8" in line for line in lines)
    assert "--nproc_per_node=1" in lines[0] and "--ring 1 " in lines[0]  # the baseline is one GPU, no ring
    assert "--nproc_per_node=4" in lines[2] and "--ring 2 " in lines[2]


def test_refuses_to_time_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--gpus", "2"]) == 2
    assert "needs CUDA GPUs" in capsys.readouterr().err
