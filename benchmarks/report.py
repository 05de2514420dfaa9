"""Result rows -> ``REPORT-<device>-<run id>.md`` (tables, goals) and PNG plots.

    python -m vidlora.benchmarks.report ROWS.jsonl [--out DIR]    (re-render a run's rows)

The report states for every section where its numbers come from: measured on which
device, computed (memory), projected (roofline) or compiled without a GPU (audit). Goals
are listed as met / not met with the measured ratio and its same-run baseline.

Plots need matplotlib (the ``bench`` extra: ``pip install 'vidlora[bench]'``); without it
the tables are written and the report says the plots were skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Written", "write_report", "render_markdown", "main"]

_TITLES = {
    "kernel_bench": "One LoRA linear (kernel micro-benchmark)",
    "fp8_kernel_bench": "One LoRA linear on an FP8 base: W8A16 / W8A8",
    "forward": "One transformer forward (one denoising step)",
    "swap": "Changing LoRAs: attach + add, swap, strength",
    "memory": "Peak memory, FP8 base + two LoRAs",
    "roofline": "Roofline projection of the kernels (projection, not measured)",
    "fp8_lora_error": "LoRA effect on an FP8 base: error vs the fp32 reference",
    "kernel_audit": "Kernel audit: SASS of the AOT-compiled kernels (no GPU ran)",
    "cli_startup": "Command line: time to a bad argument's one-line error, vs importing torch",
    "loop": "The everyday loop: attach + add and swap vs diffusers' own loading (fused units on)",
}


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    note: str = ""
    summary: str = ""


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        mag = abs(v)
        if mag >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if mag >= 1e-3 else f"{v:.2e}"
    return str(v)


def _table(header: list[str], lines: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_num(c) if not isinstance(c, str) else c.replace("|", "/") for c in line) + " |"
            for line in lines]  # fmt: skip
    return "\n".join(out)


def _measured(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("kind") not in ("goal", "error", "skipped")]


# ----------------------------------------------------------------------------- tables


def _generic(rows: list[dict]) -> str:
    body = []
    for r in _measured(rows):
        ratio = f"{r['ratio']:.3f} x {r['baseline']}" if "ratio" in r else ("baseline" if _is_baseline(r, rows) else "")
        extra = []
        if r.get("wall_ms") is not None and r.get("unit") == "ms" and r.get("clock", "").startswith("thread"):
            extra.append(f"wall {r['wall_ms']:.3g} ms")
        if r.get("peak_gb") is not None:
            extra.append(f"peak {r['peak_gb']:.3g} GB")
        body.append([r["case"], r["metric"], r["method"], r["value"], r["unit"], ratio, ", ".join(extra)])
    return _table(["case", "metric", "method", "value", "unit", "ratio (same run)", "also"], body)


def _is_baseline(r: dict, rows: list[dict]) -> bool:
    return any(o.get("baseline") == r["method"] and o["case"] == r["case"] and o["metric"] == r["metric"] for o in rows)


def _memory(rows: list[dict]) -> str:
    gb = lambda r, k: r.get(k) / 1e9 if r.get(k) is not None else None  # noqa: E731
    body = [
        [r["scenario"], r["method"], gb(r, "value"), r["value"] / 2**30, gb(r, "base_fp8_bytes"), gb(r, "adapter_bytes"),
         gb(r, "other_weights_bytes"), gb(r, "activation_peak_bytes"), gb(r, "lora_temp_bytes"),
         r.get("peak_where") or "", gb(r, "reserved_peak_bytes")]
        for r in _measured(rows)
    ]  # fmt: skip
    return _table(["scenario", "method", "peak GB", "peak GiB", "FP8 base GB", "adapters GB", "other weights GB",
                   "activations GB", "LoRA temp GB", "activation peak at", "reserved GB (CUDA)"], body)  # fmt: skip


def _roofline(rows: list[dict]) -> str:
    rows = _measured(rows)
    devices = list(dict.fromkeys(r["projected_device"] for r in rows))
    keys = list(dict.fromkeys((r["shape"], r["m"], r["method"]) for r in rows))
    cell = {(r["shape"], r["m"], r["method"], r["projected_device"]): r for r in rows}
    body = []
    for shape, m, method in keys:
        line = [shape, m, method.replace(" (projection)", "")]
        measured = []
        for d in devices:
            r = cell.get((shape, m, method, d))
            line.append("n/a" if r is None else f"{r['value']:.3g} ms ({r.get('ratio', 1.0):.3f}x)")
            if r is not None and "measured_ms" in r:
                measured.append(f"{r['measured_device']}: {r['measured_ms']:.3g} ms")
        line.append("; ".join(measured) or "-")
        body.append(line)
    return _table(["shape", "M", "method", *[f"{d} projected (x base)" for d in devices], "measured (this run)"], body)


def _fp8_error(rows: list[dict]) -> str:
    rows = _measured(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    cell = {(r["case"], r["method"]): r["value"] for r in rows}
    body = [[c, *[f"{cell[(c, m)]:.1%}" if (c, m) in cell else "-" for m in methods]] for c in cases]
    return _table(["case", *methods], body)


def _audit(rows: list[dict]) -> str:
    body = [[r["kernel"], r["arch"], r["shape"], r["dtype"], r["mma_kind"], r["mma"], r["spills"], r["regs"], r["smem"],
             r["smem_limit"], r["ok"]] for r in _measured(rows)]  # fmt: skip
    return _table(["kernel", "arch", "shape", "dtype", "MMA", "MMA count", "spills", "regs", "smem", "smem limit", "ok"], body)


_TABLES: dict[str, Callable[[list[dict]], str]] = {
    "memory": _memory, "roofline": _roofline, "fp8_lora_error": _fp8_error, "kernel_audit": _audit,
}  # fmt: skip


def _source_line(rows: list[dict]) -> str:
    r = rows[0]
    if r["benchmark"] == "roofline":
        return "Projection from datasheet peaks (see roofline.py); nothing here was run on those GPUs."
    if r["benchmark"] == "kernel_audit":
        return f"Compiled ahead of time on this machine ({r.get('audit', '')} audit); proves MMA kind, spills and smem, not speed."
    if r["benchmark"] == "memory":
        kinds = sorted({m["method"] for m in _measured(rows)})
        return ("Computed from the meta-device model (attach + two LoRAs by vidlora itself) plus a traced activation peak"
                f"; methods here: {', '.join(kinds)}. GB = 10^9 bytes.")  # fmt: skip
    if r["device_type"] == "cuda":
        return f"Measured on {r['device']} (CUDA)."
    line = f"Measured on {_device_label(_measured(rows) or rows)} (CPU"
    paths = sorted({m["path"] for m in _measured(rows) if m.get("path")})
    if paths:
        line += "; " + "; ".join(paths)
    elif r["benchmark"] == "kernel_bench":
        line += "; torch paths only: vidlora's CPU path is the torch reference, not the Triton kernels"
    subjects = sorted({", ".join(str(m[k]) for k in ("model", "scenario", "lora", "dtype") if m.get(k))
                       for m in _measured(rows) if m.get("model") or m.get("scenario")})  # fmt: skip
    if subjects:
        line += "; subject: " + " / ".join(subjects)
    estimators = sorted({m["estimator"] for m in _measured(rows) if m.get("estimator")})
    if estimators:
        line += "; value = " + ", ".join(estimators) + " (interference on a shared VM only adds time)"
    return line + ")."


# ------------------------------------------------------------------------------ plots


def _bars(ax, groups: dict[str, dict[str, float]], xlabel: str, log: bool) -> None:
    """Horizontal grouped bars: one group per key of ``groups``, one bar per method."""
    methods = list(dict.fromkeys(m for g in groups.values() for m in g))
    height = 0.8 / max(1, len(methods))
    values = [v for g in groups.values() for v in g.values() if v > 0]
    for j, method in enumerate(methods):
        ys = [i + j * height for i in range(len(groups))]
        xs = [g.get(method, 0.0) for g in groups.values()]
        bars = ax.barh(ys, xs, height=height, label=method)
        ax.bar_label(bars, labels=[f"{x:.3g}" if x else "" for x in xs], fontsize=6, padding=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(groups))], list(groups), fontsize=8)
    ax.invert_yaxis()
    # a log axis only where the bars span more than 20x (a log axis does not start at zero)
    if log and values and max(values) > 20 * min(values):
        ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.set_xlabel(xlabel, fontsize=8)


def _plot_panels(panels: dict[str, dict[str, dict[str, float]]], title: str, xlabel: str, path: Path,
                 log: bool = False, legend: bool = True) -> Path:  # fmt: skip
    """One subplot per panel (two per row when several), a shared legend below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // cols)
    bars = max(len(g) * max(1, len(set(m for v in g.values() for m in v))) for g in panels.values())
    fig, axes = plt.subplots(rows, cols, figsize=(11, 1.2 + rows * (0.5 + 0.18 * bars)), squeeze=False)
    for ax, (name, groups) in zip(axes.flat, panels.items()):
        _bars(ax, groups, xlabel, log)
        if name:
            ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    bottom = 0.0
    if legend:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
        bottom = 0.06 + 0.02 * (len(labels) // 4)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _labelled(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """One bar per label (the label on the axis, not in a legend)."""
    return {label: {"value": v} for label, v in values.items()}


def _device_label(rows: list[dict]) -> str:
    """The device, and the threads the timing used when a benchmark pinned its own count
    (the device string gives the suite's: "cpu: x86_64 (2 threads)"; one timed on a
    single thread then reads "cpu: x86_64 (2 threads), timed on 1 thread")."""
    device = rows[0]["device"]
    used = sorted({r["threads"] for r in rows if isinstance(r.get("threads"), int)})
    if rows[0].get("device_type") != "cpu" or not used:
        return device
    n = used[0] if len(used) == 1 else None
    counts = f"{n} thread{'' if n == 1 else 's'}" if n else "/".join(map(str, used)) + " threads"
    return device if f"({counts})" in device else f"{device}, timed on {counts}"


def _plot(benchmark: str, rows: list[dict], path: Path) -> Path | None:
    rows = _measured(rows)
    if not rows:
        return None
    title = f"{_TITLES.get(benchmark, benchmark)}: {_device_label(rows)}"
    timing = "ms, " + ("median" if rows[0]["device_type"] == "cuda" else "fastest of the runs") + "; lower is better"
    if benchmark in ("swap", "forward"):
        panels: dict[str, dict[str, float]] = {}
        for r in rows:
            if r["metric"] == "ms":
                panels.setdefault(r["case"], {})[r["method"]] = r["value"]
        return _plot_panels({case: _labelled(v) for case, v in panels.items()}, title, timing, path,
                            log=benchmark == "swap", legend=False)  # fmt: skip
    groups: dict[str, dict[str, float]] = {}
    if benchmark in ("kernel_bench", "fp8_kernel_bench"):
        for r in rows:
            if r["metric"] == "ms":
                groups.setdefault(r["case"], {})[r["method"]] = r.get("ratio", 1.0)
        return _plot_panels({"": groups}, title, "time / base (same run)", path)
    if benchmark == "roofline":
        rpanels: dict[str, dict[str, dict[str, float]]] = {}
        big = max(r["m"] for r in rows)
        for r in rows:
            if r["m"] == big:
                panel = rpanels.setdefault(f"{r['projected_device']}, M = {big:,}", {})
                panel.setdefault(r["shape"], {})[r["method"].replace(" (projection)", "")] = r.get("ratio", 1.0)
        return _plot_panels(rpanels, _TITLES["roofline"], "projected time / base GEMM", path)
    if benchmark == "memory":
        values = {f"{r['case']} ({r['method']})": r["value"] / 1e9 for r in rows}
        return _plot_panels({"": _labelled(values)}, title, "peak GB (10^9 bytes)", path, legend=False)
    if benchmark == "fp8_lora_error":
        for r in rows:
            groups.setdefault(r["case"], {})[r["method"]] = r["value"]
        return _plot_panels({"": groups}, title, "relative error of the LoRA effect (log)", path, log=True)
    return None


# ----------------------------------------------------------------------------- report


def _slug(device: str) -> str:
    """File-name form of a device name: "cpu: x86_64 (2 threads)" -> "cpu-x86-64"."""
    text = re.sub(r"\(\d+ threads?\)", "", device)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "unknown"


def _goal_value(g: dict[str, Any]) -> str:
    v = g["ratio"] if g.get("goal_key", "ratio") == "ratio" else g["value"]
    return f"{v / 1e9:.2f} GB" if g.get("goal_key") == "value" and g["unit"] == "bytes" else _num(v)


def _goal_target(g: dict[str, Any]) -> str:
    t = g["threshold"]
    shown = f"{t / 1e9:g} GB" if g.get("goal_key") == "value" and g["unit"] == "bytes" else _num(t)
    return f"{g['direction']} {shown}"


def render_markdown(rows: list[dict[str, Any]], plots: dict[str, str], plot_note: str, rows_file: str = "") -> str:
    """The report text; ``plots`` maps benchmark name -> PNG file name (relative)."""
    # the device string most rows carry (a benchmark that pins one thread says so in its own rows)
    device = Counter(r["device"] for r in rows).most_common(1)[0][0]
    first = next((r for r in rows if r["device"] == device), rows[0])
    lines = [
        "# vidlora benchmark report",
        "",
        f"Run `{first['run_id']}` on **{first['device']}**, {first['date']}; vidlora {first['vidlora']}, "
        f"torch {first['torch']}, triton {first['triton']}, commit `{first['git_commit']}`.",
    ]
    if rows_file:
        lines.append(f"Rows: `{rows_file}` (one JSON object per line).")
    if first["device_type"] != "cuda":
        lines.append("")
        lines.append("**CPU run: no GPU number in this report.** The GPU benchmarks need a CUDA device "
                     "(benchmarks/README.md has the command).")  # fmt: skip
    goals = [r for r in rows if r.get("kind") == "goal"]
    if goals:
        lines += ["", "## Goals", ""]
        body = []
        for g in goals:
            against = f"{g['baseline']} = {_num(g['baseline_value'])} {g['unit']}" if g.get("goal_key", "ratio") == "ratio" else "-"
            body.append([g["goal"], f"{g['benchmark']}: {g['case']}", g["method"], _goal_value(g), against,
                         _goal_target(g), f"**{_verdict(g)}**", g.get("note", "")])  # fmt: skip
        lines.append(_table(["goal", "where", "measured", "ratio / value", "baseline (same run)", "target", "verdict",
                             "note"], body))  # fmt: skip
    errors = [r for r in rows if r.get("kind") == "error"]
    if errors:
        lines += ["", "## Benchmarks that failed", ""]
        lines += [f"- **{r['benchmark']}**: {r['error']}" for r in errors]
    skipped = [r for r in rows if r.get("kind") == "skipped"]
    if skipped:
        lines += ["", "## Not run", ""]
        lines += [f"- **{r['benchmark']}** {r['case'] if r['case'] != '-' else ''}: {r['reason']}" for r in skipped]
    for benchmark in dict.fromkeys(r["benchmark"] for r in rows if r.get("kind") != "error"):
        mine = [r for r in rows if r["benchmark"] == benchmark]
        if not _measured(mine):
            continue
        lines += ["", f"## {benchmark}: {_TITLES.get(benchmark, '')}", "", _source_line(mine), ""]
        lines.append(_TABLES.get(benchmark, _generic)(mine))
        if benchmark in plots:
            lines += ["", f"![{benchmark}]({plots[benchmark]})"]
    if plot_note:
        lines += ["", plot_note]
    return "\n".join(lines) + "\n"


def _verdict(g: dict[str, Any]) -> str:
    """ "met" / "not met" / "not decidable" (rows written before verdicts existed: from met)."""
    return g.get("verdict") or ("met" if g["met"] else "not met")


def _summary(rows: list[dict]) -> str:
    goals = [r for r in rows if r.get("kind") == "goal"]
    counts = Counter(_verdict(g) for g in goals)
    out = [f"{len(_measured(rows))} rows, {len(goals)} goals ({counts['met']} met, {counts['not met']} not met"
           + (f", {counts['not decidable']} not decidable" if counts["not decidable"] else "") + ")"]  # fmt: skip
    label = {"met": "met          ", "not met": "NOT met      ", "not decidable": "not decidable"}
    for g in goals:
        note = f"; {g['note']}" if _verdict(g) == "not decidable" and g.get("note") else ""
        out.append(f"  {label[_verdict(g)]}  {g['goal']}: {_goal_value(g)} ({_goal_target(g)}{note})")
    return "\n".join(out)


def write_report(rows: list[dict[str, Any]], out_dir: Path, run_id: str, rows_file: str = "") -> Written:
    """Write the markdown report and one PNG per benchmark (when matplotlib is present)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written(summary=_summary(rows))
    if not rows:
        written.note = "no rows: nothing to report"
        return written
    device = Counter(r["device"] for r in rows).most_common(1)[0][0]
    stem = f"REPORT-{_slug(device)}-{run_id}"
    plots: dict[str, str] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
    except ImportError:
        written.note = "plots skipped: matplotlib is not installed (pip install 'vidlora[bench]')"
    else:
        for benchmark in dict.fromkeys(r["benchmark"] for r in rows):
            path = _plot(benchmark, [r for r in rows if r["benchmark"] == benchmark], out_dir / f"{stem}-{benchmark}.png")
            if path is not None:
                plots[benchmark] = path.name
                written.files.append(path)
    md = out_dir / f"{stem}.md"
    with md.open("x") as f:
        f.write(render_markdown(rows, plots, written.note, rows_file or f"suite-*-{run_id}.jsonl"))
    written.files.insert(0, md)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidlora.benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument("rows", type=Path, help="a suite-*.jsonl file")
    parser.add_argument("--out", type=Path, default=None, help="folder for the report (default: beside the rows)")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"{args.rows}: no rows", file=sys.stderr)
        return 2
    written = write_report(rows, args.out or args.rows.parent, rows[0]["run_id"] + "-rerender", args.rows.name)
    for path in written.files:
        print(path)
    print(written.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
