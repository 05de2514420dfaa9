"""A LoRA reference -> the canonical :class:`~vidlora.lora.lora_file.LoRAFile`.

    lora = read_lora("motion.safetensors")        # any scheme W1-W7, H1-H6

Reading goes: the source (a local path as is; Hub ids, URLs, civitai: through
sources/) -> safe file read (safetensors only, header checked first; pickles refused)
-> tensor checks (floats, finite) -> the one reader whose key signature the file holds
(readers/) -> name translation, scales, exact splits and dense materializations
(assemble.py) -> family, variant with evidence, trigger words.
"""

from __future__ import annotations

import os
from collections import Counter

import torch

from vidlora.common.finite import sums_finite
from vidlora.errors import LoRAFormatError, VidloraError
from vidlora.model import spec_for_arch

from .keys import FLOAT_ROLES, is_text_encoder_key, split_role
from .lora_file import LoRAFile
from .lycoris import unused_alpha_keys
from .metadata import trigger_words
from .readers import ReadResult, pick_reader
from .safetensors_file import RawFile, read_safetensors
from .variant import detect_variant

__all__ = ["read_lora"]


def _resolve_source(source: str | os.PathLike) -> tuple[str, tuple[str, ...]]:
    """A LoRA reference -> (local file path, trigger words the source lists).

    An existing local path is read as is (its errors come from the safe reader); anything
    else goes through vidlora.lora.sources: Hub ids, URLs, civitai:MODEL@VERSION."""
    text = os.fspath(source)
    local = os.path.expanduser(text)
    # an existing file, or one that can only be a path (absolute, ./, ~): the safe reader
    # gives its own precise error ("no such file", a directory, a pickle)
    if os.path.exists(local) or os.path.isabs(local) or text.startswith((".", "~")):
        return local, ()
    from .sources import resolve_source

    resolved = resolve_source(text)
    return str(resolved.path), tuple(resolved.trigger_words)


def _check_tensors(raw: RawFile) -> None:
    unused = unused_alpha_keys(raw.tensors)
    checked: list[tuple[str, torch.Tensor]] = []
    for key, t in raw.tensors.items():
        if is_text_encoder_key(key):
            continue
        split = split_role(key)
        if split is None or split[1] not in FLOAT_ROLES:
            continue
        # An integer alpha (torch.tensor(16)) is an exact number; weights must be floats.
        if not t.is_floating_point() and not (split[1] == "alpha" and t.dtype != torch.bool):
            raise LoRAFormatError(f"{raw.path}: tensor {key!r} has dtype {t.dtype}; LoRA tensors must be floating point")
        checked.append((key, t))
    if sums_finite(t for _, t in checked):  # the usual case, in one pass; else the exact check
        return
    for key, t in checked:
        finite = torch.isfinite(t if t.is_floating_point() and t.element_size() > 1 else t.float())
        if key in unused and t.numel() == 1 and float(t.reshape(()).float()) == float("inf"):
            continue  # ai-toolkit's full-rank LoKr alpha (9999999999 -> fp16 inf): never used (lycoris.py)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise LoRAFormatError(f"{raw.path}: tensor {key!r} contains NaN or Inf ({bad} of {t.numel()} values)")


def _dominant_dtype(raw: RawFile) -> torch.dtype | None:
    sizes: Counter = Counter()
    for t in raw.tensors.values():
        sizes[t.dtype] += t.numel() * t.element_size()
    return sizes.most_common(1)[0][0] if sizes else None


def _to_lora_file(raw: RawFile, result: ReadResult, words: list[str], dtype) -> LoRAFile:
    family = spec_for_arch(result.arch).family_for_width(result.width) if result.width else f"{result.arch} (width unknown)"
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
        alternatives=tuple(result.alternatives),
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
