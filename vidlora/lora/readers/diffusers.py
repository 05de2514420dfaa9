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

from ..alpha_rules import peft_config_for, sidecar_allowed
from ..keys import module_of, strip_prefix
from ..safetensors_file import RawFile
from .base import Reader, ReadResult, best_families, build, parse_keys

__all__ = ["READER"]


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and any(s.looks_diffusers(m) for s in FAMILIES) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    for spec in FAMILIES:
        original = [k for k, m, _ in parsed if spec.looks_original(m) and not spec.looks_diffusers(m)]
        if original:
            raise LoRAFormatError(
                f"{raw.path}: mixes diffusers names with original {spec.label} names ({len(original)} keys such as "
                f"{original[0]!r}); one file must use one naming"
            )
    modules = [m for _, m, _ in parsed]
    # the families that know the most of the names (Wan, VACE, SkyReels... share ``blocks.N``)
    specs = best_families(modules, lambda s, m: (s.names.knows_diffusers(m), s.looks_diffusers(m)))
    prefixes = {strip_prefix(k)[0] for k in keys}
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar=sidecar_allowed(raw.path, prefixes))
    return build(raw, specs, parsed, lambda s: (lambda m: Target((m,))),
                 lambda s: s.scheme_label("diffusers", keys, modules, prefixes), ignored, peft)  # fmt: skip


READER = Reader("diffusers names (W4/W4b/H5)", _claims, _read)
