"""Scheme W6: ai-toolkit's Wan 2.2 A14B file holding both experts.

``diffusion_model.transformer_1.blocks.0.self_attn.q.lora_A.weight``: transformer_1 is
the high-noise expert, transformer_2 the low-noise one (ai-toolkit wan22_14b_model.py;
diffusers' Wan 2.2 pipeline likewise calls the high-noise model ``transformer``). Each
part is an ordinary original-names (W1) file once its sub-prefix is removed; the result carries both in
``experts`` and nothing at the top level.
"""

from __future__ import annotations

import re

from vidlora.errors import LoRAFormatError

from ..keys import strip_prefix
from ..safetensors_file import RawFile
from .base import Reader, ReadResult
from .original import READER as _ORIGINAL

__all__ = ["READER", "EXPERT_OF_PART"]

EXPERT_OF_PART = {"transformer_1": "high", "transformer_2": "low"}
_PART = re.compile(r"^(transformer_[12])\.")


def _part(key: str) -> tuple[str, str] | None:
    prefix, rest = strip_prefix(key)
    m = _PART.match(rest)
    return None if m is None else (m.group(1), prefix + rest[m.end() :])


def _claims(keys: list[str]) -> bool:
    return any(_part(k) is not None for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parts: dict[str, dict[str, str]] = {}
    stray = []
    for key in keys:
        split = _part(key)
        if split is None:
            stray.append(key)
        else:
            parts.setdefault(split[0], {})[split[1]] = key
    if stray:
        raise LoRAFormatError(
            f"{raw.path}: {len(stray)} keys outside transformer_1./transformer_2. in a two-expert file, e.g. {stray[0]!r}"
        )
    experts = {}
    for part, renamed in sorted(parts.items()):
        # The W1 reader sees the part's keys without the sub-prefix, on the same tensors.
        view = RawFile(raw.path, {new: raw.tensors[old] for new, old in renamed.items()}, raw.metadata,
                       raw.size_bytes)
        result = _ORIGINAL.read(view, list(renamed))
        # Report the file's own key names, not the renamed view's.
        for low in result.modules.values():
            low.source_keys = tuple(renamed.get(k, k) for k in low.source_keys)
        result.ignored = [(renamed.get(k, k), why) for k, why in result.ignored]
        expert = EXPERT_OF_PART[part]
        result.scheme = f"W6 part {part} ({expert} noise), " + result.scheme
        result.signals.append(("expert", expert, f"ai-toolkit sub-prefix {part}. (= {expert}-noise expert)"))
        experts[expert] = result
    widths = {r.width for r in experts.values()}
    if len(widths) != 1:
        raise LoRAFormatError(f"{raw.path}: the two experts have different hidden sizes {sorted(widths)}")
    some = next(iter(experts.values()))
    return ReadResult(
        scheme="W6 (ai-toolkit Wan 2.2 A14B, both experts in one file)",
        arch="wan",
        width=some.width,
        width_evidence=some.width_evidence,
        signals=[("version", "2.2", "two experts (transformer_1/transformer_2): Wan 2.2 A14B")],
        experts=experts,
    )


READER = Reader("ai-toolkit two-expert Wan 2.2 (W6)", _claims, _read)
