"""The phases of the first GPU run (gpu_first_run.py starts each in its own process).

    python -m benchmarks.first_run_phases PHASE --out DIR [--dry-run] [--quick]

Each phase appends rows through first_run_record.Recorder and skips the cases an earlier
(killed) run recorded. On a GPU every input is generated on the device; in a dry run the
same code runs on CPU tensors under the Triton interpreter at small shapes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .first_run_cases import SWEEP_SHAPE, Case, correctness_cases, make_inputs, timing_shapes
from .first_run_record import Recorder

__all__ = ["main"]


def _device(dry_run: bool) -> torch.device:
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("first_run_phases: no CUDA device (use --dry-run on a machine without one)")
    return torch.device("cuda")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _err(e: BaseException) -> str:
    lines = f"{type(e).__name__}: {e}".strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:400]


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------- env
def phase_env(rec: Recorder, dry_run: bool, quick: bool) -> None:
    import vidlora.kernels

    row: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "triton": _version("triton"), "vidlora": _version("vidlora"),
        "vidlora_path": str(Path(vidlora.kernels.__file__).parent), "diffusers": _version("diffusers"),
        "cpu_count": os.cpu_count(), "dry_run": dry_run,
    }  # fmt: skip
    if torch.cuda.is_available() and not dry_run:
        p = torch.cuda.get_device_properties(0)
        row.update(device=p.name, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                   l2_bytes=getattr(p, "L2_cache_size", None), memory_bytes=p.total_memory,
                   smem_per_block_optin=getattr(p, "shared_memory_per_block_optin", None),
                   device_count=torch.cuda.device_count())  # fmt: skip
        query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,power.max_limit," \
                "temperature.gpu,persistence_mode,compute_mode"  # fmt: skip
        try:
            out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=15)  # fmt: skip
            row["nvidia_smi"] = dict(zip(query.split(","), (v.strip() for v in out.stdout.splitlines()[0].split(","))))
        except (OSError, subprocess.SubprocessError, IndexError) as e:
            row["nvidia_smi"] = f"unavailable: {_err(e)}"
    else:
        row["device"] = f"cpu: {platform.processor() or platform.machine()} (dry run)"
    rec.emit("env.device", True, **row)


# --------------------------------------------------------------------------- compile
def _compile_one(case: tuple) -> dict[str, Any]:
    from .kernel_audit import audit_one

    try:
        return audit_one(case)
    except Exception as e:  # noqa: BLE001 - a variant that does not compile is a result
        return {"kernel": case[0], "arch": f"sm_{case[1]}", "shape": case[2], "dtype": case[3], "ok": False,
                "error": _err(e)}  # fmt: skip


def phase_compile(rec: Recorder, dry_run: bool, quick: bool) -> None:
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from .kernel_audit import audit_cases

    if dry_run or not torch.cuda.is_available():
        arch = 90
    else:
        major, minor = torch.cuda.get_device_capability(0)
        arch = major * 10 + minor
    cases = [c for c in audit_cases(quick=True) if c[1] == (arch if arch in (80, 89, 90) else 90)]
    if dry_run and quick:
        cases = cases[:4]
    todo = [c for c in cases if not rec.skip(f"compile.{c[0]}.{c[2]}.{c[3]}")]
    rec.running("compile.pool")
    jobs = max(1, min(8, os.cpu_count() or 1, len(todo) or 1))
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for case, row in zip(todo, pool.map(_compile_one, todo)):
            ok = bool(row.pop("ok", False))
            rec.emit(f"compile.{case[0]}.{case[2]}.{case[3]}", ok, **row)


# ----------------------------------------------------------------------- correctness
def phase_correctness(rec: Recorder, dry_run: bool, quick: bool) -> None:
    from vidlora.kernels.candidates import candidates_for
    from vidlora.kernels.selection import _check, _check_args
    from vidlora.kernels.result_check import sample_rows

    device = _device(dry_run)
    for case in correctness_cases(dry_run, quick):
        op, args = make_inputs(case, device)
        rows = sample_rows(args[0].numel() // case.k, 64, device)
        check_args = _check_args(op, args, rows)
        for cand in candidates_for(op, args):
            cid = f"{case.id}.{cand.name}"
            if rec.skip(cid):
                continue
            rec.running(cid)
            t0 = time.perf_counter()
            try:
                y = cand.run(*check_args)
                _sync(device)
                msg = _check(op, y, check_args, rows)
                del y
            except Exception as e:  # noqa: BLE001 - recorded, and the next candidate runs
                msg = _err(e)
            rec.emit(cid, msg is None, kernel=cand.name, op=op, m=case.m, n=case.n, k=case.k, r=case.r,
                     dtype=case.dtype, layout=case.layout, error=msg, seconds=round(time.perf_counter() - t0, 3))  # fmt: skip
        if op.endswith("w8a8") and not rec.skip(f"{case.id}.quantize_bytes"):
            rec.running(f"{case.id}.quantize_bytes")
            ok, info = _quantize_bytes(args)
            rec.emit(f"{case.id}.quantize_bytes", ok, kernel="w8a8_quantize_pass", op=op, m=case.m, k=case.k, r=case.r, **info)
        del args, check_args
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _quantize_bytes(args: tuple) -> tuple[bool, dict]:
    """The W8A8 quantize pass's x8 / x_s against fp8_reference.quantize_rows_e4m3, bit for bit."""
    from vidlora.kernels.fp8_gemm import quantize_shrink_triton
    from vidlora.kernels.fp8_reference import quantize_rows_e4m3

    x, a, c = args[0], args[4], args[6]
    try:
        x8, xs, _ = quantize_shrink_triton(x, a[: min(a.shape[0], 128)], c[: min(a.shape[0], 128)])
        q, s = quantize_rows_e4m3(x.reshape(-1, x.shape[-1]))
        diff = int((x8.view(torch.uint8) != q.view(torch.uint8)).sum())
        return diff == 0 and torch.equal(xs, s), {"bytes_differing": diff, "scales_equal": torch.equal(xs, s)}
    except Exception as e:  # noqa: BLE001
        return False, {"error": _err(e)}


# ---------------------------------------------------------------------------- timing
def _timer(device: torch.device):
    if device.type == "cuda":
        from .harness import time_gpu

        return lambda fn: time_gpu(fn, warmup_ms=10, rep_ms=40)["ms"]

    def wall(fn):
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return wall


def phase_timing(rec: Recorder, dry_run: bool, quick: bool) -> None:
    import torch.nn.functional as F

    from vidlora.kernels.candidates import candidates_for
    from vidlora.kernels.selection import PathChooser

    device = _device(dry_run)
    timer = _timer(device)
    for name, m, n, k in timing_shapes(dry_run, quick):
        for r in ((0, 16) if dry_run else (0, 32, 128)):
            op, args = make_inputs(Case(f"t.{name}.r{r}", "lora_linear", m, n, k, r), device)
            x, w, b = args[0], args[1], args[2]
            base_id = f"t.{name}.m{m}.cublas"
            if not rec.skip(base_id):
                rec.running(base_id)
                rec.emit(base_id, True, kernel="cublas", m=m, n=n, k=k, r=0, ms=timer(lambda: F.linear(x, w, b)))
            base_ms = next(rr["ms"] for rr in _rows(rec) if rr.get("case") == base_id)
            flops = 2.0 * m * n * k + 2.0 * m * r * (n + k)
            for cand in candidates_for(op, args):
                _time_row(rec, f"t.{name}.m{m}.r{r}.{cand.name}", lambda c=cand: c.run(*args), timer, base_ms, flops,
                          kernel=cand.name, m=m, n=n, k=k, r=r)  # fmt: skip
            if r:
                _time_parts(rec, name, args, timer, base_ms)
            del args
        for mode in ("w8a16", "w8a8"):
            op, args = make_inputs(Case(f"t.{name}.{mode}", f"lora_linear_fp8.{mode}", m, n, k, 32), device)
            for cand in candidates_for(op, args):
                _time_row(rec, f"t.{name}.m{m}.{mode}.{cand.name}", lambda c=cand: c.run(*args), timer, None,
                          2.0 * m * n * k, kernel=cand.name, m=m, n=n, k=k, r=32, mode=mode)  # fmt: skip
            if mode == "w8a8":
                _time_w8a8_parts(rec, name, args, timer)
            del args
        # What the first-use choice keeps for this shape, with its own timings.
        cid = f"t.{name}.m{m}.choice"
        if not rec.skip(cid):
            rec.running(cid)
            chooser = PathChooser(None if device.type == "cuda" else (lambda nm, fn: timer(fn)), use_disk=False)
            for r in (0, 32):
                _, args = make_inputs(Case(cid, "lora_linear", m, n, k, r), device)
                choice = chooser.choose("lora_linear", args)
                rec.emit(f"{cid}.r{r}", True, kernel="first-use choice", m=m, n=n, k=k, r=r, chosen=choice.get("chosen"),
                         timings_ms=choice.get("timings_ms"), excluded=choice.get("excluded"))  # fmt: skip
                del args


def _rows(rec: Recorder):
    from .first_run_record import read_rows

    return read_rows(rec.directory)


def _time_row(rec, cid, fn, timer, base_ms, flops, **fields) -> None:
    if rec.skip(cid):
        return
    rec.running(cid)
    try:
        ms = float(timer(fn))
    except Exception as e:  # noqa: BLE001
        rec.emit(cid, False, error=_err(e), **fields)
        return
    extra = {"ratio_vs_cublas": ms / base_ms} if base_ms else {}
    rec.emit(cid, True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12, **extra, **fields)


def _time_parts(rec, name, args, timer, base_ms) -> None:
    """The shrink alone and the GEMM + expand alone (classic kernels, heuristic plan)."""
    from vidlora.kernels.launching import INTERPRETED, as_batched_rows, precision
    from vidlora.kernels.lora_gemm import _launch_gemm, _launch_shrink, plan_launch

    x, w, b, a, bb, c = args
    x3, s = as_batched_rows(x)
    m, (n, k), r = x3.shape[0] * x3.shape[1], w.shape, a.shape[0]
    plan = plan_launch(m, n, k, r, x.dtype, x.device, strategy="shrink_expand")
    flags = dict(UPCAST_DOT=INTERPRETED and x.dtype == torch.bfloat16, PRECISION=precision(x.dtype))
    t = torch.empty(m, r, dtype=x.dtype, device=x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _time_row(rec, f"t.{name}.m{m}.r{r}.shrink_alone", lambda: _launch_shrink(plan.shrink, x3, a, c, t, m, k, r, s, flags),
              timer, base_ms, 2.0 * m * k * r, kernel="shrink", m=m, n=n, k=k, r=r)  # fmt: skip
    _time_row(rec, f"t.{name}.m{m}.r{r}.gemm_expand_alone",
              lambda: _launch_gemm(plan.gemm, 1, x3, w, b, None, t, a, bb, c, y, m, n, k, r, s, flags), timer, base_ms,
              2.0 * m * n * (k + r), kernel="gemm_expand", m=m, n=n, k=k, r=r)  # fmt: skip


def _time_w8a8_parts(rec, name, args, timer) -> None:
    from vidlora.kernels.fp8_gemm import quantize_shrink_triton

    x, w8, ws, b, a, bb, c = args
    m, (n, k) = x.shape[0], w8.shape
    _time_row(rec, f"t.{name}.m{m}.w8a8.quantize_alone", lambda: quantize_shrink_triton(x, a, c), timer, None,
              2.0 * m * k * a.shape[0], kernel="w8a8_quantize", m=m, n=n, k=k, r=a.shape[0])  # fmt: skip
    if x.device.type == "cuda":
        from vidlora.kernels.fp8_reference import quantize_rows_e4m3

        m_pad = -(-m // 16) * 16
        x8, xs = quantize_rows_e4m3(torch.nn.functional.pad(x, (0, 0, 0, m_pad - m)))
        _time_row(rec, f"t.{name}.m{m}.scaled_mm", lambda: torch._scaled_mm(
            x8, w8.t(), scale_a=xs[:, None], scale_b=ws[None, :], out_dtype=x.dtype), timer, None, 2.0 * m * n * k,
            kernel="torch._scaled_mm", m=m_pad, n=n, k=k, r=0)  # fmt: skip


# ----------------------------------------------------------------------------- sweep
def phase_sweep(rec: Recorder, dry_run: bool, quick: bool) -> None:
    import torch.nn.functional as F

    from vidlora.kernels.heuristics import GemmConfig
    from vidlora.kernels.lora_gemm import lora_linear_triton

    device = _device(dry_run)
    timer = _timer(device)
    name, m, n, k = ("small.proj", 64, 64, 64) if dry_run else SWEEP_SHAPE
    _, (x, w, b, a, bb, c) = make_inputs(Case("sweep", "lora_linear", m, n, k, 0), device)
    configs = [(16, 16, 16, 16, 2, 4, 2), (32, 32, 16, 16, 2, 4, 2)] if dry_run else [
        (128, 256, 64, 16, 8, 8, 3), (128, 256, 64, 16, 8, 8, 4), (128, 128, 64, 16, 8, 8, 4),
        (256, 128, 64, 16, 8, 8, 3), (128, 128, 128, 16, 8, 8, 3), (64, 256, 64, 16, 8, 4, 4)]  # fmt: skip
    base_id = f"s.{name}.cublas"
    if not rec.skip(base_id):
        rec.running(base_id)
        rec.emit(base_id, True, kernel="cublas", m=m, n=n, k=k, ms=timer(lambda: F.linear(x, w, b)))
    base_ms = next(rr["ms"] for rr in _rows(rec) if rr.get("case") == base_id)
    for cfg in configs:
        g = GemmConfig(*cfg)
        _time_row(rec, f"s.{name}.classic.{'x'.join(map(str, cfg))}", lambda g=g: lora_linear_triton(
            x, w, b, a, bb, c, strategy="plain", gemm=g), timer, base_ms, 2.0 * m * n * k, kernel="triton.classic.plain",
            config=dict(zip(("block_m", "block_n", "block_k", "block_r", "group_m", "num_warps", "num_stages"), cfg)),
            m=m, n=n, k=k)  # fmt: skip
    _sweep_quantize(rec, device, timer, dry_run)


def _sweep_quantize(rec: Recorder, device: torch.device, timer, dry_run: bool) -> None:
    """The W8A8 quantize pass's bytes in flight: K step, stages and persistent grid size
    (heuristics.quant_config keeps L2 for the second read; this measures the trade)."""
    from vidlora.kernels.fp8_gemm import quantize_shrink_triton
    from vidlora.kernels.heuristics import QuantConfig, quant_config

    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        return
    m, k, r = (64, 64, 16) if dry_run else (32760, 5120, 32)
    _, args = make_inputs(Case("sweep.quant", "lora_linear_fp8.w8a8", m, 64, k, r), device)
    x, a, c = args[0], args[4], args[6]
    facts = (None, None) if device.type != "cuda" else (torch.cuda.get_device_properties(device).multi_processor_count,
                                                         torch.cuda.get_device_properties(device).L2_cache_size)  # fmt: skip
    cap = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    heuristic = quant_config(m, k, r, x.element_size(), cap, *facts)
    grid = [(16, 2, 2, 4)] if dry_run else [(128, 4, 80, 4), (128, 6, 80, 4), (128, 4, 132, 4), (64, 4, 264, 4),
                                             (256, 3, 80, 8), (128, 4, 264, 4)]  # fmt: skip
    configs = [heuristic] + [QuantConfig(heuristic.block_m, bk, heuristic.block_r, prog, warps, st)
                             for bk, st, prog, warps in grid]  # fmt: skip
    moved = m * k * x.element_size() + m * k + m * r * x.element_size()  # x read once, x8 and T written
    for q in configs:
        cid = f"s.quant.{q.block_m}x{q.block_k}.st{q.num_stages}.p{q.programs}.w{q.num_warps}"
        _time_row(rec, cid, lambda q=q: quantize_shrink_triton(x, a, c, quant=q), timer, None, 2.0 * m * k * r,
                  kernel="w8a8_quantize", config=q.__dict__, heuristic=q == heuristic, m=m, k=k, r=r,
                  bytes_moved=moved)  # fmt: skip


_PHASES = {"env": phase_env, "compile": phase_compile, "correctness": phase_correctness, "timing": phase_timing,
           "sweep": phase_sweep}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_run_phases")
    parser.add_argument("phase", choices=[*_PHASES, "step"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rec = Recorder(Path(args.out), args.phase)
    t0 = time.perf_counter()
    if args.phase == "step":
        if importlib.util.find_spec("diffusers") is None:
            rec.emit("step.done", False, skipped="diffusers is not installed (carry its wheel: benchmarks/README.md)")
            return 0
        from .first_run_step import phase_step

        phase_step(rec, args.dry_run, args.quick)
    else:
        _PHASES[args.phase](rec, args.dry_run, args.quick)
    rec.emit(f"{args.phase}.done", True, seconds=round(time.perf_counter() - t0, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
