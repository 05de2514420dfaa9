"""How fast a bad command line gets its one-line error: ``vidlora`` with a model-free bad
input vs ``python -c "import torch"``, in the same run.

    vidlora bench --only cli_startup

Every case is a fresh ``python -m vidlora ...`` process (what a user waits for) that must
exit 2 with one ``vidlora: error`` line, a missing LoRA file, an existing output, a
strength typo, a .gif output, a negative fps and a zero flow shift; the baseline is a
process that only imports torch (what every one of them cost before the CLI checked
arguments ahead of torch). ``python -c pass`` is the interpreter's own floor. All commands
run round-robin (a shared VM drifts over seconds), 5 runs each after 1 warm-up; ``value``
is the fastest wall time (interference only adds time), ``median_ms`` beside it.
Goal (issue 15): the slowest case <= 0.3x the torch import.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .rows import RunContext, goal_row, ratio_rows

__all__ = ["BENCHMARK", "CASES", "run"]

BENCHMARK = "cli_startup"
BASELINE = 'python -c "import torch"'
_FLOOR = "python -c pass"
_GOAL = 0.3
# case -> the vidlora arguments after "t2v --model tiny --prompt x" ({tmp}: a scratch folder)
CASES: dict[str, list[str]] = {
    "missing LoRA file": ["--lora", "{tmp}/nope.safetensors", "--out", "{tmp}/o.mp4"],
    "output exists": ["--out", "{tmp}/exists.mp4"],
    "strength typo (:abc)": ["--lora", "{tmp}/motion.safetensors:abc", "--out", "{tmp}/o.mp4"],
    "--out o.gif": ["--out", "{tmp}/o.gif"],
    "--fps -3": ["--fps", "-3", "--out", "{tmp}/o.mp4"],
    "--flow-shift 0": ["--flow-shift", "0", "--out", "{tmp}/o.mp4"],
}


def _commands(tmp: str) -> dict[str, list[str]]:
    py = sys.executable
    out = {BASELINE: [py, "-c", "import torch"], _FLOOR: [py, "-c", "pass"]}
    for case, extra in CASES.items():
        args = [a.replace("{tmp}", tmp) for a in extra]
        out[f"vidlora: {case}"] = [py, "-m", "vidlora", "t2v", "--model", "tiny", "--prompt", "x", *args]
    return out


def _run_once(cmd: list[str], env: dict[str, str], check: bool) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    ms = (time.perf_counter() - t0) * 1e3
    if check:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("vidlora: error")]
        if proc.returncode != 2 or len(lines) != 1:
            raise RuntimeError(f"{' '.join(cmd[2:])}: exit {proc.returncode}, stderr {proc.stderr.strip()[-300:]!r}; "
                               "expected exit 2 and one 'vidlora: error' line")  # fmt: skip
    return ms


def run(ctx: RunContext, repeats: int = 5, warmup: int = 1) -> Iterator[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "VIDLORA_DEBUG")}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "exists.mp4").write_bytes(b"x")
        Path(tmp, "motion.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
        commands = _commands(tmp)
        names = list(commands)
        times: dict[str, list[float]] = {n: [] for n in names}
        for i in range(warmup + repeats):
            for name in names[i % len(names):] + names[: i % len(names)]:  # rotating round-robin
                ms = _run_once(commands[name], env, check=name.startswith("vidlora"))
                if i >= warmup:
                    times[name].append(ms)
    rows = []
    for name, ts in times.items():
        rows.append(ctx.row(
            BENCHMARK, "bad input -> one line, exit 2", name, "ms", min(ts), "ms", median_ms=statistics.median(ts),
            ms_min=min(ts), ms_max=max(ts), runs=repeats, estimator=f"min of {repeats}", clock="wall, whole process",
            command=" ".join(Path(c).name if j == 0 else c for j, c in enumerate(commands[name])),
        ))  # fmt: skip
    ratio_rows(rows, BASELINE)
    yield from rows
    worst = max((r for r in rows if r["method"].startswith("vidlora")), key=lambda r: r["ratio"])
    yield goal_row(worst, f"slowest model-free bad input <= {_GOAL}x importing torch (issue 15)", _GOAL)
