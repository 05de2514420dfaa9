"""Scheme W7: ai-toolkit's old LyCORIS format for Wan (``use_old_lokr_format``).

``lycoris_blocks_0_self_attn_q.lokr_w1`` + ``.alpha``: underscored, half-converted names
(original block prefix, sometimes diffusers inner names such as ``ffn_net_0_proj`` or
``self_attn_to_out_0``). LoKr / LoHa / LoRA tensors are all read; LoKr and LoHa become
exact dense deltas.
"""

from __future__ import annotations

from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile
from .wan_names import translate_underscored

__all__ = ["READER"]

_PREFIX = "lycoris_"


def _strip(name: str) -> str | None:
    return name[len(_PREFIX) :] if name.startswith(_PREFIX) else None


def _claims(keys: list[str]) -> bool:
    return any(k.startswith(_PREFIX + "blocks_") for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, _strip)
    return build(
        raw, "W7 (ai-toolkit old LyCORIS lycoris_ names)", "wan", parsed,
        lambda m: translate_underscored(m, mixed=True), ignored,
    )


READER = Reader("ai-toolkit old LyCORIS Wan names (W7)", _claims, _read)
