"""The CLI's ``--lora SOURCE[:W]``: where the source ends and the strength begins."""

from __future__ import annotations

import math
import re
from pathlib import Path

from vidlora.errors import VidloraError

__all__ = ["parse_lora_spec"]

# A strength is a float or a comma list of floats; text made only of these characters
# that still fails to parse is a typo in a strength, not part of a file name.
_STRENGTH_CHARS = re.compile(r"^[\d\s.,eE+-]+$")
_NOT_A_STRENGTH = "{tail!r} is not a strength; expected a number (0.8) or a comma list (0.9,0.8,0.7)"


def parse_lora_spec(spec: str) -> tuple[str, float | list[float]]:
    """Split the CLI's ``SOURCE[:W]`` into (source, strength).

    The text after the LAST colon is a strength only when it parses as a float or a
    comma list of floats (``0.8``, ``-0.5``, ``0.9,0.8,0.7``), so ``civitai:120096@135931``,
    ``http://host:8080/x.safetensors`` and ``C:\\loras\\x.safetensors`` stay whole.
    Without a strength the weight is 1.0. A list is a schedule over the steps.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VidloraError("empty LoRA spec; expected SOURCE or SOURCE:STRENGTH (e.g. motion.safetensors:0.8)")
    spec = spec.strip()
    head, sep, tail = spec.rpartition(":")
    if not sep:
        return spec, 1.0
    # "civitai:120096" and "https://host:8080" end in a number that is not a strength.
    if head.lower() in ("civitai", "http", "https", "hf") or re.match(r"^https?://[^/]+$", head, re.I):
        return spec, 1.0
    if not tail.strip():
        raise VidloraError(f"LoRA spec {spec!r} ends with ':' but no strength; expected SOURCE:STRENGTH")
    strength = _parse_strength(tail)
    if strength is None:
        # "x.safetensors:abc" is a typo when x.safetensors exists (and the whole text does
        # not), or when the tail looks numeric ("0.9,,0.7", "1.2.3"); else it is a name.
        head_exists = bool(head) and Path(head).expanduser().exists() and not Path(spec).expanduser().exists()
        if head_exists or (_STRENGTH_CHARS.match(tail) and any(c.isdigit() for c in tail)):
            raise VidloraError(f"LoRA spec {spec!r}: " + _NOT_A_STRENGTH.format(tail=tail))
        return spec, 1.0
    if not head:
        raise VidloraError(f"LoRA spec {spec!r} has a strength but no source before ':'")
    return head, strength


def _parse_strength(text: str) -> float | list[float] | None:
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            return None
        if not math.isfinite(value):
            raise VidloraError(f"LoRA strength {part!r} is not a finite number")
        values.append(value)
    return values[0] if len(values) == 1 else values
