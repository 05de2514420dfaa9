"""Dotted original module names, for every registered family.

    W1   diffusion_model.blocks.0.self_attn.q.lora_A.weight      diffusion-pipe, ai-toolkit, musubi --target other
    W2   the same with lora_down / lora_up, plus diff / diff_b / diff_m (kijai's and LightX2V's extractions)
    W4b  base_model.model.blocks.0.self_attn.q.lora_A.weight     raw PEFT save, alpha in adapter_config.json
    W5   blocks.0.self_attn.q.lora_A.default.weight              DiffSynth-Studio (alpha = r)
    H1   diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight   Tencent names (older files: transformer.)
    H4   diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight   ComfyUI native names
    H6   transformer.double_blocks.0.img_attn.qkv.1.lora_down.weight   OneTrainer split index: one LoRA per piece

They differ only in prefixes and tensor suffixes, so one reader serves them all; the
family's name table translates the names (fused originals are split in assemble.py).
"""

from __future__ import annotations

from vidlora.errors import LoRAFormatError

from vidlora.model import FAMILIES

from ..alpha_rules import peft_config_for, sidecar_allowed
from ..keys import module_of, strip_prefix
from ..safetensors_file import RawFile
from .base import Reader, ReadResult, best_families, build, parse_keys

__all__ = ["READER"]


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and any(s.looks_original(m) for s in FAMILIES) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    parsed, ignored = parse_keys(raw, keys, lambda name: strip_prefix(name)[1])
    modules = [m for _, m, _ in parsed]
    split = any(s.names.is_split_index(m) for s in FAMILIES for m in modules)

    def translate_for(spec):
        if split:
            return lambda m: spec.names.translate_original(m, split_index=True)
        return spec.names.translate_original

    # the families whose name table reads the most names (claimed-but-unknown ones next)
    specs = best_families(
        modules, lambda s, m: (translate_for(s)(m) is not None, s.looks_original(m))
    )
    spec = specs[0]
    mixed = [k for k, m, _ in parsed if spec.looks_diffusers(m)]
    if mixed:
        raise LoRAFormatError(
            f"{raw.path}: mixes original {spec.label} names with diffusers names ({len(mixed)} keys such as "
            f"{mixed[0]!r}); one file must use one naming"
        )
    prefixes = {strip_prefix(k)[0] for k in keys}
    kind = "original-split" if split else "original"
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar=sidecar_allowed(raw.path, prefixes))
    return build(raw, specs, parsed, translate_for, lambda s: s.scheme_label(kind, keys, modules, prefixes), ignored,
                 peft)  # fmt: skip


READER = Reader("original dotted names (W1/W2/W4b/W5/H1/H4/H6 split)", _claims, _read)
