"""The on-disk cache of first-use path choices: one JSON file per GPU name.

Location: ``$VIDLORA_CACHE`` if set, else ``$XDG_CACHE_HOME/vidlora``, else
``~/.cache/vidlora`` (the rule vidlora uses for every cache), then ``kernels/``; the file is
``choices-<gpu name slug>.json``. The kernels are the lowest layer and cannot import
vidlora's own cache helper, so the rule is restated here.

The file records the versions it was measured with (torch, Triton, CUDA, vidlora and this
format); a file written under other versions is ignored as a whole and replaced on the
next write, so upgrading Triton re-measures every shape class.

Writes are atomic and merge: under an exclusive ``flock`` on ``<file>.lock`` (torchrun
ranks and Ray workers on one machine measure the same shapes at the same moment), the
current file is re-read, the new entries merged in, and the result written to a temporary
file in the same folder and ``os.replace``-d over the old one: a reader sees the old file
or the new one, never half of one; a writer that dies leaves at most a stray temp file.
A folder that cannot be written costs a warning once; the choices then live in memory only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = ["CACHE_ENV", "FORMAT_VERSION", "cache_dir", "kernel_cache_dir", "cache_path", "current_versions",
           "ChoiceCache"]  # fmt: skip

CACHE_ENV = "VIDLORA_CACHE"
FORMAT_VERSION = 1

try:  # POSIX; elsewhere writes stay atomic but concurrent merges may drop an entry
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def cache_dir() -> Path:
    """``$VIDLORA_CACHE`` / ``$XDG_CACHE_HOME/vidlora`` / ``~/.cache/vidlora``, plus ``kernels``."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "vidlora") if xdg else str(Path.home() / ".cache" / "vidlora")
    return Path(root) / "kernels"


kernel_cache_dir = cache_dir  # the public name (vidlora.kernels.kernel_cache_dir)


def cache_path(device_name: str, directory: Path | None = None) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "device"
    return (directory or cache_dir()) / f"choices-{slug}.json"


def current_versions() -> dict[str, Any]:
    """What a cached choice depends on besides the shape: the software that ran it."""
    from importlib import metadata

    import torch

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"format": FORMAT_VERSION, "vidlora": version("vidlora"), "torch": torch.__version__,
            "triton": version("triton"), "cuda": torch.version.cuda}  # fmt: skip


@contextlib.contextmanager
def _locked(path: Path):
    if fcntl is None:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ChoiceCache:
    """Entries (key -> JSON object) of one GPU's cache file, valid for ``versions``."""

    def __init__(self, path: Path, versions: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.versions = versions if versions is not None else current_versions()
        self._warned = False

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("versions") != self.versions:
            return {}  # missing, foreign or written under other versions: re-measure
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def load(self) -> dict[str, Any]:
        """Every entry valid for these versions ({} when none)."""
        return self._read()

    def store(self, entries: dict[str, Any]) -> bool:
        """Merge ``entries`` into the file atomically; False (and one warning) if it cannot."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path):
                merged = {**self._read(), **entries}
                data = {"versions": self.versions, "entries": merged}
                fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump(data, f, indent=1, sort_keys=True)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            return True
        except OSError as err:
            if not self._warned:
                self._warned = True
                warnings.warn(f"vidlora: cannot write the kernel choice cache {self.path} ({err}); choices are "
                              f"kept in memory only (set {CACHE_ENV} to a writable folder)", stacklevel=3)  # fmt: skip
            return False
