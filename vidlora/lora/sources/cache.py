"""The on-disk layout of the sources cache, and the records kept in it.

    CACHE/downloads/<sha256(url)[:24]>/    one folder per plain URL
    CACHE/civitai/<version id>/            one folder per Civitai version (+ version.json:
                                           the API answer, so that it resolves offline)
    CACHE/huggingface/                     huggingface_hub's cache, when a cache_dir is given

In a download folder, ``record.json`` names the finished file, its size and sha256; it is
written last (atomically), so a folder without it holds no finished file. ``.lock``
serialises two processes resolving the same source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CachedFile", "url_folder", "civitai_folder", "hub_cache", "read_record", "write_record", "folder_lock",
    "read_json_object", "atomic_write_text",
]  # fmt: skip

_RECORD = "record.json"


@dataclass(frozen=True)
class CachedFile:
    """A finished download: the file and its sha256."""

    path: Path
    sha256: str


def url_folder(cache: Path, url: str) -> Path:
    return cache / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:24]


def civitai_folder(cache: Path, version_id: str) -> Path:
    return cache / "civitai" / version_id


def hub_cache(cache: Path | None) -> str | None:
    """huggingface_hub's cache_dir: inside ours when one was given, else its own default."""
    return str(cache / "huggingface") if cache is not None else None


def read_record(folder: Path, expected_sha256: str | None = None) -> CachedFile | None:
    """The finished file of ``folder``, or None: no record, a damaged one, a file of
    another size than recorded, or a digest other than ``expected_sha256``."""
    record_path = folder / _RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        path = folder / record["file"]
        if path.is_file() and path.stat().st_size == record["size"]:
            if expected_sha256 is None or expected_sha256.lower() == record["sha256"]:
                return CachedFile(path, record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None  # download again


def write_record(folder: Path, *, url: str, path: Path, sha256: str) -> CachedFile:
    """Record ``path`` (already in ``folder``) as the finished download of ``url`` (redacted)."""
    record = {"url": url, "file": path.name, "sha256": sha256, "size": path.stat().st_size}
    atomic_write_text(folder / _RECORD, json.dumps(record))
    return CachedFile(path, sha256)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s advisory lock: a second process resolving the same source waits
    for the first download instead of appending to the same part file."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent runs are the user's call
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or {} when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
