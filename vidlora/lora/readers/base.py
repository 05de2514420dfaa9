"""What every scheme reader shares: the Reader record, its result, key parsing, and the
choice of the family whose name table reads the most of a file's module names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from vidlora.errors import LoRAFormatError
from vidlora.model import FAMILIES, FamilySpec, Signal, Target

from ..alpha_rules import PeftConfig
from ..assemble import Assembled, assemble, group_keys, refuse_unsupported
from ..keys import is_text_encoder_key, split_role
from ..lora_file import LowRank
from ..safetensors_file import RawFile

__all__ = ["Reader", "ReadResult", "parse_keys", "build", "fail_keys", "best_families"]


@dataclass
class ReadResult:
    scheme: str
    arch: str
    modules: dict[str, LowRank] = field(default_factory=dict)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    width: int = 0
    width_evidence: str = ""
    signals: list[Signal] = field(default_factory=list)
    experts: dict[str, "ReadResult"] | None = None
    alternatives: tuple[str, ...] = ()  # other families that read every name to the same place


@dataclass(frozen=True)
class Reader:
    """One key scheme (or a family of near-identical ones): ``claims`` looks at all keys
    of a file and says whether this reader owns it; ``read`` reads it."""

    name: str
    claims: Callable[[list[str]], bool]
    read: Callable[[RawFile, list[str]], ReadResult]


def fail_keys(path: str, what: str, keys: list[str]) -> LoRAFormatError:
    shown = ", ".join(repr(k) for k in keys[:5])
    more = f" (and {len(keys) - 5} more)" if len(keys) > 5 else ""
    return LoRAFormatError(f"{path}: {len(keys)} {what}: {shown}{more}")


# Known non-LoRA payloads that sometimes ride in LoRA files: refused by name.
_FOREIGN = (
    ("_loras.", "Stand-In adapter (q_loras/k_loras/v_loras): an extra attention branch, not a weight delta"),
    ("dwpose_embedding", "UniAnimate pose embedding: full module weights, not a LoRA"),
)


def parse_keys(
    raw: RawFile, keys: list[str], module_of: Callable[[str], str | None]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(key, module, role) for every key, with ``module_of`` turning the part before the
    tensor suffix into the reader's module name (None: not this scheme's key).

    Text-encoder keys are skipped and reported; keys that are no LoRA tensor at all are
    an error listing them."""
    parsed, ignored, unknown = [], [], []
    for key in keys:
        for marker, what in _FOREIGN:
            if marker in key:
                raise LoRAFormatError(f"{raw.path}: {what} (key {key!r}) is not supported")
        if is_text_encoder_key(key):
            ignored.append((key, "text-encoder key: vidlora patches the video transformer only"))
            continue
        split = split_role(key)
        module = None if split is None else module_of(split[0])
        if module is None:
            unknown.append(key)
            continue
        parsed.append((key, module, split[1]))
    if unknown:
        raise fail_keys(raw.path, "keys are not LoRA tensors of this file's scheme", unknown)
    return parsed, ignored


def best_families(modules: list[str], score: Callable[[FamilySpec, str], object]) -> list[FamilySpec]:
    """The families whose ``score`` (a number, or a tuple compared in order) summed over the
    module names is highest, in registration order: usually one; several when their name
    tables read the file equally well (a plain Wan LoRA reads as Wan, VACE, SkyReels...).
    With no score anywhere, the first registered one (its reader then reports the names)."""

    names = list(dict.fromkeys(modules))  # a module's down, up and alpha count once

    def total(spec: FamilySpec):
        values = [score(spec, m) for m in names]
        if values and isinstance(values[0], tuple):
            return tuple(sum(v[i] for v in values) for i in range(len(values[0])))
        return sum(values)

    totals = [(total(spec), spec) for spec in FAMILIES]
    top = max(t for t, _ in totals)
    return [spec for t, spec in totals if t == top]


def build(
    raw: RawFile,
    specs: list[FamilySpec],
    parsed: list[tuple[str, str, str]],
    translate_for: Callable[[FamilySpec], Callable[[str], Target | None]],
    scheme_for: Callable[[FamilySpec], str],
    ignored: list[tuple[str, str]] | None = None,
    peft: PeftConfig | None = None,
) -> ReadResult:
    """Refuse what cannot be applied exactly, then group, assemble and wrap.

    ``specs``: the families that read the names equally well, in registration order; the
    first is taken unless its widths do not include the file's and a later one's do (a
    HunyuanVideo 1.5 file whose keys all exist in 1.0 too reads as 1.5 by its width 2048)."""
    refuse_unsupported(raw.path, parsed)
    groups = group_keys(raw.path, parsed)
    chosen: tuple[FamilySpec, Assembled] | None = None
    error: Exception | None = None
    for spec in specs:
        try:
            done = assemble(raw, groups, translate_for(spec), spec, peft)
        except LoRAFormatError as exc:
            error = error or exc
            continue
        if chosen is None:
            chosen = (spec, done)
        if done.width in spec.sizes:
            chosen = (spec, done)
            break
    if chosen is None:
        raise error
    spec, done = chosen
    # Families tied with the chosen one that translate every name the same way read the
    # file identically: at a width no released model has, the file alone cannot tell them
    # apart (a diffusers-named HunyuanVideo 1.5 LoRA on transformer_blocks only), so
    # matching accepts a model of any of them.
    alternatives: tuple[str, ...] = ()
    if done.width not in spec.sizes:  # a released width names its family for certain
        names = list(groups)
        mine = [translate_for(spec)(m) for m in names]
        alternatives = tuple(s.name for s in specs if s is not spec and [translate_for(s)(m) for m in names] == mine)
    return ReadResult(
        scheme=scheme_for(spec),
        arch=spec.name,
        alternatives=alternatives,
        modules=done.modules,
        deltas=done.deltas,
        ignored=list(ignored or []) + done.ignored,
        width=done.width,
        width_evidence=done.width_evidence,
    )
