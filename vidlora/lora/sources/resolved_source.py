"""What every source resolver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ResolvedSource"]


@dataclass(frozen=True)
class ResolvedSource:
    """Where a LoRA reference ended up.

    path: the local .safetensors file (in a cache for remote sources).
    sha256: hex digest of the file's bytes.
    origin: what was resolved, for messages and metadata (``civitai:120096@135931``,
        ``hf:owner/repo/file.safetensors``, a URL without credentials, or a local path).
    trigger_words: words the source lists for the LoRA (Civitai's trainedWords); the
        file's own metadata may hold more.
    info: source-specific facts (Civitai base model, Hub repo and revision, ...).
    """

    path: Path
    sha256: str
    origin: str
    trigger_words: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
