"""The first run on a lent GPU: everything a first look at the kernels should tell, kill-safe.

    python -m benchmarks.gpu_first_run --out DIR [--dry-run] [--quick] [--budget-s S] [--only PHASE ...]
    python3 -m vidlora.benchmarks.gpu_first_run ...           (from the wheel; benchmarks/README.md)

Phases, in order of value, each in its own subprocess with a hard time limit (a CUDA fault
or a hang in one cannot poison the next; a phase that dies is restarted after the case it
died on, which gets an ``ok: false`` row naming the exit):

1. ``env``: GPU, clocks, power limit, SM count, L2, shared memory, torch / Triton / CUDA /
   driver versions, where vidlora was imported from;
2. ``compile``: every kernel variant compiled for this GPU's architecture with the installed
   Triton, in parallel processes: registers, spills, shared memory, TMA instructions (a
   kernel that does not compile is recorded and drops out of the first-use choice there);
3. ``correctness``: every variant against the fp32 torch reference *on the device*, inputs
   generated there (Wan / Hunyuan shapes at M = 32,760, M = 65,520 x N = 15,360, ragged and
   strided x, R in {4, 16, 32, 48, 128}, W8A16 both weight loads, W8A8 bytes and its error
   with fast accumulation on and off, fp32), before anything is timed;
4. ``timing``: cuBLAS, Triton R = 0, shrink alone, GEMM + expand alone, the op at R = 32 and
   128 per kernel, W8A16, W8A8 total / quantize / GEMM, ``torch._scaled_mm``, and the
   first-use choice itself (``vidlora.kernels.warm_up``: which path it keeps, with timings);
5. ``sweep``: six tile configs of the base GEMM;
6. ``step``: one Wan 14B-shaped transformer step at 480p x 81 frames (32,760 tokens), random
   weights: stock diffusers vs vidlora with no adapter, one rank-32 LoRA, three stacked;
   only if diffusers can be imported (its wheel was carried).

Rows go to ``DIR/first.jsonl`` as they are measured (first_run_record.py); ``DIR`` also holds
``first.log`` (the phases' output) and ``current.txt``: 3 files, within a lent machine's 8.
A second run with the same ``--out`` resumes: finished phases and recorded cases are
skipped. ``--budget-s`` (default 480) bounds the whole run; each phase gets at most its
own limit and what is left of the budget. ``--dry-run`` runs every phase on this CPU (the
Triton interpreter, small shapes; the compile phase compiles for sm_90 ahead of time), the
check that the script works before a GPU is spent on it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .first_run_record import CURRENT_FILE, PHASES, Recorder, read_rows

__all__ = ["PHASE_LIMITS_S", "main"]

# Seconds per phase on a GPU (sum 480: about 8 minutes) and in a dry run on 2 CPU cores.
PHASE_LIMITS_S = {"env": 30, "compile": 60, "correctness": 110, "timing": 130, "sweep": 40, "step": 110}
DRY_LIMITS_S = {"env": 60, "compile": 120, "correctness": 150, "timing": 120, "sweep": 90, "step": 150}
_MAX_RESTARTS = 3
LOG_FILE = "first.log"


def _phase_env(phase: str, dry_run: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    if dry_run and phase != "compile":
        env["TRITON_INTERPRET"] = "1"  # the kernels run on CPU tensors; AOT compile needs it unset
    return env


def _current_case(out: Path, phase: str) -> str | None:
    try:
        p, case = (out / CURRENT_FILE).read_text().strip().split("\t", 1)
    except (OSError, ValueError):
        return None
    return case if p == phase else None


def _run_phase(phase: str, out: Path, args, limit_s: float) -> None:
    rec = Recorder(out, phase)
    package = __package__ or "benchmarks"
    cmd = [sys.executable, "-m", f"{package}.first_run_phases", phase, "--out", str(out)]
    cmd += ["--dry-run"] if args.dry_run else []
    cmd += ["--quick"] if args.quick else []
    deadline = time.monotonic() + limit_s
    for attempt in range(_MAX_RESTARTS + 1):
        left = deadline - time.monotonic()
        if left <= 1:
            break
        with open(out / LOG_FILE, "a") as log:
            log.write(f"=== {phase} (attempt {attempt + 1}, {left:.0f} s left)\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_phase_env(phase, args.dry_run),
                                    start_new_session=True)  # fmt: skip
            try:
                rc = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        rec = Recorder(out, phase)  # re-read what the subprocess wrote
        if rec.skip(f"{phase}.done"):
            return
        case = _current_case(out, phase)
        if rc is None:
            if case and not rec.skip(case):
                rec.emit(case, False, error=f"timed out: the {phase} phase hit its {limit_s:.0f} s limit here")
            rec.emit(f"{phase}.done", False, error=f"timed out after {limit_s:.0f} s")
            return
        what = f"exit code {rc}" if rc >= 0 else f"signal {signal.Signals(-rc).name}"
        if case and not rec.skip(case):
            rec.emit(case, False, error=f"the {phase} process died on this case ({what}); restarted after it")
        elif rc == 0:
            break  # exited cleanly without a done row: do not loop
    if not Recorder(out, phase).skip(f"{phase}.done"):
        Recorder(out, phase).emit(f"{phase}.done", False, error="the phase did not finish (see first.log)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_first_run", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for first.jsonl (created; an existing one resumes)")
    parser.add_argument("--dry-run", action="store_true", help="every phase on this CPU, small shapes")
    parser.add_argument("--quick", action="store_true", help="fewer cases per phase (the CI form of the dry run)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="time budget of the whole run (default 480)")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only these phases (repeatable)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limits = DRY_LIMITS_S if args.dry_run else PHASE_LIMITS_S
    start = time.monotonic()
    for phase in PHASES:
        if args.only and phase not in args.only:
            continue
        if f"{phase}.done" in {r.get("case") for r in read_rows(out)}:
            print(f"gpu_first_run: {phase}: done in an earlier run, skipped", flush=True)
            continue
        left = args.budget_s - (time.monotonic() - start)
        if left < 5:
            Recorder(out, phase).emit(f"{phase}.done", False, error="not run: the time budget was used up")
            continue
        t0 = time.monotonic()
        print(f"gpu_first_run: {phase} (limit {min(limits[phase], left):.0f} s)", flush=True)
        _run_phase(phase, out, args, min(limits[phase], left))
        rows = [r for r in read_rows(out) if r.get("phase") == phase]
        bad = [r for r in rows if r.get("ok") is False]
        print(f"gpu_first_run: {phase}: {len(rows)} rows, {len(bad)} not ok, {time.monotonic() - t0:.1f} s", flush=True)
    rows = read_rows(out)
    print(f"gpu_first_run: {len(rows)} rows in {out / 'first.jsonl'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
