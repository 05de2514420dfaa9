"""Schemes W3 and W3b: kohya / musubi-tuner underscored original Wan names.

W3  ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` + ``.alpha`` (musubi
    networks/lora_wan.py; also its LoHa ``hada_*`` and LoKr ``lokr_*`` files);
W3b ``lora_unet__blocks_0_...`` (VideoX-Fun, double underscore).
musubi always writes alpha, often 1.0: a rank-32 file then scales by 1/32.
"""

from __future__ import annotations

from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile
from .wan_names import translate_underscored

__all__ = ["READER"]

_HUNYUAN_ROOTS = ("double_blocks_", "single_blocks_", "final_layer", "img_in", "txt_in", "time_in", "vector_in", "guidance_in")


def _strip(name: str) -> str | None:
    for prefix in ("lora_unet__", "lora_unet_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def _claims(keys: list[str]) -> bool:
    return any(k.startswith("lora_unet_") and not (_strip(k) or "").startswith(_HUNYUAN_ROOTS) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, _strip)
    double = any(k.startswith("lora_unet__") for k in keys)
    scheme = "W3b (VideoX-Fun lora_unet__ names)" if double else "W3 (kohya/musubi lora_unet_ names)"
    algo = {role.split("_")[0] for _, _, role in parsed}
    if "hada" in algo:
        scheme += ", LoHa"
    elif "lokr" in algo:
        scheme += ", LoKr"
    # mixed: also diffusers inner names (blocks_0_attn1_to_q) from trainers that run on diffusers' Wan
    return build(raw, scheme, "wan", parsed, lambda m: translate_underscored(m, mixed=True), ignored)


READER = Reader("Wan kohya/musubi names (W3/W3b)", _claims, _read)
