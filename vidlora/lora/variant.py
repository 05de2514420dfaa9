"""Which variant a file was trained for (t2v/i2v, Wan 2.1/2.2, high/low-noise expert).

Each field is set only from a signal that says so (notes §2.5, §3.1), strongest first:
the file's structure (key names, shapes), then its metadata, then its file name. The
first signal for a field wins; a later one that disagrees is kept in the evidence, so a
user sees the conflict. Absence proves nothing: Wan 2.2 I2V LoRAs have no image keys and
T2V LoRAs are routinely used on I2V models.
"""

from __future__ import annotations

import os
import re


from vidlora.model import FamilySpec, Signal, spec_for_arch

from .lora_file import Variant
from .readers import ReadResult

__all__ = ["detect_variant"]

# musubi's expert boundaries (timestep x 1000): T2V 875, I2V 900.
_BOUNDARY_TASK = {875: "t2v", 900: "i2v"}


def _structure(result: ReadResult, spec: FamilySpec) -> list[Signal]:
    names = list(result.modules) + list(result.deltas)
    return list(result.signals) + spec.lora_signals(names, result.deltas, result.width)


def _from_model_name(text: str, source: str, spec: FamilySpec, version: bool = True) -> list[Signal]:
    # Version numbers and high/low-noise experts in model names exist only for the
    # families with experts (Wan 2.1 vs 2.2 A14B).
    versioned = bool(spec.expert_families)
    s = text.lower()
    out: list[Signal] = []
    if versioned and version:
        if re.search(r"wan[\W_]*2[\W_]*2", s):
            out.append(("version", "2.2", f"{source} = {text!r}"))
        elif re.search(r"wan[\W_]*2[\W_]*1", s):
            out.append(("version", "2.1", f"{source} = {text!r}"))
    if re.search(r"ti2v", s):
        pass  # TI2V-5B does both tasks
    elif re.search(r"(^|[\W_])i2v", s):
        out.append(("task", "i2v", f"{source} = {text!r}"))
    elif re.search(r"(^|[\W_])t2v", s):
        out.append(("task", "t2v", f"{source} = {text!r}"))
    if versioned:
        for expert in ("high", "low"):
            if re.search(rf"{expert}[\W_]*noise", s):
                out.append(("expert", expert, f"{source} = {text!r}"))
    return out


def _metadata(metadata: dict[str, str], spec: FamilySpec) -> list[Signal]:
    out: list[Signal] = []
    for key in ("ss_base_model_version", "ss_sd_model_name"):
        if metadata.get(key):
            out += _from_model_name(metadata[key], key, spec)
    if metadata.get("modelspec.architecture"):
        # musubi writes wan2.1/lora for Wan 2.2 too: only a 2.2 here is a version signal.
        arch_sig = _from_model_name(metadata["modelspec.architecture"], "modelspec.architecture", spec)
        out += [s for s in arch_sig if s[0] != "version" or s[1] == "2.2"]
    if spec.expert_families and metadata.get("vidlora.expert") in ("high", "low"):
        # written by vidlora's tools when they write one expert's part
        out.append(("expert", metadata["vidlora.expert"], f"vidlora.expert = {metadata['vidlora.expert']!r}"))
    rng = metadata.get("modelspec.timestep_range", "")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*", rng)
    if spec.expert_families and m:
        lo, hi = float(m.group(1)), float(m.group(2))
        why = f"modelspec.timestep_range = {rng!r}"
        if hi >= 999 and int(lo) in _BOUNDARY_TASK:
            out += [("expert", "high", why), ("task", _BOUNDARY_TASK[int(lo)], why)]
        elif lo == 0 and int(hi) in _BOUNDARY_TASK:
            out += [("expert", "low", why), ("task", _BOUNDARY_TASK[int(hi)], why)]
    return out


def _file_name(path: str, family: str, spec: FamilySpec) -> list[Signal]:
    if family not in spec.expert_families:  # only Wan 2.2 A14B has experts
        return []
    stem = os.path.basename(path)
    out: list[Signal] = []
    for expert in ("high", "low"):
        if re.search(rf"{expert}[\W_]*noise|(^|[\W_]){expert}([\W_]|$)", stem.lower()):
            out.append(("expert", expert, f"file name {stem!r}"))
    return out


def detect_variant(result: ReadResult, metadata: dict[str, str], path: str, family: str) -> Variant:
    variant = Variant()
    spec = spec_for_arch(result.arch)
    signals = _structure(result, spec) + _metadata(metadata, spec) + _file_name(path, family, spec)
    for fld, value, why in signals:
        current = getattr(variant, fld)
        if current is None:
            setattr(variant, fld, value)
            variant.evidence.append(f"{fld} {value}: {why}")
        elif current != value:
            variant.evidence.append(f"ignored {fld} {value} (already {current}): {why}")
    if variant.expert is not None and variant.version is None:
        variant.version = "2.2"
        variant.evidence.append("version 2.2: only Wan 2.2 A14B has high/low-noise experts")
    return variant
