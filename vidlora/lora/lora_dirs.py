"""LoRA folders (ComfyUI's ``models/loras``, A1111's ``models/Lora``) and finding a LoRA in
them by name.

The folders are the ones given with ``--lora-dir`` (:func:`use_lora_dirs`, in order) and
then those in ``VIDLORA_LORA_DIRS`` (``os.pathsep``-separated), read when asked. A name
matches a ``.safetensors`` file below a folder (subfolders included, as ComfyUI lists
them) by its path relative to the folder (``wan/motion``, ``wan/motion.safetensors``) or,
for a name without a ``/``, by its file name (``motion``); a case-insensitive match is
used only when no exact one exists.

``resolve_source`` asks here after an existing path and before the Hub; a name that
matches several files, or that matches a file and also reads as a Hub ``owner/repo``, is
an error listing the candidates (a path, or ``hf:owner/repo``, says which is meant).
"""

from __future__ import annotations

import os
from pathlib import Path

from vidlora.errors import SourceError

__all__ = ["LORA_DIRS_ENV", "use_lora_dirs", "lora_dirs", "lora_files", "find_in_lora_dirs"]

LORA_DIRS_ENV = "VIDLORA_LORA_DIRS"
_given: list[Path] = []  # from --lora-dir, for this process


def use_lora_dirs(dirs) -> None:
    """Search these folders first (the CLI's ``--lora-dir``; replaces earlier calls)."""
    _given[:] = [Path(d).expanduser() for d in dirs]
    for d in _given:
        if not d.is_dir():
            raise SourceError(f"--lora-dir {d} is not a folder")


def lora_dirs() -> list[Path]:
    """The LoRA folders in search order: ``--lora-dir`` ones, then ``VIDLORA_LORA_DIRS``."""
    env = [Path(p).expanduser() for p in os.environ.get(LORA_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for d in [*_given, *env]:
        if d not in out:
            out.append(d)
    return out


def lora_files(folder: Path) -> list[Path]:
    """Every ``.safetensors`` file below ``folder`` (symlinked subfolders followed once)."""
    out, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        out += [Path(root) / f for f in sorted(files) if f.lower().endswith(".safetensors") and not f.startswith(".")]
    return out


def _matches(name: str, folders: list[Path]) -> list[Path]:
    want = name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else name
    want = want.replace("\\", "/").strip("/")
    exact, loose = [], []
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in lora_files(folder):
            rel = f.relative_to(folder).as_posix()[: -len(".safetensors")]
            keys = [rel] if "/" in want else [rel, f.name[: -len(".safetensors")]]
            if want in keys:
                exact.append(f)
            elif want.lower() in (k.lower() for k in keys):
                loose.append(f)
    return list(dict.fromkeys(exact or loose))


def find_in_lora_dirs(name: str, hub_like: bool = False) -> Path | None:
    """The one file ``name`` names in the LoRA folders, None when none does. Several
    matches, or a match for a name that ``hub_like`` (also reads as a Hub id), raise a
    SourceError listing the candidates."""
    folders = lora_dirs()
    if not folders:
        return None
    found = _matches(name, folders)
    if not found:
        return None
    if len(found) > 1 or hub_like:
        listed = [str(f) for f in found] + ([f"hf:{name} (the Hugging Face Hub)"] if hub_like else [])
        raise SourceError(
            f"LoRA {name!r} is ambiguous: it could be {'; '.join(listed)}. Give the file's path"
            + (f", or hf:{name} for the Hub" if hub_like else "")
        )
    return found[0]
