"""Model checkpoints read one tensor at a time, under canonical (diffusers) parameter paths.

Accepted: a diffusers pipeline folder (``model_index.json``; ``transformer/`` and, for
Wan 2.2 A14B, ``transformer_2/`` = the high- and low-noise experts), a transformer folder
as ``save_pretrained`` writes it (``config.json`` + one or more ``*.safetensors``, sharded
through ``*.safetensors.index.json``), or a single ``.safetensors`` file in original or
diffusers names (ComfyUI / Wan / Tencent releases, ``model.diffusion_model.`` prefixes).
bf16 / fp16 / fp32, float8 as stored (diffusers layerwise casting) and ComfyUI
"fp8_scaled" (``<m>.scale_weight``) / "comfy_quant" (``<m>.weight_scale``) files, which are
dequantized per tensor.

Nothing is loaded up front: only the headers are read, and each tensor (or the rows of
it that a piece needs) is read with plain file reads when asked for (stream.py: no
whole-file mapping), so a 14B checkpoint never sits in the process's memory. Fused originals (Hunyuan ``img_attn_qkv``, ``linear1``) map to their
diffusers pieces as row slices of the one stored tensor (the final layer's swapped halves
likewise).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from vidlora.errors import UnsafeFileError, VidloraError
from vidlora.model import FAMILIES, FamilySpec

from ..keys import strip_prefix
from ..safetensors_check import is_pickle_name
from .stream import TensorFile

__all__ = ["Checkpoint", "Entry", "open_checkpoints"]

# Tensors of quantized checkpoints that are no model parameters.
_QUANT_SUFFIXES = (".scale_weight", ".scale_input", ".weight_scale", ".input_scale", ".comfy_quant")
_MARKERS = ("scaled_fp8",)


@dataclass(frozen=True)
class Entry:
    """Where a canonical parameter is stored: ``key`` of ``file``, rows ``rows`` of it (a
    fused original's piece), halves swapped when ``swap``; ``scale`` the key of its fp8
    scale. ``source`` is the stored tensor (fused pieces share it)."""

    file: str
    key: str
    shape: tuple[int, ...]
    dtype: str
    rows: tuple[int, int] | None = None
    swap: bool = False
    scale: str | None = None

    @property
    def source(self) -> tuple[str, str]:
        return self.file, self.key


@dataclass
class Checkpoint:
    """One transformer's parameters: canonical path -> Entry."""

    path: str
    arch: str
    naming: str  # "diffusers" | "original"
    entries: dict[str, Entry] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # stored keys with no canonical name
    _handles: dict = field(default_factory=dict, repr=False)

    def _open(self, file: str) -> TensorFile:
        if file not in self._handles:
            self._handles[file] = TensorFile(file)
        return self._handles[file]

    def stored(self, path: str) -> torch.Tensor:
        """The parameter as stored (its rows of a fused tensor), before any conversion."""
        e = self.entries[path]
        return self._open(e.file).read(e.key, e.rows)

    def to_float(self, path: str, raw: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
        """A stored tensor in fp32 on ``device``: fp8 dequantized with its scale, swapped
        halves put back in diffusers order."""
        e = self.entries[path]
        t = raw.to(device=device, dtype=torch.float32)
        if e.scale is not None:
            s = self._open(e.file).read(e.scale).to(device=device, dtype=torch.float32)
            if s.numel() > 1 and e.rows is not None:
                s = s.reshape(-1)[e.rows[0] : e.rows[1]]
            t = t * (s.reshape(-1, *([1] * (t.ndim - 1))) if s.numel() > 1 else s.reshape(()))
        if e.swap:
            half = t.shape[0] // 2
            t = torch.cat([t[half:], t[:half]])
        return t

    def load(self, path: str, device: str | torch.device = "cpu") -> torch.Tensor:
        """The parameter in fp32 (fp8 dequantized with its scale), on ``device``."""
        return self.to_float(path, self.stored(path), device)

    def same_storage(self, other: "Checkpoint", path: str) -> bool:
        """Whether ``path`` is stored the same way in both (dtype, no scale, same layout),
        so that equal bytes mean equal values."""
        a, b = self.entries[path], other.entries[path]
        return (a.dtype, a.scale, a.swap) == (b.dtype, None, b.swap) and b.scale is None

    def close(self) -> None:
        self._handles.clear()


def _weight_files(folder: str) -> list[str]:
    index = [f for f in os.listdir(folder) if f.endswith(".safetensors.index.json")]
    if index:
        with open(os.path.join(folder, index[0]), encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        return sorted({os.path.join(folder, v) for v in weight_map.values()})
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        pickles = [f for f in os.listdir(folder) if is_pickle_name(f)]
        if pickles:
            raise UnsafeFileError(f"{folder}: only pickled weights ({pickles[0]}); vidlora reads .safetensors only")
        raise VidloraError(f"{folder}: no .safetensors weights in this folder")
    return files


def _headers(files: list[str]) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """stored key -> (file, shape, dtype), from the headers only (each file checked by the
    one safetensors validator first)."""
    out = {}
    for file in files:
        for key, info in TensorFile(file).tensors.items():
            out[key] = (file, info.shape, info.dtype)
    return out


def _family(modules: list[str]) -> tuple[FamilySpec, str]:
    best = None
    for spec in FAMILIES:
        for naming, test in (("original", spec.looks_original), ("diffusers", spec.looks_diffusers)):
            n = sum(1 for m in modules if test(m))
            if n and (best is None or n > best[0]):
                best = (n, spec, naming)
    if best is None:
        raise VidloraError("not a Wan or HunyuanVideo transformer checkpoint (no known parameter names)")
    return best[1], best[2]


def _rows(split: str, n: int, rows: int, width: int) -> list[tuple[int, int]]:
    sizes = [rows // n] * n if split == "equal" else [width, width, width, rows - 3 * width]
    out, start = [], 0
    for s in sizes:
        out.append((start, start + s))
        start += s
    return out


def _map(path: str, stored: dict[str, tuple[str, tuple[int, ...], str]]) -> Checkpoint:
    keys = {k: v for k, v in stored.items() if not k.endswith(_QUANT_SUFFIXES) and k not in _MARKERS}
    names = {k: strip_prefix(k)[1] for k in keys}
    modules = [n.rpartition(".")[0] for n in names.values()]
    spec, naming = _family(modules)
    ck = Checkpoint(path=path, arch=spec.name, naming=naming)
    for key, name in names.items():
        file, shape, dtype = keys[key]
        scale = next((key[: -len("weight")] + s[1:] for s in (".scale_weight", ".weight_scale")
                      if key.endswith(".weight") and key[: -len("weight")] + s[1:] in stored), None)  # fmt: skip
        if naming == "diffusers":
            ck.entries[name] = Entry(file, key, shape, dtype, scale=scale)
            continue
        target = spec.names.translate_original(name)
        if target is not None and target.is_param:
            ck.entries[target.paths[0]] = Entry(file, key, shape, dtype, scale=scale)
            continue
        module, _, attr = name.rpartition(".")
        target = spec.names.translate_original(module) if attr in ("weight", "bias") else None
        if target is None:
            ck.unknown.append(key)
            continue
        if target.split in ("equal", "linear1"):
            width_key = next((k for k, n in names.items() if n == module + ".weight"), None)
            width = keys[width_key][1][-1] if width_key is not None and len(keys[width_key][1]) == 2 else 0
            for piece, rows in zip(target.paths, _rows(target.split, len(target.paths), shape[0], width)):
                ck.entries[f"{piece}.{attr}"] = Entry(file, key, (rows[1] - rows[0], *shape[1:]), dtype, rows=rows,
                                                      scale=scale)  # fmt: skip
        else:
            ck.entries[f"{target.paths[0]}.{attr}"] = Entry(file, key, shape, dtype, swap=target.split == "swap",
                                                            scale=scale)  # fmt: skip
    return ck


def open_checkpoints(path: str | os.PathLike) -> dict[str | None, Checkpoint]:
    """{None: checkpoint} for one transformer, {"high": ..., "low": ...} for a Wan 2.2
    A14B pipeline folder (``transformer`` = high noise, ``transformer_2`` = low noise)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VidloraError(f"checkpoint {path} does not exist")
    if os.path.isfile(path):
        if is_pickle_name(path):
            raise UnsafeFileError(f"{path} is a pickled checkpoint: loading it can run arbitrary code; "
                                  "vidlora reads .safetensors only")  # fmt: skip
        return {None: _map(path, _headers([path]))}
    if os.path.isfile(os.path.join(path, "model_index.json")):
        parts = {}
        for sub, expert in (("transformer", "high"), ("transformer_2", "low")):
            folder = os.path.join(path, sub)
            if os.path.isdir(folder):
                parts[expert] = _map(folder, _headers(_weight_files(folder)))
        if not parts:
            raise VidloraError(f"{path}: a pipeline folder without a transformer/ folder")
        return parts if len(parts) == 2 else {None: next(iter(parts.values()))}
    return {None: _map(path, _headers(_weight_files(path)))}
