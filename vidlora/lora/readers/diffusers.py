"""Keys already in diffusers module paths (W4, W4b, H5), for every registered family.

W4  ``transformer.blocks.0.attn1.to_q.lora_A.weight`` (diffusers trainers, finetrainers,
    SimpleTuner); H5 ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``; either
    may come without the prefix or as a raw PEFT save (``base_model.model.``). Alpha
    lives only in ``lora_adapter_metadata`` (or adapter_config.json); biases are
    ``lora_B.bias``. Names map to themselves.
"""

from __future__ import annotations

from vidlora.errors import LoRAFormatError
from vidlora.model import FAMILIES, Target

from ..alpha_rules import peft_config_for
from ..keys import module_of, strip_prefix
from ..safetensors_file import RawFile
from .base import Reader, ReadResult, build, parse_keys

__all__ = ["READER"]


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and any(s.looks_diffusers(m) for s in FAMILIES) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    for spec in FAMILIES:
        original = [k for k, m, _ in parsed if spec.looks_original(m)]
        if original:
            raise LoRAFormatError(
                f"{raw.path}: mixes diffusers names with original {spec.label} names ({len(original)} keys such as "
                f"{original[0]!r}); one file must use one naming"
            )
    specs = [s for s in FAMILIES if any(s.looks_diffusers(m) for _, m, _ in parsed)]
    if len(specs) != 1:
        raise LoRAFormatError(f"{raw.path}: mixes {' and '.join(s.label for s in specs)} diffusers module names")
    spec = specs[0]
    prefixes = {strip_prefix(k)[0] for k in keys}
    scheme = spec.scheme_label("diffusers", keys, [m for _, m, _ in parsed], prefixes)
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar="base_model.model." in prefixes)
    return build(raw, scheme, spec, parsed, lambda m: Target((m,)), ignored, peft)


READER = Reader("diffusers names (W4/W4b/H5)", _claims, _read)
