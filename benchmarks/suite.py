"""``vidlora bench``: the registry of benchmarks, running them, writing rows and the report.

    vidlora bench [--quick] [--only NAME ...] [--out DIR] [--list]

Benchmarks run in the registry's order, which is the GPU priority order of issue 7
(kernel micro-benchmark incl. FP8, transformer forward, swap, memory), then the ones that
need no GPU (roofline, FP8 LoRA-effect error, kernel audit).
``--quick`` runs CPU-sized measurements on the CPU, whatever GPU is present (a few
minutes on 2 cores); without it the suite runs on CUDA when there is a GPU, at real
shapes, and on the CPU (bigger and slower than --quick) otherwise.

Every row goes to ``<out>/suite-<cpu|cuda>-<run id>.jsonl`` as soon as it is measured
(a run cut short keeps what it measured), carrying the run id, the environment (device,
date, versions, git commit) and, for ratios, the baseline measured in the same run
(rows.py). A benchmark that fails leaves an ``error`` row and the others still run
(exit status 1). Then report.py writes ``REPORT-<device>-<run id>.md`` and PNG plots.

``--out``: default ``bench-results`` in the vidlora cache (``$VIDLORA_CACHE``, else
``~/.cache/vidlora``), said on stderr, so a run never leaves untracked files in a checkout
or the current folder. The committed results stay in ``benchmarks/results``; add a run to
them with ``--out benchmarks/results``.

``VIDLORA_BENCH_BUDGET_S=540``: a time budget in seconds for the whole run (a lent GPU
gives 10 minutes per command). Benchmarks, and the GPU forward stages and measured memory
scenarios inside them, that would start too late are skipped with a ``skipped`` row and the
report is still written, instead of the run being killed with no report.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rows import RunContext, new_run_id

__all__ = ["Entry", "ENTRIES", "default_out_dir", "run_suite", "run_entries"]

# With a budget (VIDLORA_BENCH_BUDGET_S), a benchmark starts only with this much time left
_MIN_ENTRY_S = 30.0


@dataclass(frozen=True)
class Entry:
    """One benchmark: ``run(ctx)`` yields rows (rows.py)."""

    name: str
    summary: str
    run: Callable[[RunContext], Iterable[dict[str, Any]]]


def _lazy(module: str, function: str = "run") -> Callable[[RunContext], Iterable[dict[str, Any]]]:
    """Import a benchmark module only when it runs (``--list`` stays instant)."""

    def call(ctx: RunContext) -> Iterable[dict[str, Any]]:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(ctx)

    return call


ENTRIES: tuple[Entry, ...] = (
    Entry("kernel_bench", "one LoRA linear: cuBLAS base, PEFT-style, merged, vidlora (CPU: torch paths)",
          _lazy("suite_adapters", "run_kernel_bench")),
    Entry("fp8_kernel_bench", "FP8 LoRA linear: W8A16 / W8A8 vs cuBLAS bf16 and vidlora bf16 (CPU: references)",
          _lazy("fp8_kernel_bench")),
    Entry("forward", "one transformer forward: no LoRA, diffusers+PEFT 1/3/fused, vidlora bf16/fp8 1/3",
          _lazy("forward_bench")),
    Entry("swap", "attach+add, swap {a,b}->{a,c}, strength change: vidlora vs diffusers+PEFT vs merge",
          _lazy("swap_bench")),
    Entry("loop", "the everyday loop at Wan 1.3B width, fused units on: attach+add and swap vs diffusers' own load",
          _lazy("loop_bench")),
    Entry("memory", "peak memory of Wan 14B T2V/I2V FP8 forwards with two LoRAs (computed; measured on CUDA)",
          _lazy("memory")),
    Entry("roofline", "projected kernel times on H100/H200/RTX 4090/A100 from FLOPs and bytes (projection)",
          _lazy("roofline")),
    Entry("fp8_lora_error", "LoRA-effect error on an FP8 base: vidlora unmerged vs merge + re-quantize",
          _lazy("suite_adapters", "run_fp8_lora_error")),
    Entry("kernel_audit", "SASS of the AOT-compiled kernels for sm_80/89/90: MMA kind, spills, smem",
          _lazy("suite_adapters", "run_kernel_audit")),
    Entry("cli_startup", "a bad command line's one-line error vs python -c 'import torch' (no GPU needed)",
          _lazy("cli_startup")),
    Entry("lora_tools", "vidlora loras on 200 files (ms per file); extract on a real-shape Wan 14B block, projected",
          _lazy("lora_tools")),
)  # fmt: skip


def default_out_dir() -> tuple[Path, str]:
    """(folder, why): ``bench-results`` in the vidlora cache (see the module docstring)."""
    from vidlora.common.cache_dir import vidlora_cache_dir

    return vidlora_cache_dir() / "bench-results", "the vidlora cache; pass --out DIR to choose"


def _error_row(ctx: RunContext, name: str, exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return ctx.row(name, "-", "error", "error", None, "", kind="error", error=f"{type(exc).__name__}: {exc}",
                   traceback="".join(tb[-4:]))  # fmt: skip


def run_entries(entries: list[Entry], ctx: RunContext, rows_path: Path, log=print) -> list[dict[str, Any]]:
    """Run entries in order, appending each row to ``rows_path`` as it arrives."""
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    with rows_path.open("x") as f:
        for i, entry in enumerate(entries, 1):
            log(f"[{i}/{len(entries)}] {entry.name}: {entry.summary}")
            if ctx.time_left() < _MIN_ENTRY_S:
                row = ctx.skipped(entry.name, "-", f"time budget: {max(ctx.time_left(), 0):.0f} s left")
                f.write(json.dumps(row) + "\n")
                ctx.rows.append(row)
                log(f"    skipped: {row['reason']}")
                continue
            t0 = time.perf_counter()
            count = 0
            try:
                for row in entry.run(ctx):
                    f.write(json.dumps(row, default=str) + "\n")
                    f.flush()
                    ctx.rows.append(row)
                    count += 1
            except Exception as exc:  # one broken benchmark must not cost the others' numbers
                row = _error_row(ctx, entry.name, exc)
                f.write(json.dumps(row, default=str) + "\n")
                f.flush()
                ctx.rows.append(row)
                log(f"    FAILED: {row['error']}")
            log(f"    {count} rows in {time.perf_counter() - t0:.1f} s")
    return ctx.rows


def _select(only: list[str] | None) -> list[Entry]:
    from vidlora.errors import VidloraError

    if not only:
        return list(ENTRIES)
    names = [e.name for e in ENTRIES]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise VidloraError(f"unknown benchmark {', '.join(map(repr, unknown))}: expected one of {', '.join(names)}")
    return [e for e in ENTRIES if e.name in only]


# benchmarks whose baselines are diffusers + PEFT: peft is in the `bench` extra only
_NEEDS_PEFT = ("forward", "swap", "loop")


def _check_extras(entries: list[Entry]) -> None:
    import importlib.util

    from vidlora.errors import VidloraError

    wanting = [e.name for e in entries if e.name in _NEEDS_PEFT]
    if wanting and importlib.util.find_spec("peft") is None:
        raise VidloraError(
            f"benchmarks {', '.join(wanting)} compare with diffusers + PEFT, which is not installed: "
            "pip install 'vidlora[bench]' (or pick others with --only; see --list)"
        )


def run_suite(args) -> int:
    """The ``vidlora bench`` command: args has .quick, .only (list or None), .out, .list."""
    if args.list:
        for e in ENTRIES:
            print(f"{e.name:15} {e.summary}")
        return 0
    entries = _select(args.only)
    _check_extras(entries)
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    if args.out:
        out_dir = Path(args.out)
    else:
        out_dir, why = default_out_dir()
        print(f"vidlora bench: results go to {out_dir} ({why})", file=sys.stderr)
    run_id = new_run_id()
    budget = os.environ.get("VIDLORA_BENCH_BUDGET_S")
    deadline = time.monotonic() + float(budget) if budget else None
    ctx = RunContext(run_id=run_id, device=device, quick=bool(args.quick), out_dir=out_dir, deadline=deadline)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    mode = "quick (CPU-sized)" if args.quick else f"full, on {device}"
    log(f"vidlora bench {mode}: run {run_id} on {ctx.env['device']}")
    rows_path = out_dir / f"suite-{device}-{run_id}.jsonl"
    rows = run_entries(entries, ctx, rows_path, log)
    log(f"rows: {rows_path}")

    from .report import write_report

    written = write_report(rows, out_dir, run_id, rows_path.name)
    for path in written.files:
        log(f"report: {path}")
    if written.note:
        log(written.note)
    print(written.summary)
    return 1 if any(r.get("kind") == "error" for r in rows) else 0
