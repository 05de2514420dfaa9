"""Validating a LoRA against a model: every entry must land on a parameter that exists,
with the same shape, or be reported.

Order of checks, each naming both sides: architecture and hidden width first (one clear
line for "a 14B LoRA on a 1.3B model" instead of hundreds of shape errors), then shapes
(always an error), then entries that map to nothing (an error; ``strict=False`` turns it
into one warning and records them in ``skipped``). Image cross-attention entries on a
model without an image branch are known harmless extras (lightx2v's Wan 2.2 I2V LoRAs
ship k_img/v_img keys Wan 2.2 never had): skipped and reported, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from vidlora.errors import LoRAMismatchError
from vidlora.model import FamilySpec, Inventory, describe, family_label, spec_for_arch

from .lora_file import LoRAFile, LowRank

__all__ = ["MatchReport", "match_lora"]

_SHOWN = 5


@dataclass
class MatchReport:
    linears: dict[str, LowRank] = field(default_factory=dict)  # nn.Linear path -> validated delta
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)  # parameter path -> full delta
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), on purpose
    warnings: list[str] = field(default_factory=list)


def _natural(text: str) -> list:
    # blocks.2 before blocks.10 (safetensors stores keys sorted as strings)
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _listing(items: list[str]) -> str:
    items = sorted(items, key=_natural)
    shown = "; ".join(items[:_SHOWN])
    return shown + (f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _has_image_branch(inv: Inventory) -> bool:
    spec = inv.spec
    return any(spec.is_image_branch(name) for name in inv.linears)


def _variant_warnings(lora: LoRAFile, inv: Inventory) -> list[str]:
    out = []
    v = lora.variant
    for what, theirs, ours in (("task", v.task, inv.task), ("version", v.version, inv.version)):
        if theirs and ours and theirs != ours:
            why = next((e for e in v.evidence if e.startswith(f"{what} {theirs}")), "")
            out.append(f"{lora.name}: the LoRA looks made for {what} {theirs} ({why}); the model is {what} {ours}")
    return out


def _foreign_groups(theirs: FamilySpec, spec: FamilySpec, names: list[str]) -> str:
    """"LoRA carries 16 vace_blocks entries (Wan VACE)" for unmatched names in block groups
    the LoRA's family has and the model's lacks; "" when there are none."""
    mine = {g.path for g in spec.groups}
    counts: dict[str, int] = {}
    for name in names:
        split = theirs.split_block(name.split(" (from ", 1)[0])
        if split is not None and split[0].path not in mine:
            counts[split[0].path] = counts.get(split[0].path, 0) + 1
    if not counts:
        return ""
    listed = ", ".join(f"{n} {group} entries" for group, n in counts.items())
    return f"LoRA carries {listed} ({theirs.label})"


def match_lora(lora: LoRAFile, inv: Inventory, strict: bool = True) -> MatchReport:
    """Check ``lora`` against the model ``inv`` describes; see the module docstring."""
    if lora.experts:
        raise LoRAMismatchError(
            f"{lora.name}: holds both Wan 2.2 experts ({', '.join(sorted(lora.experts))}); match each part "
            "(lora.experts['high'] / ['low']) against its own transformer"
        )
    theirs, spec = spec_for_arch(lora.arch), inv.spec
    readings = [theirs] + [spec_for_arch(a) for a in lora.alternatives]
    same = next((s for s in readings if s.lineage == spec.lineage), None)
    if same is not None:
        theirs = same
    if theirs.lineage != spec.lineage:
        raise LoRAMismatchError(
            f"{lora.name}: LoRA targets {family_label(lora.family)} (width {lora.width}, {theirs.fingerprint}); "
            f"the model is {family_label(inv.family)} ({inv.width})"
        )
    if lora.width and lora.width != inv.width:
        raise LoRAMismatchError(
            f"{lora.name}: LoRA targets {family_label(lora.family)} (in_features {lora.width}); "
            f"the model is {family_label(inv.family)} ({inv.width})"
        )
    report = MatchReport(skipped=list(lora.ignored))
    harmless_image = bool(spec.top_image or any(g.image for g in spec.groups)) and not _has_image_branch(inv)
    unmatched: list[str] = []
    bad_shapes: list[str] = []

    def unknown(name: str, source: str) -> None:
        if harmless_image and spec.is_image_branch(name):
            report.skipped.append((name, "image cross-attention entry; this model has no image branch (harmless)"))
        else:
            unmatched.append(name if not source or source == name else f"{name} (from {source})")

    for path, low in lora.modules.items():
        info = inv.linears.get(path)
        if info is None and f"{path}.weight" in inv.params:
            raise LoRAMismatchError(
                f"{lora.name}: {path} is not an nn.Linear in {describe(inv)} (its weight has shape "
                f"{inv.params[path + '.weight']}): vidlora puts LoRAs on nn.Linear modules only"
            )
        if info is None:
            unknown(path, low.source_keys[0] if low.source_keys else "")
        elif (low.in_features, low.out_features) != (info.in_features, info.out_features):
            bad_shapes.append(
                f"{path}: LoRA {low.in_features}->{low.out_features}, model {info.in_features}->{info.out_features}"
            )
        else:
            report.linears[path] = low
    for path, delta in lora.deltas.items():
        shape = inv.params.get(path)
        if shape is None:
            unknown(path, "")
        elif tuple(delta.shape) != shape:
            bad_shapes.append(f"{path}: LoRA delta {tuple(delta.shape)}, model parameter {shape}")
        else:
            report.deltas[path] = delta

    if bad_shapes:
        raise LoRAMismatchError(
            f"{lora.name}: {len(bad_shapes)} shape{' differs' if len(bad_shapes) == 1 else 's differ'} from "
            f"{describe(inv)}: {_listing(bad_shapes)}"
        )
    if unmatched:
        what = "LoRA entry maps" if len(unmatched) == 1 else "LoRA entries map"
        msg = f"{lora.name}: {len(unmatched)} {what} to nothing in {describe(inv)}: {_listing(unmatched)}"
        foreign = _foreign_groups(theirs, spec, unmatched)
        if foreign:
            msg = f"{lora.name}: {foreign}; the model is {describe(inv)} without them. " + msg[len(lora.name) + 2 :]
        if strict:
            raise LoRAMismatchError(msg + " (strict=False skips them with a warning)")
        n_used = len(report.linears) + len(report.deltas)
        report.warnings.append(f"{msg}; skipped {len(unmatched)}, applied {n_used}")
        report.skipped.extend((name, "maps to nothing in the model") for name in unmatched)
    if not report.linears and not report.deltas:
        raise LoRAMismatchError(f"{lora.name}: nothing in this LoRA applies to {describe(inv)}")
    report.warnings.extend(_variant_warnings(lora, inv))
    return report
