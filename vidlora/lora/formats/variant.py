"""Which variant a file was trained for (t2v/i2v, Wan 2.1/2.2, high/low-noise expert).

Each field is set only from a signal that says so (notes §2.5, §3.1), strongest first:
the file's structure (key names, shapes), then its metadata, then its file name. The
first signal for a field wins; a later one that disagrees is kept in the evidence, so a
user sees the conflict. Absence proves nothing: Wan 2.2 I2V LoRAs have no image keys and
T2V LoRAs are routinely used on I2V models.
"""

from __future__ import annotations

import os
import re

import torch

from vidlora.lora.lora_file import Variant
from .reader_base import ReadResult, Signal

__all__ = ["detect_variant"]

_WAN_IMAGE = re.compile(r"^(blocks\.\d+\.attn2\.(add_k_proj|add_v_proj|norm_added_k)|condition_embedder\.image_embedder)")
# musubi's expert boundaries (timestep x 1000): T2V 875, I2V 900.
_BOUNDARY_TASK = {875: "t2v", 900: "i2v"}


def _structure(result: ReadResult) -> list[Signal]:
    signals: list[Signal] = list(result.signals)
    names = list(result.modules) + list(result.deltas)
    if result.arch == "wan":
        image = [n for n in names if _WAN_IMAGE.match(n)]
        if image:
            signals.append(("task", "i2v", f"{len(image)} image cross-attention entries (e.g. {image[0]}): Wan 2.1 I2V/FLF2V branch"))
        patch = result.deltas.get("patch_embedding.weight")
        if isinstance(patch, torch.Tensor) and patch.ndim == 5:
            ch = int(patch.shape[1])
            if ch == 36:
                signals.append(("task", "i2v", "patch_embedding has 36 input channels (16 noise + 16 image + 4 mask)"))
            elif ch == 48:
                signals.append(("version", "2.2", "patch_embedding has 48 input channels (Wan 2.2 TI2V-5B)"))
            elif ch == 16:
                signals.append(("task", "t2v", "patch_embedding has 16 input channels (text-to-video)"))
        if result.width == 1536:
            signals.append(("version", "2.1", "hidden width 1536: only Wan 2.1 has a 1.3B model"))
        elif result.width == 3072:
            signals.append(("version", "2.2", "hidden width 3072: Wan 2.2 TI2V-5B"))
    else:
        patch = result.deltas.get("x_embedder.proj.weight")
        if isinstance(patch, torch.Tensor) and patch.ndim == 5 and int(patch.shape[1]) == 33:
            signals.append(("task", "i2v", "x_embedder has 33 input channels (HunyuanVideo-I2V latent concat)"))
    return signals


def _from_model_name(text: str, source: str, arch: str, version: bool = True) -> list[Signal]:
    s = text.lower()
    out: list[Signal] = []
    if arch == "wan" and version:
        if re.search(r"wan[\W_]*2[\W_]*2", s):
            out.append(("version", "2.2", f"{source} = {text!r}"))
        elif re.search(r"wan[\W_]*2[\W_]*1", s):
            out.append(("version", "2.1", f"{source} = {text!r}"))
    if re.search(r"ti2v", s):
        pass  # TI2V-5B does both tasks
    elif re.search(r"(^|[\W_])i2v", s):
        out.append(("task", "i2v", f"{source} = {text!r}"))
    elif re.search(r"(^|[\W_])t2v", s):
        out.append(("task", "t2v", f"{source} = {text!r}"))
    if arch == "wan":
        for expert in ("high", "low"):
            if re.search(rf"{expert}[\W_]*noise", s):
                out.append(("expert", expert, f"{source} = {text!r}"))
    return out


def _metadata(metadata: dict[str, str], arch: str) -> list[Signal]:
    out: list[Signal] = []
    for key in ("ss_base_model_version", "ss_sd_model_name"):
        if metadata.get(key):
            out += _from_model_name(metadata[key], key, arch)
    if metadata.get("modelspec.architecture"):
        # musubi writes wan2.1/lora for Wan 2.2 too: only a 2.2 here is a version signal.
        arch_sig = _from_model_name(metadata["modelspec.architecture"], "modelspec.architecture", arch)
        out += [s for s in arch_sig if s[0] != "version" or s[1] == "2.2"]
    rng = metadata.get("modelspec.timestep_range", "")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*", rng)
    if arch == "wan" and m:
        lo, hi = float(m.group(1)), float(m.group(2))
        why = f"modelspec.timestep_range = {rng!r}"
        if hi >= 999 and int(lo) in _BOUNDARY_TASK:
            out += [("expert", "high", why), ("task", _BOUNDARY_TASK[int(lo)], why)]
        elif lo == 0 and int(hi) in _BOUNDARY_TASK:
            out += [("expert", "low", why), ("task", _BOUNDARY_TASK[int(hi)], why)]
    return out


def _file_name(path: str, family: str) -> list[Signal]:
    if family != "wan-14b":  # only Wan 2.2 A14B has experts
        return []
    stem = os.path.basename(path)
    out: list[Signal] = []
    for expert in ("high", "low"):
        if re.search(rf"{expert}[\W_]*noise|(^|[\W_]){expert}([\W_]|$)", stem.lower()):
            out.append(("expert", expert, f"file name {stem!r}"))
    return out


def detect_variant(result: ReadResult, metadata: dict[str, str], path: str, family: str) -> Variant:
    variant = Variant()
    signals = _structure(result) + _metadata(metadata, result.arch) + _file_name(path, family)
    for fld, value, why in signals:
        current = getattr(variant, fld)
        if current is None:
            setattr(variant, fld, value)
            variant.evidence.append(f"{fld} {value}: {why}")
        elif current != value:
            variant.evidence.append(f"ignored {fld} {value} (already {current}): {why}")
    if variant.expert is not None and variant.version is None:
        variant.version = "2.2"
        variant.evidence.append("version 2.2: only Wan 2.2 A14B has high/low-noise experts")
    return variant
