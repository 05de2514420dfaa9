"""Schemes W4, W4b (diffusers names) and H5: keys already in diffusers module paths.

W4  ``transformer.blocks.0.attn1.to_q.lora_A.weight`` (diffusers trainers, finetrainers,
    SimpleTuner); H5 ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``; either
    may come without the prefix or as a raw PEFT save (``base_model.model.``). Alpha
    lives only in ``lora_adapter_metadata`` (or adapter_config.json); biases are
    ``lora_B.bias``. Names map to themselves.
"""

from __future__ import annotations

import re

from vidlora.errors import LoRAFormatError
from .alpha_rules import peft_config_for
from .key_parts import module_of, strip_prefix
from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile
from .targets import Target
from .wan_names import looks_diffusers as looks_wan_diffusers
from .wan_names import looks_original as looks_wan_original

__all__ = ["READER"]

_HUNYUAN = re.compile(
    r"^(transformer_blocks\.\d+\.|single_transformer_blocks\.\d+\.|x_embedder\.|context_embedder\.|time_text_embed\.|norm_out\.)"
)


def _arch_of(module: str) -> str | None:
    if looks_wan_diffusers(module):
        return "wan"
    if _HUNYUAN.match(module):
        return "hunyuan-video"
    return None


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and _arch_of(m) is not None for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    original = [k for k, m, _ in parsed if looks_wan_original(m)]
    if original:
        raise LoRAFormatError(
            f"{raw.path}: mixes diffusers names with original Wan names ({len(original)} keys such as "
            f"{original[0]!r}); one file must use one naming"
        )
    archs = {a for _, m, _ in parsed if (a := _arch_of(m)) is not None}
    if len(archs) != 1:
        raise LoRAFormatError(f"{raw.path}: mixes Wan and HunyuanVideo diffusers module names")
    arch = archs.pop()
    raw_peft = any(k.startswith("base_model.model.") for k in keys)
    if arch == "wan":
        scheme = "W4b (raw PEFT save, diffusers names)" if raw_peft else "W4 (diffusers/PEFT names)"
    else:
        scheme = "H5 (diffusers/PEFT names)"
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar=raw_peft)
    return build(raw, scheme, arch, parsed, lambda m: Target((m,)), ignored, peft)


READER = Reader("diffusers names (W4/W4b/H5)", _claims, _read)
