"""Schemes H2 and H3: kohya-style underscored Tencent HunyuanVideo names.

H2  ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` + ``.alpha`` (musubi-tuner
    networks/lora.py). Unlike ComfyUI's native loader, ``img_mlp_fc1``/``fc2`` are mapped
    (ComfyUI looks for ``img_mlp_0`` and silently drops the MLP).
H3  ``Hunyuan_video_I2V_lora_double_blocks_0_img_attn_qkv.lora_down.weight``: Tencent's
    official HunyuanVideo-I2V LoRA training; the prefix itself says I2V.
"""

from __future__ import annotations

from .hunyuan_names import translate_underscored
from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile

__all__ = ["READER"]

_I2V_PREFIX = "Hunyuan_video_I2V_lora_"
_ROOTS = ("double_blocks_", "single_blocks_", "final_layer", "img_in", "txt_in", "time_in", "vector_in", "guidance_in")


def _strip(name: str) -> str | None:
    for prefix in (_I2V_PREFIX, "lora_unet_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def _claims(keys: list[str]) -> bool:
    return any(k.startswith(_I2V_PREFIX) or k.startswith("lora_unet_") and k[10:].startswith(_ROOTS) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, _strip)
    i2v = any(k.startswith(_I2V_PREFIX) for k in keys)
    scheme = "H3 (Tencent HunyuanVideo-I2V LoRA names)" if i2v else "H2 (kohya/musubi lora_unet_ Hunyuan names)"
    result = build(raw, scheme, "hunyuan-video", parsed, translate_underscored, ignored)
    if i2v:
        result.signals.append(("task", "i2v", f"key prefix {_I2V_PREFIX} (Tencent HunyuanVideo-I2V training)"))
    return result


READER = Reader("kohya Hunyuan names (H2/H3)", _claims, _read)
