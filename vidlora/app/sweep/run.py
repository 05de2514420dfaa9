"""``run_sweep``: a plan file -> DIR/*.mp4, manifest.jsonl, contact_sheet.png, index.html.

In order: Ray is there (else one line saying what to install); the plan is read and
expanded; the model's configs are read once; every LoRA source is resolved once; each
job is checked (the CLI's rules) and named; jobs already done (MP4 + a manifest line
without error) are skipped; the rest run on Ray workers that load the pipeline once
(``pool.py``); each result is written into DIR as it comes (MP4 + sidecar, atomically,
then its manifest line); at the end the manifest is rewritten in plan order and the
sheet and the page are made. A job that fails is recorded with its error and the sweep
goes on; ``SweepResult.failed`` counts them (the CLI exits 1 when it is not 0).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidlora.errors import VidloraError

from .jobs import make_jobs, resolve_sources
from .manifest import append_line, is_done, job_line, read_manifest, write_manifest
from .plan_file import load_plan
from .report import write_contact_sheet, write_index

__all__ = ["SweepResult", "run_sweep"]


@dataclass
class SweepResult:
    """What a sweep did. ``swaps``: LoRA-set loads on the workers (a worker's first set
    counts); ``workers``: workers started (0 when nothing was left to run)."""

    out: Path
    total: int = 0
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    swaps: int = 0
    workers: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # file -> error


def run_sweep(plan_path, out, *, workers: int | None = None, address: str | None = None, say=None,
              progress: bool = True) -> SweepResult:  # fmt: skip
    """Run the sweep in ``plan_path`` into the folder ``out`` (see the module docstring).
    ``workers``: how many (default one per GPU, one on CPU only); ``address``: a Ray
    cluster to join (default: start a local one, or use the Ray this process has)."""
    from ..cli.console import Messages
    from ..workers.ray_setup import require_ray

    say = say or Messages()
    started = time.perf_counter()
    require_ray("sweep")
    if workers is not None and workers < 1:
        raise VidloraError(f"--workers must be >= 1; got {workers}")
    plan = load_plan(plan_path)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise VidloraError(f"--out {out} is a file; give a folder for the sweep's videos")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise VidloraError(f"--out {out} is not writable")
    if plan.duplicates:
        say.note(f"{plan.duplicates} duplicate job{'s' if plan.duplicates != 1 else ''} in the plan run once")

    resolved = resolve_sources(plan, progress)
    jobs = make_jobs(plan, out, resolved, say)
    previous = read_manifest(out)
    lines: dict[str, dict] = {}
    result = SweepResult(out=out, total=len(jobs))
    pending = []
    for job in jobs:
        if is_done(out, previous.get(job.file)):
            lines[job.file] = previous[job.file]
            result.skipped += 1
        elif job.error is not None:
            _record(out, lines, result, job, job_line(job, None, job.error), say)
        else:
            pending.append(job)
    say.print(f"sweep {plan.path.name}: {len(jobs)} jobs, {result.skipped} done before, {len(pending)} to run")
    if pending:
        _run_pending(plan, pending, out, lines, result, workers, address, say, progress)

    # one line per job of this plan, in plan order; other plans' finished jobs in the same
    # folder keep theirs (after), a stale failure of a job no longer asked for goes
    ours = [lines[j.file] for j in jobs if j.file in lines]
    kept = [ln for f, ln in previous.items() if f not in lines and is_done(out, ln)]
    write_manifest(out, ours + kept)
    with_lines = {**{ln["file"]: ln for ln in kept}, **lines}
    write_contact_sheet(out, jobs, with_lines)
    write_index(out, jobs, with_lines, title=f"vidlora sweep: {plan.path.name}")
    result.seconds = time.perf_counter() - started
    _summary(say, result)
    return result


def _run_pending(plan, pending, out, lines, result, workers, address, say, progress) -> None:
    from vidlora.common.progress import progress_bar

    from ..workers.ray_setup import connect, disconnect, worker_shape
    from .pool import run_on_ray

    started = connect(address, "sweep")
    try:
        shape = worker_shape(workers, at_most=len(pending))
        say.print(f"running on {shape.describe()}" + (f" (Ray at {address})" if address else ""))
        with progress_bar(f"sweep ({shape.count} worker{'s' if shape.count != 1 else ''})", len(pending),
                          enabled=progress) as advance:  # fmt: skip

            def on_result(job, res) -> None:
                if res.get("ok"):
                    _write_video(out, job.file, res["mp4"], res["sidecar"])
                    line = job_line(job, res.get("seconds"), None)
                    result.ran += 1
                else:
                    line = job_line(job, res.get("seconds"), res["error"])
                _record(out, lines, result, job, line, say)
                advance()

            stats = run_on_ray(pending, shape, on_result)
        result.swaps, result.workers = stats.swaps, stats.workers_started
    finally:
        disconnect(started)


def _record(out: Path, lines: dict, result: SweepResult, job, line: dict, say) -> None:
    lines[job.file] = line
    append_line(out, line)
    if line["error"] is not None:
        result.failed += 1
        result.errors[job.file] = line["error"]
        say.warn(f"job {job.file} failed: {line['error']}")


def _write_video(out: Path, name: str, mp4: bytes, sidecar: bytes) -> None:
    """The MP4 and its sidecar into the sweep folder, each under a temporary name first."""
    for target, data in ((out / name, mp4), (out / f"{name}.json", sidecar)):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=out)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _summary(say, r: SweepResult) -> None:
    swaps = f", {r.swaps} LoRA swap{'s' if r.swaps != 1 else ''}" if r.ran or r.swaps else ""
    on = f" on {r.workers} worker{'s' if r.workers != 1 else ''}" if r.workers else ""
    say.print(f"{r.total} jobs: {r.ran} made, {r.skipped} done before, {r.failed} failed in {r.seconds:.1f} s{on}{swaps}; "
              f"{r.out}/manifest.jsonl, contact_sheet.png, index.html",
              style="green" if not r.failed else None)  # fmt: skip
    if r.failed:
        say.warn(f"{r.failed} of {r.total} jobs failed (their errors are in manifest.jsonl); run the sweep again to retry them")
