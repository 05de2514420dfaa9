"""Where vidlora keeps what it downloads or builds (LoRA downloads, tiny pipelines)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["vidlora_cache_dir"]


def vidlora_cache_dir() -> Path:
    """vidlora's cache root: ``$VIDLORA_CACHE``, ``$XDG_CACHE_HOME/vidlora`` or ``~/.cache/vidlora``.

    Read when called (not at import), so a test or a CLI flag that sets the variable
    takes effect at once."""
    if os.environ.get("VIDLORA_CACHE"):
        return Path(os.environ["VIDLORA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vidlora"
