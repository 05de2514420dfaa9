"""The row schema of the benchmark suite: what every result row carries, ratios and goals.

A row is one measured (or computed) number::

    {benchmark, run_id, device, device_type, date, vidlora, torch, triton, git_commit,
     case, method, metric, value, unit, ...}

``case`` names what was measured (a scenario, a shape), ``method`` who did it (vidlora,
diffusers, base, ...). A ratio is only ever stored next to its baseline: ``ratio``,
``baseline`` (a method name) and ``baseline_value``, where a row with that method, the
same ``run_id``, ``benchmark``, ``case`` and ``metric`` exists in the same file with
exactly that value (:func:`check_rows` verifies it). Goal rows (``kind: "goal"``) say
whether a measured ratio meets a goal; they are reports, never assertions. Their
``verdict`` is "met", "not met" or "not decidable": an overhead goal (:func:`overhead_goal_row`)
whose overhead is negative, or within the run's own noise, cannot be read either way, and
``met`` is then False.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import environment

__all__ = ["REQUIRED_KEYS", "RunContext", "new_run_id", "ratio_rows", "goal_row", "overhead_goal_row", "check_rows"]

REQUIRED_KEYS = (
    "benchmark", "run_id", "device", "device_type", "date", "vidlora", "torch", "triton", "git_commit",
    "case", "method", "metric", "value", "unit",
)  # fmt: skip


def new_run_id() -> str:
    """UTC time plus 6 random hex digits: sortable, and unique across machines."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunContext:
    """What a benchmark needs from the suite: where it runs and how big, and the row maker."""

    run_id: str
    device: str  # "cpu" | "cuda"
    quick: bool
    out_dir: Path
    env: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # this run's rows so far (the suite appends)
    deadline: float | None = None  # time.monotonic() by which the run should end (None: no budget)

    def __post_init__(self) -> None:
        if not self.env:
            self.env = environment(self.device)

    def time_left(self) -> float:
        """Seconds left of the run's budget (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def skipped(self, benchmark: str, case: str, why: str) -> dict[str, Any]:
        """The row that says a part was not run, and why (a budget, a missing device)."""
        return self.row(benchmark, case, "skipped", "skipped", None, "", kind="skipped", reason=why)

    def row(self, benchmark: str, case: str, method: str, metric: str, value: float | int | None,
            unit: str, **fields: Any) -> dict[str, Any]:  # fmt: skip
        """One row of the schema above (``fields`` add details: shapes, timings, notes)."""
        return {
            "benchmark": benchmark, "run_id": self.run_id, **self.env, "case": case, "method": method,
            "metric": metric, "value": value, "unit": unit, **fields,
        }  # fmt: skip


def ratio_rows(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Add ``ratio`` / ``baseline`` / ``baseline_value`` to every row of one case whose
    method is not ``baseline`` (the rows must share benchmark, case and metric)."""
    keys = {(r["benchmark"], r["case"], r["metric"], r["run_id"]) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"ratio_rows takes the rows of one case of one run; got {sorted(keys)}")
    base = [r for r in rows if r["method"] == baseline]
    if len(base) != 1:
        raise ValueError(f"ratio_rows: expected one {baseline!r} row, found {len(base)}")
    b = base[0]["value"]
    for r in rows:
        if r["method"] != baseline:
            r.update(ratio=r["value"] / b, baseline=baseline, baseline_value=b)
    return rows


def goal_row(
    measured: dict[str, Any], goal: str, threshold: float, *, key: str = "ratio", direction: str = "<="
) -> dict[str, Any]:
    """A goal verdict on one row: met when ``measured[key] <= threshold`` (or ``>=``).

    ``key`` is "ratio" (against the row's same-run baseline) or "value" for goals on an
    absolute number (bytes, an error fraction)."""
    if measured.get(key) is None:
        raise ValueError(f"goal {goal!r}: row {measured['case']}/{measured['method']} has no {key}")
    met = measured[key] <= threshold if direction == "<=" else measured[key] >= threshold
    return {
        **measured, "kind": "goal", "goal": goal, "goal_key": key, "threshold": threshold, "direction": direction,
        "met": bool(met), "verdict": "met" if met else "not met",
    }  # fmt: skip


def overhead_goal_row(measured: dict[str, Any], goal: str, threshold: float, *, noise: float | None = None) -> dict[str, Any]:
    """A goal on an overhead ratio (our overhead / the baseline's overhead, both fractions of
    the same base time), with the cases no timing can decide:

    * our overhead <= 0: a LoRA never makes a GEMM faster, so a negative overhead is timing
      noise (a ratio of -0.141 is not a pass);
    * ``noise`` (the run's own spread, e.g. |fused / base - 1| for methods that run the
      base's very GEMMs) >= our overhead or >= the baseline's: the difference is inside it.

    Those rows get ``verdict`` "not decidable" (``met`` False) and a ``note`` saying why."""
    row = goal_row(measured, goal, threshold)
    ours, theirs = measured["value"], measured.get("baseline_value")
    why = None
    if ours <= 0:
        why = f"overhead {ours:.3g} <= 0: timing noise (a LoRA adds work)"
    elif noise is not None and (ours <= noise or (theirs is not None and theirs <= noise)):
        small = "ours" if ours <= noise else "the baseline's"
        why = f"{small} overhead is within this run's noise ({noise:.3g} of base)"
    if why is not None:
        row.update(met=False, verdict="not decidable", note=why)
    return row


def check_rows(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Problems with a list of rows (empty when fine): missing keys, ratios whose baseline
    row is absent from the same run or has another value, wrong ratio arithmetic."""
    rows = list(rows)
    problems = []
    index: dict[tuple, list[dict]] = {}
    for r in rows:
        missing = [k for k in REQUIRED_KEYS if k not in r]
        if missing:
            problems.append(f"{r.get('benchmark')}/{r.get('case')}/{r.get('method')}: missing {missing}")
            continue
        if r.get("kind") != "goal":
            index.setdefault((r["run_id"], r["benchmark"], r["case"], r["metric"], r["method"]), []).append(r)
    for r in rows:
        if "ratio" not in r or any(k not in r for k in REQUIRED_KEYS):
            continue
        where = f"{r['benchmark']}/{r['case']}/{r['method']}"
        if "baseline" not in r or "baseline_value" not in r:
            problems.append(f"{where}: a ratio without its baseline")
            continue
        base = index.get((r["run_id"], r["benchmark"], r["case"], r["metric"], r["baseline"]), [])
        if not any(b["value"] == r["baseline_value"] for b in base):
            problems.append(f"{where}: baseline {r['baseline']}={r['baseline_value']} not measured in run {r['run_id']}")
        elif r["value"] is not None and abs(r["ratio"] - r["value"] / r["baseline_value"]) > 1e-9 * abs(r["ratio"]):
            problems.append(f"{where}: ratio {r['ratio']} != {r['value']} / {r['baseline_value']}")
    return problems
