"""``list_loras``: what each LoRA file in a folder is, from its header alone.

    for entry in list_loras(["~/ComfyUI/models/loras"]):
        print(entry.name, entry.family, entry.rank, entry.trigger_words)

Each file's safetensors header (key names, shapes, dtypes, metadata) is read and checked;
the reader that owns its key scheme then runs on shape-only (meta-device) tensors with the
few alpha scalars read for real, so the family, variant, ranks and alpha come from the
same code as ``read_lora`` without reading a weight: a few ms per file, whatever its size.

sha256 needs every byte, so it is computed only when asked (``hash=True``) and cached
by path, size and modification time in ``<vidlora cache>/lora_sha256.json``; a cached
digest is shown without ``hash``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vidlora.common.cache_dir import vidlora_cache_dir
from vidlora.errors import VidloraError
from vidlora.model import family_label, spec_for_arch

from ..lora_dirs import lora_dirs, lora_files
from ..metadata import trigger_words
from ..readers import pick_reader
from ..safetensors_file import RawFile
from ..variant import detect_variant
from .stream import DTYPES, TensorFile

__all__ = ["LoRAEntry", "list_loras", "hash_cache_path"]

_CACHE_NAME = "lora_sha256.json"


@dataclass
class LoRAEntry:
    """One file of a LoRA folder. ``error`` is set (and the rest mostly empty) for a file
    vidlora cannot read."""

    path: str
    name: str  # relative to its folder, without .safetensors: what --lora NAME takes
    size: int
    scheme: str = ""
    kind: str = ""  # "LoRA", "LoHa", "LoKr" (LyCORIS files keep their factors; no LoRA rank)
    family: str = ""
    variant: str = ""  # "i2v 2.2 high", from the file's own signals
    rank: int | list[int] | None = None
    alpha: float | list[float] | None = None
    trigger_words: list[str] = field(default_factory=list)
    sha256: str | None = None
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def hash_cache_path() -> Path:
    return vidlora_cache_dir() / _CACHE_NAME


def _load_cache(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lora_sha256.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(cache, f, indent=0, sort_keys=True)
    os.replace(tmp, path)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _header_view(tf: TensorFile) -> RawFile:
    """The file as the readers see it, with meta-device tensors of the stored shapes; the
    alpha scalars (one element each) are read for real."""
    alphas = [k for k, info in tf.tensors.items() if k.endswith(".alpha") and len(info.shape) <= 1]
    tensors = {key: torch.empty(info.shape, dtype=DTYPES.get(info.dtype, torch.uint8), device="meta")
               for key, info in tf.tensors.items()}  # fmt: skip
    tensors.update(tf.read_many(alphas))
    return RawFile(tf.path, tensors, tf.metadata, tf.size)


def _describe(entry: LoRAEntry, tf: TensorFile) -> None:
    raw = _header_view(tf)
    keys = list(raw.tensors)
    result = pick_reader(raw.path, keys).read(raw, keys)
    spec = spec_for_arch(result.arch)
    family = spec.family_for_width(result.width) if result.width else result.arch
    parts = list(result.experts.values()) if result.experts else [result]
    variant = detect_variant(result, raw.metadata, raw.path, family)
    ranks = sorted({int(m.down.shape[0]) for p in parts for m in p.modules.values()})
    alphas = sorted({m.alpha for p in parts for m in p.modules.values() if m.alpha is not None})
    entry.scheme = result.scheme.split(" ", 1)[0]
    kinds = ["LoRA"] if ranks else []
    kinds += [k for k, marker in (("LoHa", ".hada_"), ("LoKr", ".lokr_")) if any(marker in key for key in keys)]
    entry.kind = " + ".join(kinds)
    known = family in (fid for fid, _ in spec.sizes.values())
    entry.family = family_label(family) if known else f"{spec.label} (width {result.width})"
    words = [w for w in (variant.task, variant.version, variant.expert) if w]
    if result.experts:
        words.append("high+low")
    entry.variant = " ".join(words)
    entry.rank = None if not ranks else ranks[0] if len(ranks) == 1 else ranks
    entry.alpha = None if not alphas else alphas[0] if len(alphas) == 1 else alphas
    entry.trigger_words = trigger_words(raw.metadata)


def list_loras(dirs=None, *, hash: bool = False, cache: str | os.PathLike | None = None) -> list[LoRAEntry]:
    """Every ``.safetensors`` file below ``dirs`` (default: the LoRA folders, ``--lora-dir``
    and ``VIDLORA_LORA_DIRS``), described from its header. ``hash``: compute the sha256
    of files not in the cache (by path, size, mtime). ``cache``: the cache file (default
    ``<vidlora cache>/lora_sha256.json``)."""
    folders = [Path(d).expanduser() for d in dirs] if dirs else lora_dirs()
    if not folders:
        raise VidloraError("no LoRA folder: give one (vidlora loras DIR), or use --lora-dir / VIDLORA_LORA_DIRS")
    for folder in folders:
        if not folder.is_dir():
            raise VidloraError(f"LoRA folder {folder} does not exist")
    cache_path = Path(cache) if cache is not None else hash_cache_path()
    hashes = _load_cache(cache_path)
    changed = False
    out = []
    for folder in folders:
        for f in lora_files(folder):
            st = f.stat()
            entry = LoRAEntry(path=str(f), name=f.relative_to(folder).as_posix()[: -len(".safetensors")], size=st.st_size)
            try:
                _describe(entry, TensorFile(f))
            except (VidloraError, ValueError, RuntimeError, OSError) as exc:
                entry.error = str(exc).replace(str(f) + ": ", "")
            key = os.path.abspath(f)
            cached = hashes.get(key)
            if isinstance(cached, dict) and cached.get("size") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
                entry.sha256 = cached.get("sha256")
            elif hash:
                entry.sha256 = _sha256(str(f))
                hashes[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": entry.sha256}
                changed = True
            out.append(entry)
    if changed:
        _save_cache(cache_path, hashes)
    return out
