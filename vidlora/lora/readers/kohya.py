"""Underscored module names (kohya-style trainers), for every registered family.

    W3   lora_unet_blocks_0_self_attn_q.lora_down.weight + .alpha     musubi-tuner (Wan)
    W3b  lora_unet__blocks_0_...                                       VideoX-Fun (Wan)
    W7   lycoris_blocks_0_self_attn_q.lokr_w1                           ai-toolkit old LyCORIS format
    H2   lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight        musubi-tuner (HunyuanVideo)
    H3   Hunyuan_video_I2V_lora_double_blocks_0_...                     Tencent HunyuanVideo-I2V training
    H6   lora_transformer_transformer_blocks_0_attn_to_q.lora_down...   OneTrainer legacy: diffusers names

The family is the one whose name table has the most module names (``best_families``); its
table translates them (underscores are looked up, never guessed back into dots). Unlike
ComfyUI's native loader, musubi's Hunyuan ``img_mlp_fc1`` / ``fc2`` are mapped (ComfyUI
looks for ``img_mlp_0`` and silently drops the MLP). musubi always writes alpha, often
1.0: a rank-32 file then scales by 1/32.
"""

from __future__ import annotations

from ..safetensors_file import RawFile
from .base import Reader, ReadResult, best_families, build, parse_keys

__all__ = ["READER"]

_I2V = "Hunyuan_video_I2V_lora_"
# key prefix -> the reader kind a scheme label is asked for (most specific first)
_ORIGINAL_PREFIXES = ((_I2V, "kohya-i2v"), ("lora_unet__", "kohya-double"), ("lora_unet_", "kohya"),
                      ("lycoris_", "lycoris-old"))  # fmt: skip
_DIFFUSERS_PREFIX = "lora_transformer_"


def _strip(name: str, prefixes) -> str | None:
    for prefix in prefixes:
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def _claims(keys: list[str]) -> bool:
    return any(k.startswith((_I2V, "lora_unet_", "lycoris_", _DIFFUSERS_PREFIX)) for k in keys)


def _read(raw: RawFile, keys: list[str]) -> ReadResult:
    if any(k.startswith(_DIFFUSERS_PREFIX) for k in keys):
        parsed, ignored = parse_keys(raw, keys, lambda name: _strip(name, (_DIFFUSERS_PREFIX,)))
        modules = [m for _, m, _ in parsed]
        modes = [("diffusers-underscored", lambda s: s.names.translate_diffusers_underscored)]
    else:
        style = "lycoris_" if any(k.startswith("lycoris_") for k in keys) else None
        prefixes = ("lycoris_",) if style else tuple(p for p, _ in _ORIGINAL_PREFIXES if p != "lycoris_")
        parsed, ignored = parse_keys(raw, keys, lambda name: _strip(name, prefixes))
        modules = [m for _, m, _ in parsed]
        kind = next(k for p, k in _ORIGINAL_PREFIXES if any(key.startswith(p) for key in keys))
        # underscored original names (musubi's Wan / HunyuanVideo networks), else underscored
        # diffusers names under the same prefix (musubi's FramePack network)
        modes = [(kind, lambda s: s.names.translate_underscored),
                 ("kohya-diffusers", lambda s: s.names.translate_diffusers_underscored)]  # fmt: skip
    best = None
    names = list(dict.fromkeys(modules))
    for kind, translate_for in modes:
        specs = best_families(names, lambda s, m: (translate_for(s)(m) is not None, m.startswith(s.kohya_roots)))
        known = sum(translate_for(specs[0])(m) is not None for m in names)
        if best is None or known > best[0]:
            best = (known, kind, translate_for, specs)
        if known == len(names):
            break  # every name read: a later mode cannot read more
    _, kind, translate_for, specs = best
    prefixes_seen = {next((p for p, _ in _ORIGINAL_PREFIXES if k.startswith(p)), "") for k in keys}
    result = build(raw, specs, parsed, translate_for, lambda s: s.scheme_label(kind, keys, modules, prefixes_seen),
                   ignored)  # fmt: skip
    if kind == "kohya-i2v":
        result.signals.append(("task", "i2v", f"key prefix {_I2V} (Tencent HunyuanVideo-I2V training)"))
    return result


READER = Reader("kohya-style underscored names (W3/W3b/W7/H2/H3/H6 legacy)", _claims, _read)
