"""The shared benchmark harness: environment, timers, setup factories, result rows.

Every benchmark in this folder builds its inputs with the factories here, times with
:func:`time_cpu` / :func:`time_gpu`, and writes rows with :func:`write_rows`: one JSON
object per line, each carrying the environment (device name, date, vidlora / torch /
triton versions, git commit), so rows from different runs can be pooled and filtered.
Ratios are only ever computed against a baseline measured in the same run.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RESULTS_DIR",
    "LinearCase",
    "make_linear_case",
    "environment",
    "device_name",
    "time_cpu",
    "time_cpu_interleaved",
    "time_gpu",
    "result_row",
    "results_path",
    "write_rows",
]

# In a checkout, results go next to this file; from an install, callers pass a folder.
RESULTS_DIR = Path(__file__).with_name("results")


@dataclass
class LinearCase:
    """Inputs of one LoRA linear call: y = x W^T + b + ((x A^T) * c) B^T."""

    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    lora_a: torch.Tensor
    lora_b: torch.Tensor
    lora_scale: torch.Tensor

    @property
    def m(self) -> int:
        return self.x.numel() // self.x.shape[-1]

    @property
    def n(self) -> int:
        return self.weight.shape[0]

    @property
    def k(self) -> int:
        return self.weight.shape[1]

    @property
    def r(self) -> int:
        return self.lora_a.shape[0]

    def args(self) -> tuple:
        return (self.x, self.weight, self.bias, self.lora_a, self.lora_b, self.lora_scale)


def make_linear_case(
    m: int,
    n: int,
    k: int,
    r: int,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
    *,
    bias: bool = True,
    seed: int = 0,
) -> LinearCase:
    """Random, non-identity inputs of activation-like scale (y entries ~ N(0, 1))."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=device)

    return LinearCase(
        x=rnd(m, k),
        weight=rnd(n, k, scale=k**-0.5),
        bias=rnd(n) if bias else None,
        lora_a=rnd(r, k, scale=k**-0.5),
        lora_b=rnd(n, r, scale=r**-0.5 if r else 1.0),
        lora_scale=(torch.rand(r, generator=g) * 0.5 + 0.5).to(device=device),
    )


@functools.lru_cache(maxsize=None)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: torch.device | str) -> str:
    """GPU name for CUDA devices; "cpu: <processor>" for the CPU (says it is a CPU run)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"cpu: {platform.processor() or platform.machine()} ({n} thread{'' if n == 1 else 's'})"


def environment(device: torch.device | str) -> dict[str, Any]:
    """What every result row carries: where, when and with which code it was measured."""
    return {
        "device": device_name(device),
        "device_type": torch.device(device).type,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "vidlora": _version("vidlora"),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "git_commit": _git_commit(),
    }


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op threads set to ``n`` inside the block (None: left as they are)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def time_cpu(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median (and min/max) wall time of ``fn`` in milliseconds over ``repeats`` >= 5 runs."""
    if repeats < 5:
        raise ValueError(f"time_cpu needs at least 5 repeats for a median, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "runs": repeats}


def time_cpu_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int = 7,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, float]]:
    """Like :func:`time_cpu` for several functions, run in rotating round-robin order.

    A shared 2-core VM drifts by tens of percent over seconds; timing every method once
    per round spreads that drift over all of them, so their ratios stay meaningful.
    ``clock=time.thread_time`` (with ``torch.set_num_threads(1)``) counts only the CPU time
    of the thread doing the work, not time the VM spent running other processes.
    """
    if repeats < 5:
        raise ValueError(f"time_cpu_interleaved needs at least 5 repeats for a median, got {repeats}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = clock()
            fns[name]()
            times[name].append((clock() - t0) * 1e3)
    return {
        name: {"ms": statistics.median(t), "ms_min": min(t), "ms_max": max(t), "runs": repeats}
        for name, t in times.items()
    }


def time_gpu(fn: Callable[[], Any], warmup_ms: int = 25, rep_ms: int = 100) -> dict[str, float]:
    """Median CUDA time of ``fn`` in milliseconds (triton.testing.do_bench, L2 flushed)."""
    from triton.testing import do_bench

    ms = do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")
    return {"ms": float(ms)}


def result_row(benchmark: str, env: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One result: the benchmark name, the environment, then the measured fields."""
    return {"benchmark": benchmark, **env, **fields}


def results_path(benchmark: str, device_type: str, directory: Path | None = None, suffix: str = "jsonl") -> Path:
    """<dir>/<benchmark>-<cpu|cuda>-<UTC timestamp>.<suffix>: never an existing file."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (directory or RESULTS_DIR) / f"{benchmark}-{device_type}-{stamp}.{suffix}"


def write_rows(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSON lines to a new file (results are never edited after the fact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=False) + "\n")
    return path
