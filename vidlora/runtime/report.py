"""``Adapters.report()``: what is patched and loaded, as a plain dict that prints as text."""

from __future__ import annotations

from vidlora.common.text import format_bytes, index_ranges
from vidlora.model import describe

from .patching import PatchedModel

__all__ = ["Report", "model_summary"]


class Report(dict):
    """``Adapters.report()``: a plain dict (JSON-serialisable) that prints as text."""

    def __str__(self) -> str:
        lines = []
        for key, m in self["models"].items():
            fp8 = f" ({', '.join(m['fp8'])})" if m.get("fp8") else ""
            lines.append(
                f"{key}: {m['family']}, {m['patched_linears']} Linears in {m['patched_units']} units "
                f"({m['fused_units']} fused), base {m['base_dtype']}{fp8} {format_bytes(m['base_bytes'])}, "
                f"adapter stacks {format_bytes(m['adapter_bytes'])}"
            )
        for a in self["adapters"]:
            state = "" if a["enabled"] else ", disabled"
            blocks = a["blocks"] if a["blocks"] == "all" else index_ranges(a["blocks"])
            lines.append(
                f"  {a['name']}: weight {a['weight']}{state}, {a['linears']} Linears + {a['deltas']} tensors, "
                f"blocks {blocks}, on {'+'.join(a['models'])}, {format_bytes(a['bytes'])}"
            )
            if a["expert"]:
                lines.append(f"    {a['expert']}")
            for w in a["warnings"]:
                lines.append(f"    warning: {w}")
            if a["skipped"]:
                more = " ..." if len(a["skipped"]) > 3 else ""
                lines.append(f"    skipped {len(a['skipped'])}: " + "; ".join(a["skipped"][:3]) + more)
        if not self["adapters"]:
            lines.append("  no adapters")
        for c in self.get("kernel_paths", []):
            timing = c.get("timings_ms", {}).get(c.get("chosen"))
            took = f" {timing:.3f} ms" if isinstance(timing, (int, float)) else ""
            excluded = f", {len(c['excluded'])} excluded" if c.get("excluded") else ""
            lines.append(f"  kernel {c.get('op')} N={c.get('n')} K={c.get('k')} M~{c.get('m_bucket')} "
                         f"R~{c.get('r_bucket')}: {c.get('chosen')}{took} ({c.get('source')}{excluded})")  # fmt: skip
        return "\n".join(lines)


def model_summary(pm: PatchedModel) -> dict:
    """One transformer's part of the report: units, base storage, stack bytes."""
    units = list(pm.units.values())
    dtypes = sorted({str(u.weight.dtype).replace("torch.", "") for u in units})
    return {
        "family": describe(pm.inv),
        "patched_units": len(units),
        "patched_linears": len(pm.part_unit),
        "fused_units": sum(1 for u in units if len(u.parts) > 1),
        "base_dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "base_bytes": sum(u.base_nbytes() for u in units),
        "fp8": sorted({u.fp8_mode for u in units if u.fp8_mode}) or None,
        "adapter_bytes": sum(
            (u.lora_a.numel() + u.lora_b.numel()) * u.lora_a.element_size() + u.lora_scale.numel() * 4 for u in units
        ),
    }
