"""Scheme H6: OneTrainer's HunyuanVideo LoRAs, in both of its layouts.

* legacy: ``lora_transformer_transformer_blocks_0_attn_to_q.lora_down.weight`` + alpha:
  diffusers module paths with dots replaced, looked up (never guessed) in a table.
* split-index: ``transformer.double_blocks.0.img_attn.qkv.1.lora_down.weight``: each index
  is its own LoRA over one row slice of the fused module (qkv .0/.1/.2 = q/k/v; linear1
  .0-.3 = q/k/v/MLP), so each maps to exactly one diffusers piece.
"""

from __future__ import annotations

import re

from .hunyuan_names import translate_diffusers_underscored, translate_original
from .key_parts import split_role, strip_prefix
from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile

__all__ = ["READER"]

_LEGACY = "lora_transformer_"
_SPLIT_INDEX = re.compile(r"(\.|_)(qkv|linear1)\.\d$")


def _is_split_index(key: str) -> bool:
    split = split_role(key)
    return split is not None and bool(_SPLIT_INDEX.search(split[0]))


def _claims(keys: list[str]) -> bool:
    return any(k.startswith(_LEGACY) for k in keys) or any(_is_split_index(k) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    if any(k.startswith(_LEGACY) for k in keys):
        parsed, ignored = parse_keys(
            raw, keys, lambda name: name[len(_LEGACY) :] if name.startswith(_LEGACY) else None
        )
        return build(
            raw, "H6 (OneTrainer legacy lora_transformer_ names)", "hunyuan-video", parsed,
            translate_diffusers_underscored, ignored,
        )
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    return build(
        raw, "H6 (OneTrainer split-index Hunyuan names)", "hunyuan-video", parsed,
        lambda m: translate_original(m, split_index=True), ignored,
    )


READER = Reader("OneTrainer Hunyuan (H6)", _claims, _read)
