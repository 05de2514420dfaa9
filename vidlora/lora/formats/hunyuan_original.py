"""Schemes H1 and H4: dotted Tencent / ComfyUI HunyuanVideo module names.

H1  ``diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight`` (older files:
    ``transformer.`` prefix; diffusion-pipe, musubi --target other);
H4  ``diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`` (ComfyUI native
    names: ``img_mlp.0``, ``img_mod.lin``, ``modulation.lin``; kijai's extractions, with
    ``diff_b``). The fused qkv / linear1 are split into diffusers pieces (A copied, B cut
    by rows) and the final adaLN's halves swapped, in assemble.py.
"""

from __future__ import annotations

from .alpha_rules import peft_config_for
from .hunyuan_names import looks_comfy, looks_original, translate_original
from .key_parts import module_of, strip_prefix
from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile

__all__ = ["READER"]


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and looks_original(m) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    comfy = any(looks_comfy(m) for _, m, _ in parsed)
    tensors = "lora_down/lora_up" if any(".lora_down." in k for k in keys) else "lora_A/lora_B"
    scheme = f"H4 (ComfyUI native Hunyuan names, {tensors})" if comfy else f"H1 (Tencent Hunyuan names, {tensors})"
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar=False)
    return build(raw, scheme, "hunyuan-video", parsed, translate_original, ignored, peft)


READER = Reader("Tencent/ComfyUI Hunyuan names (H1/H4)", _claims, _read)
