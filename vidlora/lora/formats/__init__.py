"""LoRA files -> the canonical :class:`~vidlora.lora_file.LoRAFile`, and validation
against a model.

    lora = read_lora("motion.safetensors")        # any scheme W1-W7, H1-H6
    report = match_lora(lora, inventory(model))   # raises LoRAMismatchError naming both sides

Reading goes: safe file read (safetensors only, header checked first; pickles refused)
-> tensor checks (floats, finite) -> the one reader whose key signature the file holds
(detect.py) -> name translation, scales, exact splits and dense materializations
(assemble.py) -> family, variant with evidence, trigger words.
"""

from __future__ import annotations

import os
from collections import Counter

import torch

from vidlora.errors import LoRAFormatError, VidloraError
from vidlora.model.families import MODULE_KINDS, family_for_width, module_kind
from vidlora.lora.lora_file import LoRAFile
from .detect import pick_reader
from .key_parts import FLOAT_ROLES, is_text_encoder_key, split_role
from .metadata import trigger_words
from .reader_base import ReadResult
from .safe_read import RawFile, read_safetensors
from .validate import MatchReport, match_lora
from .variant import detect_variant

__all__ = ["read_lora", "match_lora", "MatchReport", "module_counts"]


def module_counts(lora: LoRAFile) -> dict[str, int]:
    """Low-rank modules per kind (self-attn, cross-attn, image cross-attn, ffn, other);
    a file with both Wan 2.2 experts counts both parts."""
    parts = list(lora.experts.values()) if lora.experts else [lora]
    counts = Counter(module_kind(part.arch, path) for part in parts for path in part.modules)
    return {kind: counts.get(kind, 0) for kind in MODULE_KINDS}


def _resolve_source(source: str | os.PathLike) -> tuple[str, tuple[str, ...]]:
    """A LoRA reference -> (local file path, trigger words the source lists).

    An existing local path is read as is (its errors come from the safe reader); anything
    else goes through vidlora.sources: Hub ids, URLs, civitai:MODEL@VERSION."""
    text = os.fspath(source)
    local = os.path.expanduser(text)
    # an existing file, or one that can only be a path (absolute, ./, ~): the safe reader
    # gives its own precise error ("no such file", a directory, a pickle)
    if os.path.exists(local) or os.path.isabs(local) or text.startswith((".", "~")):
        return local, ()
    from vidlora.lora.sources import resolve_source

    resolved = resolve_source(text)
    return str(resolved.path), tuple(resolved.trigger_words)


def _check_tensors(raw: RawFile) -> None:
    for key, t in raw.tensors.items():
        if is_text_encoder_key(key):
            continue
        split = split_role(key)
        if split is None or split[1] not in FLOAT_ROLES:
            continue
        # An integer alpha (torch.tensor(16)) is an exact number; weights must be floats.
        if not t.is_floating_point() and not (split[1] == "alpha" and t.dtype != torch.bool):
            raise LoRAFormatError(f"{raw.path}: tensor {key!r} has dtype {t.dtype}; LoRA tensors must be floating point")
        # One fp32-accumulated sum per tensor: NaN/Inf anywhere makes it non-finite (and
        # a finite tensor whose sum overflows just gets the exact check), ~4x cheaper than
        # an element-wise isfinite mask on every tensor of every add().
        if t.is_floating_point() and t.element_size() > 1 and bool(torch.isfinite(t.sum(dtype=torch.float32))):
            continue
        finite = torch.isfinite(t if t.is_floating_point() and t.element_size() > 1 else t.float())
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise LoRAFormatError(f"{raw.path}: tensor {key!r} contains NaN or Inf ({bad} of {t.numel()} values)")


def _dominant_dtype(raw: RawFile) -> torch.dtype | None:
    sizes: Counter = Counter()
    for t in raw.tensors.values():
        sizes[t.dtype] += t.numel() * t.element_size()
    return sizes.most_common(1)[0][0] if sizes else None


def _to_lora_file(raw: RawFile, result: ReadResult, words: list[str], dtype) -> LoRAFile:
    family = family_for_width(result.arch, result.width) if result.width else f"{result.arch} (width unknown)"
    variant = detect_variant(result, raw.metadata, raw.path, family)
    experts = None
    if result.experts:
        experts = {name: _to_lora_file(raw, part, words, dtype) for name, part in result.experts.items()}
    return LoRAFile(
        path=raw.path,
        scheme=result.scheme,
        arch=result.arch,
        family=family,
        width=result.width,
        variant=variant,
        modules=result.modules,
        deltas=result.deltas,
        experts=experts,
        metadata=dict(raw.metadata),
        trigger_words=list(words),
        ignored=list(result.ignored),
        dtype=dtype,
        size_bytes=raw.size_bytes,
    )


def read_lora(source: str | os.PathLike) -> LoRAFile:
    """Read a LoRA file of any supported scheme into canonical form.

    Raises LoRAFormatError (UnsafeFileError for pickles) with the file name for anything
    it cannot read exactly; never unpickles. ``source``: a local path, a Hugging Face Hub
    ``owner/repo[/file.safetensors]``, an https:// URL or ``civitai:MODEL@VERSION``."""
    path, source_words = _resolve_source(source)
    raw = read_safetensors(path)
    _check_tensors(raw)
    keys = list(raw.tensors)
    reader = pick_reader(raw.path, keys)
    try:
        result = reader.read(raw, keys)
    except VidloraError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        # Every check we know of raises its own message above; this keeps an unforeseen
        # malformed tensor from escaping as a torch traceback.
        raise LoRAFormatError(f"{raw.path}: malformed LoRA tensors ({type(exc).__name__}: {exc})") from None
    words = list(dict.fromkeys([*trigger_words(raw.metadata), *source_words]))
    return _to_lora_file(raw, result, words, _dominant_dtype(raw))
