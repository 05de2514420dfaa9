"""An existing local path -> the checked file, resolved to an absolute path."""

from __future__ import annotations

from pathlib import Path

from vidlora.errors import SourceError

from .resolved_source import ResolvedSource
from .verify import check_source_file, sha256_file

__all__ = ["resolve_local"]


def resolve_local(path: Path) -> ResolvedSource:
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f"; it holds {', '.join(found)}" if found else ""
        raise SourceError(f"LoRA source {path} is a folder; give the .safetensors file inside it{hint}")
    check_source_file(path, what=str(path))  # a pickle, a truncated file, no read permission
    return ResolvedSource(path=path.resolve(), sha256=sha256_file(path), origin=str(path))
