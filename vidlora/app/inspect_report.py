"""The report behind ``vidlora inspect FILE [--model ID_OR_DIR] [--json]``.

:func:`build_report` turns a LoRAFile (and optionally a model inventory, built from a
config on the meta device: no weights) into a JSON-serialisable dict: scheme, family and
variant with the evidence used, ranks, alpha and effective scale, module counts by kind,
trigger words, size, dtype, training metadata, and with a model what would be patched
and what would not match, and why. :func:`render_report` renders that dict as readable
rich tables, to text.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from vidlora.common.text import format_bytes, index_ranges
from vidlora.errors import VidloraError
from vidlora.lora import LoRAFile, match_lora
from vidlora.lora.metadata import training_summary
from vidlora.model import (
    MODULE_KINDS,
    Inventory,
    block_linear_paths,
    describe,
    family_label,
    inventory,
    meta_transformer,
    module_kind,
    spec_for_arch,
)

from .model_configs import transformer_config_from

__all__ = ["build_report", "render_report", "model_inventory"]

_LISTED = 10  # skipped / ignored entries listed by name in the text table


def model_inventory(model_id_or_dir: str) -> Inventory:
    """The inventory of a model from its transformer config alone (meta device)."""
    return inventory(meta_transformer(transformer_config_from(model_id_or_dir)))


def _one_or_list(values: list) -> Any:
    values = sorted(set(values))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _block_of(lora: LoRAFile, path: str) -> tuple[str, int] | None:
    """(block group, index) of a path inside a block ``blocks=`` counts, else None."""
    split = spec_for_arch(lora.arch).split_block(path)
    return (split[0].path, split[1]) if split is not None and split[0].counted else None


def _family_evidence(lora: LoRAFile) -> str:
    for path, low in lora.modules.items():
        if _block_of(lora, path) and low.in_features == lora.width:
            key = next((k for k in low.source_keys if not k.endswith(".alpha")), "")
            source = f" ({key})" if key else ""
            return f"in_features {lora.width} of {path}{source}"
    return f"hidden width {lora.width}" if lora.width else "no tensor fixes the hidden width"


def _content(lora: LoRAFile) -> dict[str, Any]:
    """What one LoRA (or one expert part) holds."""

    delta_kinds = Counter(module_kind(lora.arch, p) for p in lora.deltas)
    blocks: dict[str, set[int]] = {}
    for path in list(lora.modules) + list(lora.deltas):
        where = _block_of(lora, path)
        if where:
            blocks.setdefault(where[0], set()).add(where[1])
    return {
        "scheme": lora.scheme,
        "family": lora.family,
        "family_label": family_label(lora.family),
        "width": lora.width,
        "family_evidence": _family_evidence(lora),
        "variant": {
            "task": lora.variant.task,
            "version": lora.variant.version,
            "expert": lora.variant.expert,
            "evidence": list(lora.variant.evidence),
        },
        "rank": lora.rank,
        "alpha": lora.alpha,
        "effective_scale": _one_or_list([round(m.scale, 8) for m in lora.modules.values()]),
        "modules": {"total": len(lora.modules), "by_kind": lora.module_counts},
        "deltas": {
            "total": len(lora.deltas),
            "by_kind": {k: delta_kinds.get(k, 0) for k in MODULE_KINDS},
            "params": sorted(lora.deltas)[:_LISTED],
        },
        "blocks": {kind: index_ranges(ids) for kind, ids in blocks.items()},
        "ignored": [[k, why] for k, why in lora.ignored],
    }


def _compatibility(lora: LoRAFile, inv: Inventory) -> dict[str, Any]:
    out: dict[str, Any] = {"model": describe(inv), "task": inv.task, "version": inv.version}
    try:
        report = match_lora(lora, inv, strict=False)
    except VidloraError as exc:
        out.update(ok=False, error=str(exc))
        return out
    patched = set(block_linear_paths(inv))
    block_linears = [p for p in report.linears if p in patched]
    dense_on_block = [p for p in report.deltas if p.endswith(".weight") and p[: -len(".weight")] in patched]
    out.update(
        ok=not any(why == "maps to nothing in the model" for _, why in report.skipped),
        error=None,
        patched_block_linears=len(block_linears),
        other_linears=len(report.linears) - len(block_linears),
        deltas=len(report.deltas),
        dense_weight_deltas_on_block_linears=len(dense_on_block),
        skipped=[[name, why] for name, why in report.skipped],
        warnings=list(report.warnings),
    )
    return out


def build_report(lora: LoRAFile, inv: Inventory | None = None) -> dict[str, Any]:
    """A JSON-serialisable description of ``lora``; with ``inv``, its fit to that model."""
    report: dict[str, Any] = {
        "file": lora.path,
        "name": lora.name,
        "size_bytes": lora.size_bytes,
        "sha256": lora.sha256,
        "dtype": None if lora.dtype is None else str(lora.dtype).replace("torch.", ""),
        "arch": lora.arch,
        **_content(lora),
        "trigger_words": list(lora.trigger_words),
        "training": _training(lora),
    }
    if lora.experts:
        report["experts"] = {name: _content(part) for name, part in sorted(lora.experts.items())}
    if inv is not None:
        if lora.experts:
            report["compatibility"] = {
                name: _compatibility(part, inv) for name, part in sorted(lora.experts.items())
            }
        else:
            report["compatibility"] = _compatibility(lora, inv)
    return report


def _training(lora: LoRAFile) -> dict[str, str]:
    return training_summary(lora.metadata)


# ------------------------------------------------------------------ rendering
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "-"
    return str(value)


def _content_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    v = c["variant"]
    variant = ", ".join(f"{k} {v[k]}" for k in ("task", "version", "expert") if v[k]) or "not stated by the file"
    kinds = ", ".join(f"{k} {n}" for k, n in c["modules"]["by_kind"].items() if n) or "none"
    dkinds = ", ".join(f"{k} {n}" for k, n in c["deltas"]["by_kind"].items() if n) or "none"
    rows = [
        ("scheme", c["scheme"]),
        ("family", f"{c['family'] if '(' in c['family'] else c['family_label'] + ' (' + c['family'] + ')'}; "
                   f"{c['family_evidence']}"),
        ("variant", variant),
        *[("  evidence", e) for e in v["evidence"]],
        ("rank", _fmt(c["rank"])),
        ("alpha", _fmt(c["alpha"])),
        ("effective scale", _fmt(c["effective_scale"])),
        ("LoRA modules", f"{c['modules']['total']}: {kinds}"),
        ("full-tensor deltas", f"{c['deltas']['total']}: {dkinds}"),
        ("blocks", "; ".join(f"{k} {r}" for k, r in c["blocks"].items()) or "-"),
    ]
    for key, why in c["ignored"][:_LISTED]:
        rows.append(("ignored", f"{key}: {why}"))
    if len(c["ignored"]) > _LISTED:
        rows.append(("ignored", f"... and {len(c['ignored']) - _LISTED} more"))
    return rows


def _compat_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("model", f"{c['model']}" + (f", {c['task']}" if c.get("task") else "") + (f", Wan {c['version']}" if c.get("version") else ""))]
    if c["error"]:
        return rows + [("result", "does not fit"), ("why", c["error"])]
    rows += [
        ("result", "fits" if c["ok"] else "fits partly (strict loading would refuse it)"),
        ("patched block Linears", str(c["patched_block_linears"])),
        ("other Linears", str(c["other_linears"])),
        ("full-tensor deltas", str(c["deltas"])),
    ]
    if c["dense_weight_deltas_on_block_linears"]:
        rows.append(("dense weight deltas", f"{c['dense_weight_deltas_on_block_linears']} on block Linears (LoHa/LoKr/diff)"))
    by_reason: dict[str, list[str]] = {}
    for name, why in c["skipped"]:
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        more = f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
        rows.append(("skipped", f"{len(names)}: {why}: {', '.join(names[:_LISTED])}{more}"))
    rows += [("warning", w) for w in c["warnings"]]
    return rows


def render_report(report: dict[str, Any]) -> str:
    """The report as rich tables, rendered to plain text."""
    from rich.console import Console
    from rich.table import Table

    def table(title: str, rows: list[tuple[str, str]]) -> Table:
        t = Table(title=title, show_header=False, title_justify="left", expand=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column(overflow="fold")
        for key, value in rows:
            t.add_row(key, value)
        return t

    head = [
        ("file", report["file"]),
        ("size", f"{format_bytes(report['size_bytes'])} ({report['size_bytes']} bytes)"),
        ("dtype", _fmt(report["dtype"])),
        ("sha256", _fmt(report["sha256"])),
        ("trigger words", _fmt(report["trigger_words"]) if report["trigger_words"] else "none in the metadata"),
    ]
    tables = [table(f"LoRA {report['name']}", head + _content_rows(report))]
    for name, part in report.get("experts", {}).items():
        tables.append(table(f"expert: {name} noise", _content_rows(part)))
    if report["training"]:
        tables.append(table("training metadata", list(report["training"].items())))
    compat = report.get("compatibility")
    if compat is not None:
        parts = compat.items() if "model" not in compat else [("", compat)]
        for name, c in parts:
            tables.append(table("compatibility" + (f" ({name} noise part)" if name else ""), _compat_rows(c)))
    buf = io.StringIO()
    console = Console(file=buf, width=110, color_system=None, force_terminal=False, soft_wrap=False)
    for t in tables:
        console.print(t)
    return buf.getvalue()
