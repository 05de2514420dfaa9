"""FP8 variants of one LoRA linear, timed: W8A16 and W8A8 against cuBLAS bf16 and vidlora bf16.

    vidlora bench --only fp8_kernel_bench

Issue 5's kernel goals, at Wan 2.1 14B shapes with a rank-32 LoRA active:

* W8A8 fused (its quantize-x-and-shrink pass included) >= 1.5x faster than the cuBLAS
  bf16 base linear, i.e. time <= 0.667x base, at M = 32,760;
* W8A16 <= 1.15x the bf16 fused kernel at M = 32,760, and faster than it at M <= 1,024
  (the FP8 weight halves the bytes that small-M calls are bound by).

Methods: ``base`` (cuBLAS ``F.linear``, bf16, no LoRA: the baseline of the ``ms`` rows),
``vidlora bf16`` (``lora_linear``), ``vidlora fp8 w8a16`` and ``vidlora fp8 w8a8``
(``torch.ops.vidlora.lora_linear_fp8`` with the weight quantized per output channel).
``vs bf16 fused`` rows repeat the FP8 times with ``vidlora bf16`` as their baseline, for
the W8A16 goals. On a GPU the times are ``kernel_bench.run_gpu_fp8``'s (do_bench medians,
L2 flushed, with roofline floors), put into the suite's rows here: one measurement, two
reports.

On CPU (no GPU, or --quick) one small shape runs through the torch references, so the
code path is exercised; CPU rows carry no goal: their speed says nothing about kernels.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from .harness import make_linear_case, time_cpu_interleaved, torch_threads
from .rows import RunContext, goal_row, ratio_rows

__all__ = ["BENCHMARK", "run"]

BENCHMARK = "fp8_kernel_bench"
RANK = 32
# (name, N, K): Wan 2.1 14B projection, fused q/k/v, FFN up and down
CPU_CASE = ("small.proj", 256, 384, 384)  # name, M, N, K


def _methods(m: int, n: int, k: int, device: str) -> dict[str, Any]:
    from vidlora.kernels.fp8_format import quantize_weight
    from vidlora.kernels import lora_linear
    from vidlora.kernels.fp8_ops import lora_linear_fp8_op

    dtype = torch.bfloat16
    case = make_linear_case(m, n, k, RANK, dtype, device)
    w8, scale = quantize_weight(case.weight)
    x, b, a, bb, c = case.x, case.bias, case.lora_a, case.lora_b, case.lora_scale
    return {
        "base": lambda: F.linear(x, case.weight, b),
        "vidlora bf16": lambda: lora_linear(x, case.weight, b, a, bb, c),
        "vidlora fp8 w8a16": lambda: lora_linear_fp8_op(x, w8, scale, b, a, bb, c, False),
        "vidlora fp8 w8a8": lambda: lora_linear_fp8_op(x, w8, scale, b, a, bb, c, True),
    }


def _case_rows(ctx: RunContext, name: str, m: int, n: int, k: int, times: dict[str, dict]) -> list[dict[str, Any]]:
    case = f"{name} bf16 M={m} N={n} K={k} R={RANK}"
    info = dict(shape=name, m=m, n=n, k=k, r=RANK, dtype="bfloat16")
    rows = [ctx.row(BENCHMARK, case, meth, "ms", t["ms"], "ms", **t, **info) for meth, t in times.items()]
    ratio_rows(rows, "base")
    vs = [ctx.row(BENCHMARK, case, meth, "ms vs bf16 fused", times[meth]["ms"], "ms", **info)
          for meth in ("vidlora bf16", "vidlora fp8 w8a16", "vidlora fp8 w8a8") if meth in times]  # fmt: skip
    ratio_rows(vs, "vidlora bf16")
    out = rows + vs
    if ctx.device == "cuda":
        by = {r["method"]: r for r in rows}
        by_vs = {r["method"]: r for r in vs}
        if m == 32760 and "vidlora fp8 w8a8" in by:
            out.append(goal_row(by["vidlora fp8 w8a8"], f"{name}: W8A8 + LoRA >= 1.5x faster than cuBLAS bf16 (issue 5)",
                                1 / 1.5))  # fmt: skip
        if m == 32760:
            out.append(goal_row(by_vs["vidlora fp8 w8a16"], f"{name}: W8A16 <= 1.15x the bf16 fused kernel at M = 32760",
                                1.15))  # fmt: skip
        elif m <= 1024:
            out.append(goal_row(by_vs["vidlora fp8 w8a16"], f"{name}: W8A16 faster than the bf16 fused kernel at M = {m}",
                                1.0))  # fmt: skip
    return out


# kernel_bench's FP8 method names -> this benchmark's
_GPU_METHODS = {"base": "base", "vidlora": "vidlora bf16", "w8a16": "vidlora fp8 w8a16", "w8a8": "vidlora fp8 w8a8"}


def run(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """GPU: kernel_bench's FP8 measurements (do_bench, roofline floors), in the suite's rows
    with issue 5's goals; CPU: one small case through the torch references."""
    if ctx.device != "cuda":
        name, m, n, k = CPU_CASE
        with torch_threads(1):
            times = time_cpu_interleaved(_methods(m, n, k, "cpu"), repeats=5, warmup=1, clock=time.thread_time)
        for t in times.values():
            t.update(clock="thread CPU time, 1 thread", path="CPU torch references (not the kernels)")
        yield from _case_rows(ctx, name, m, n, k, times)
        return
    from . import kernel_bench

    cases: dict[tuple, dict[str, dict]] = {}
    for r in kernel_bench.run_gpu_fp8(ctx.quick):  # W8A8 rows only where the GPU has FP8 MMA
        if r["method"] in _GPU_METHODS:
            extra = {key: r[key] for key in ("floor_ms", "ratio_vs_floor", "tflops", "bandwidth") if key in r}
            cases.setdefault((r["shape"], r["m"], r["n"], r["k"]), {})[_GPU_METHODS[r["method"]]] = {
                "ms": r["ms"], "clock": "do_bench median", **extra}
    for (name, m, n, k), times in cases.items():
        yield from _case_rows(ctx, name, m, n, k, times)
