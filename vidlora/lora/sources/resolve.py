"""``resolve_source``: which resolver a LoRA reference goes to."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vidlora.common.cache_dir import vidlora_cache_dir
from vidlora.errors import SourceError

from ..lora_dirs import find_in_lora_dirs
from .civitai import civitai_ref_from_page_url, resolve_civitai
from .hub import is_hub_ref, resolve_hub
from .local import resolve_local
from .resolved_source import ResolvedSource
from .url import resolve_url

__all__ = ["resolve_source"]


def resolve_source(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ResolvedSource:
    """Turn a LoRA reference into a verified local .safetensors file (see the package doc).

    Tried in order: ``civitai:`` refs, URLs (civitai.com model pages through the API), an
    existing local path, a file of that name in the LoRA folders (``--lora-dir``,
    ``VIDLORA_LORA_DIRS``; lora_dirs.py), a Hub id (optionally ``hf:``-prefixed).

    cache_dir: where remote files go (default ``vidlora_cache_dir()``); Hub files go to
        ``cache_dir/huggingface`` when it is given, else to huggingface_hub's own cache.
    progress: show a progress bar while downloading.
    """
    text = os.fspath(source).strip() if isinstance(source, (str, os.PathLike)) else None
    if not text:
        raise SourceError(f"LoRA source must be a non-empty path, URL, Hub id or civitai:ID; got {source!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else vidlora_cache_dir()
    if text.lower().startswith("civitai:"):
        return resolve_civitai(text, cache, progress)
    if re.match(r"^https?://", text, re.I):
        civitai_ref = civitai_ref_from_page_url(text)
        if civitai_ref is not None:
            return resolve_civitai(civitai_ref, cache, progress)
        return resolve_url(text, cache, progress)
    local = Path(text).expanduser()
    if local.exists():
        return resolve_local(local)
    hub = text[3:] if text.lower().startswith("hf:") else text
    if hub == text:  # hf: names the Hub alone; otherwise the LoRA folders come first
        found = find_in_lora_dirs(text, hub_like=is_hub_ref(text))
        if found is not None:
            return resolve_local(found)
    if is_hub_ref(hub):
        return resolve_hub(hub, cache if cache_dir is not None else None)
    hint = " (the part after the last ':' is read as a strength only when it is a number)" if ":" in text else ""
    raise SourceError(
        f"LoRA source {text!r} is not an existing file, a URL, a Hugging Face Hub id (owner/repo[/file.safetensors]) "
        f"or civitai:MODEL@VERSION{hint}"
    )
