"""Hugging Face Hub: ``owner/repo`` (its one .safetensors file) or
``owner/repo/path/file.safetensors`` -> the file in huggingface_hub's cache.

``HF_TOKEN`` and ``HF_ENDPOINT`` are read when the call is made. Offline (no answer from
the endpoint, or ``HF_HUB_OFFLINE``), the cache answers at once: a repo whose one
.safetensors file was downloaded before still resolves.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from vidlora.common.hub import hf_endpoint, hub_offline
from vidlora.errors import SourceError, UnsafeFileError

from ..safetensors_check import is_pickle_name
from .cache import hub_cache
from .resolved_source import ResolvedSource
from .verify import check_source_file, sha256_file

__all__ = ["is_hub_ref", "resolve_hub"]

# owner/repo[/path]: the owner starts with a letter or digit, so "./x", "/x", "~/x" never match
_HUB_REF = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[^\s]+)?$")


def is_hub_ref(text: str) -> bool:
    """Whether ``text`` (without its ``hf:`` prefix) reads as ``owner/repo[/path]``; a
    relative or absolute path (``./x``, ``/x``, ``~/x``) never does."""
    return bool(_HUB_REF.match(text))


def resolve_hub(ref: str, cache: Path | None) -> ResolvedSource:
    """cache: the vidlora cache the caller named (files go to ``cache/huggingface``), or
    None for huggingface_hub's own cache."""
    from huggingface_hub import HfApi, hf_hub_download

    parts = ref.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    endpoint = hf_endpoint()
    hf_cache = hub_cache(cache)
    where = f"{repo_id} on {endpoint}"
    if filename is not None:
        if is_pickle_name(filename):
            raise UnsafeFileError(
                f"{ref} names a pickled checkpoint: loading it can run arbitrary code, so vidlora reads .safetensors only"
            )
        if not filename.lower().endswith(".safetensors"):
            raise SourceError(f"Hub source {ref!r} must name a .safetensors file (owner/repo/path/file.safetensors)")
    offline = hub_offline(endpoint)
    if filename is None:
        filename = _single_safetensors(HfApi(endpoint=endpoint), repo_id, where, hf_cache, offline)
    try:
        local = hf_hub_download(repo_id, filename, cache_dir=hf_cache, endpoint=endpoint, local_files_only=offline)
    except Exception as exc:  # huggingface_hub/httpx raise many types; each is translated below
        raise _hub_error(exc, where, filename) from None
    path = Path(local)
    check_source_file(path, what=f"{filename} from {where}")
    return ResolvedSource(
        path=path, sha256=sha256_file(path), origin=f"hf:{repo_id}/{filename}",
        info={"repo_id": repo_id, "filename": filename, "endpoint": endpoint},
    )


def _single_safetensors(api: Any, repo_id: str, where: str, hf_cache: str | None, offline: bool) -> str:
    if offline:
        cached = _cached_safetensors(repo_id, hf_cache)
        if len(cached) == 1:
            return cached[0]
        raise SourceError(
            f"cannot reach {where} (offline or HF_HUB_OFFLINE=1) and the Hugging Face cache holds "
            + (f"{len(cached)} .safetensors files for it; name one as owner/repo/FILE" if cached else "no .safetensors file for it")
        )
    try:
        files = api.list_repo_files(repo_id)
    except Exception as exc:
        raise _hub_error(exc, where, None) from None
    tensors = sorted(f for f in files if f.lower().endswith(".safetensors"))
    if len(tensors) == 1:
        return tensors[0]
    if not tensors:
        pickles = sorted(f for f in files if is_pickle_name(f))
        if pickles:
            raise UnsafeFileError(
                f"{where} has no .safetensors file, only pickled checkpoints ({', '.join(pickles)}): refused, "
                "since loading them can run arbitrary code"
            )
        raise SourceError(f"{where} has no .safetensors file (it holds: {', '.join(sorted(files)) or 'nothing'})")
    listing = "\n  ".join(f"{repo_id}/{t}" for t in tensors)
    raise SourceError(f"{where} holds {len(tensors)} .safetensors files; name the one you want as owner/repo/FILE:\n  {listing}")


def _cached_safetensors(repo_id: str, hf_cache: str | None) -> list[str]:
    from huggingface_hub import constants

    root = Path(hf_cache) if hf_cache else Path(constants.HF_HUB_CACHE)
    snapshots = root / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    return sorted({p.relative_to(s).as_posix() for s in snapshots.glob("*") for p in s.rglob("*.safetensors")})


def _is_connection_error(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return True
    if isinstance(exc, HfHubHTTPError):
        return False
    name = type(exc).__name__
    return isinstance(exc, (ConnectionError, TimeoutError, socket.error)) or "Connect" in name or "Timeout" in name


def _hub_error(exc: Exception, where: str, filename: str | None) -> SourceError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token_hint = "set HF_TOKEN" if not os.environ.get("HF_TOKEN") else "check that HF_TOKEN has access"
    if isinstance(exc, GatedRepoError):
        return SourceError(f"{where} is gated: accept its terms on the Hub page and {token_hint}")
    if isinstance(exc, RepositoryNotFoundError):
        return SourceError(f"no repository {where} (HTTP 401/404: it does not exist, or it is private and you need to {token_hint})")
    if isinstance(exc, RevisionNotFoundError):
        return SourceError(f"{where}: revision not found")
    if isinstance(exc, LocalEntryNotFoundError):
        return SourceError(
            f"cannot reach {where} (offline or HF_HUB_OFFLINE=1) and {filename or 'the file'} is not in the Hugging Face cache"
        )
    if isinstance(exc, EntryNotFoundError):
        return SourceError(f"{where} has no file {filename!r} (HTTP 404)")
    if _is_connection_error(exc):
        return SourceError(f"cannot reach {where} ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = f"HTTP {status}" if status else type(exc).__name__
    return SourceError(f"downloading {filename or 'the file list'} from {where} failed ({detail}): {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
