"""Suite entries for the benchmarks written before the suite: their rows in the suite's schema.

* ``kernel_bench``: one LoRA linear, timed (``kernel_bench.run_cpu`` / ``run_gpu``); each
  method's ms gets its ratio to ``base`` (cuBLAS / torch ``F.linear``) of the same case,
  plus the goals of the kernels issue (GPU) or the CPU overhead goal.
* ``kernel_audit``: SASS audit of the AOT-compiled kernels for sm_80/89/90. Compiling needs
  a process without ``TRITON_INTERPRET`` (an interpreted kernel cannot be compiled, and
  the test suite sets it), so the audit runs as ``python -m <package>.kernel_audit --json``
  in a subprocess whose environment lacks that variable.
* ``fp8_lora_error``: the FP8 LoRA-effect error table (``fp8_lora_error.lora_effect_errors``)
  with issue 5's bounds as goals: vidlora within 5% of the fp32 reference's effect,
  merge + re-quantize (round to nearest) off by more than 50%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from .harness import torch_threads
from .rows import RunContext, goal_row, overhead_goal_row, ratio_rows

__all__ = ["run_kernel_bench", "run_kernel_audit", "run_fp8_lora_error"]

# Goals of the kernels issue on a GPU: (shape, M, R, limit on vidlora / base).
_GPU_GOALS = (
    ("wan14b.qkv", 32760, 32, 1.04),
    ("wan14b.ffn_up", 32760, 32, 1.04),
    ("wan14b.proj", 32760, 32, 1.07),
    ("wan14b.qkv", 32760, 128, 1.10),
)
_ENV_KEYS = ("device", "device_type", "date", "vidlora", "torch", "triton", "git_commit")


def _kernel_case(r: dict[str, Any]) -> str:
    return f"{r['shape']} {r['dtype']} M={r['m']} N={r['n']} K={r['k']} R={r['r']}"


def run_kernel_bench(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """kernel_bench rows. On CPU kernel_bench times one thread: its rows keep ``threads: 1``
    and carry the suite's device string (the machine as the run found it), so the report
    says "2 threads, timed on 1 thread" rather than a device with "1 threads"."""
    from . import kernel_bench

    with torch_threads(None):  # run_cpu pins one thread for its own timing only: restored after
        raw = kernel_bench.run_gpu(ctx.quick) if ctx.device == "cuda" else kernel_bench.run_cpu(ctx.quick)
    cases: dict[str, list[dict[str, Any]]] = {}
    for r in raw:
        row = {**r, "run_id": ctx.run_id, "case": _kernel_case(r), "metric": "ms", "value": r["ms"], "unit": "ms",
               "device": ctx.env["device"]}  # fmt: skip
        cases.setdefault(row["case"], []).append(row)
    for case, rows in cases.items():
        ratio_rows(rows, "base")
        yield from rows
        by = {r["method"]: r for r in rows}
        if ctx.device == "cuda":
            yield from _gpu_goals(ctx, rows[0], by)
        elif rows[0]["shape"] == kernel_bench.CPU_GOAL[0]:
            yield from _overhead_goal(ctx, case, by)


def _gpu_goals(ctx: RunContext, first: dict[str, Any], by: dict[str, dict]) -> Iterator[dict[str, Any]]:
    if "triton_r0" in by:
        yield goal_row(by["triton_r0"], "Triton kernel at R = 0 <= 1.05x cuBLAS", 1.05)
    for shape, m, r, limit in _GPU_GOALS:
        if (first["shape"], first["m"], first["r"]) == (shape, m, r) and "vidlora" in by:
            yield goal_row(by["vidlora"], f"{shape} M={m} rank {r}: vidlora <= {limit}x cuBLAS base", limit)


def _overhead_goal(ctx: RunContext, case: str, by: dict[str, dict]) -> Iterator[dict[str, Any]]:
    """CPU: reference-path LoRA overhead <= 1/2 of PEFT-style overhead (same case, same run)."""
    env = {k: by["base"][k] for k in _ENV_KEYS}
    over = []
    for method in ("peft", "vidlora"):
        row = ctx.row("kernel_bench", case, method, "overhead", by[method]["ratio"] - 1, "fraction of base",
                      shape=by[method]["shape"], dtype=by[method]["dtype"])  # fmt: skip
        over.append({**row, **env})
    if over[0]["value"] > 0:
        ratio_rows(over, "peft")
        yield from over
        yield overhead_goal_row(over[1], "CPU reference LoRA overhead <= 1/2 of PEFT-style (kernels issue)", 0.5)
    else:
        yield from over


def run_kernel_audit(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """The audit in a subprocess without TRITON_INTERPRET (quick: one shape per kernel)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    package = __package__ or "benchmarks"
    cmd = [sys.executable, "-m", f"{package}.kernel_audit", "--json"] + (["--quick"] if ctx.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    # exit 1 = some kernel not ok: still a complete audit, reported as such
    if proc.returncode not in (0, 1):
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[1:])} exited with {proc.returncode}: {tail}")
    for r in json.loads(proc.stdout):
        case = f"{r['kernel']} {r['arch']} {r['shape']} {r['dtype']}"
        yield ctx.row("kernel_audit", case, "triton AOT + cuobjdump", "spills", r["spills"], "instructions",
                      **r, audit=("quick" if ctx.quick else "full"), measured_on="AOT compile on this CPU; no GPU ran")  # fmt: skip


def run_fp8_lora_error(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """LoRA-effect error of vidlora (FP8 base, LoRA unmerged) vs merge + re-quantize."""
    from .fp8_lora_error import KIND, lora_effect_errors

    for r in lora_effect_errors():
        case = f"strength {r['strength']:g}"
        row = ctx.row("fp8_lora_error", case, r["method"], "rel_error", r["rel_error"], "fraction of the effect",
                      model=f"tiny {KIND} fp32 (CPU)", delta_frac=0.02, fp8_mode="w8a16", strength=r["strength"],
                      effect_norm=r["effect_norm"])  # fmt: skip
        yield row
        if r["method"] == "vidlora":
            yield goal_row(row, "vidlora LoRA effect within 5% of the fp32 reference (issue 5)", 0.05, key="value")
        elif r["method"] == "merge_rtn":
            yield goal_row(row, "merge + re-quantize (RTN) misses the effect by > 50% (issue 5)", 0.5, key="value",
                           direction=">=")  # fmt: skip
