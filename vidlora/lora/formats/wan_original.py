"""Schemes W1, W2, W4b (original names) and W5: dotted original Wan module names.

W1  ``diffusion_model.blocks.0.self_attn.q.lora_A.weight`` (diffusion-pipe, ai-toolkit,
    musubi --target other); W2 the same with ``lora_down`` / ``lora_up`` plus ``diff`` /
    ``diff_b`` / ``diff_m`` (kijai's and LightX2V's extractions: lightx2v, CausVid,
    FusionX, Lightning); W4b ``base_model.model.blocks.0.self_attn.q.lora_A.weight`` (raw
    PEFT save, alpha in the adapter_config.json beside it); W5 bare
    ``blocks.0.self_attn.q.lora_A.default.weight`` (DiffSynth-Studio, alpha = r).
They differ only in prefixes and tensor suffixes, so one reader serves them all.
"""

from __future__ import annotations

from vidlora.errors import LoRAFormatError
from .alpha_rules import peft_config_for
from .key_parts import module_of, strip_prefix
from .reader_base import Reader, ReadResult, build, parse_keys
from .safe_read import RawFile
from .wan_names import looks_diffusers, looks_original, translate_original

__all__ = ["READER"]


def _claims(keys: list[str]) -> bool:
    return any((m := module_of(k)) is not None and looks_original(m) for k in keys)


def _scheme(keys: list[str]) -> str:
    prefixes = {strip_prefix(k)[0] for k in keys}
    if "base_model.model." in prefixes:
        return "W4b (raw PEFT save, original Wan names)"
    if any(".default." in k for k in keys) or prefixes <= {"", "pipe.dit."} and any(".lora_A." in k for k in keys):
        return "W5 (DiffSynth-Studio: bare original Wan names, PEFT lora_A/lora_B)"
    if any(".lora_down." in k for k in keys):
        return "W2 (original Wan names, kohya lora_down/lora_up)"
    if any(".lora_A." in k for k in keys):
        return "W1 (original Wan names, PEFT lora_A/lora_B)"
    return "W2 (original Wan names, full-tensor patches only)"


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    mixed = []

    def module_of(name: str) -> str:
        module = strip_prefix(name)[1]
        if looks_diffusers(module):
            mixed.append(name)
        return module

    parsed, ignored = parse_keys(raw, keys, module_of)
    if mixed:
        raise LoRAFormatError(
            f"{raw.path}: mixes original Wan names with diffusers names ({len(mixed)} keys such as {mixed[0]!r}); "
            "one file must use one naming"
        )
    scheme = _scheme(keys)
    peft = peft_config_for(raw.path, raw.metadata, allow_sidecar=scheme.startswith("W4b"))
    return build(raw, scheme, "wan", parsed, translate_original, ignored, peft)


READER = Reader("Wan original names (W1/W2/W4b/W5)", _claims, _read)
