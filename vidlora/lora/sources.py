"""A LoRA reference -> a local, verified .safetensors file.

Accepted references (``resolve_source``), tried in this order:

- ``civitai:MODEL@VERSION`` (or ``civitai:MODEL`` for its newest version): the version's
  file list comes from ``$VIDLORA_CIVITAI_API/api/v1/model-versions/VERSION`` (default
  base ``https://civitai.com``); the SafeTensor file is downloaded with the token in
  ``CIVITAI_TOKEN`` and checked against the sha256 Civitai lists for it.
- ``http://`` / ``https://`` URLs: streamed into the vidlora cache with a progress bar,
  written to ``download.part`` and renamed only when complete and verified; an
  interrupted transfer is resumed with an HTTP Range request (or restarted when the
  server ignores Range), and a half file is never used.
- an existing local path.
- a Hugging Face Hub ``owner/repo`` (its single .safetensors file) or
  ``owner/repo/path/file.safetensors``, through huggingface_hub and its cache, with
  ``HF_TOKEN`` and ``HF_ENDPOINT`` read when the call is made.

Whatever the source, the bytes must be a safetensors file: a pickle or a zip (torch.save)
served under a .safetensors name raises ``UnsafeFileError`` and is deleted, never
unpickled; an HTML page (a login wall) or a truncated file raises ``SourceError``.

The cache is ``$VIDLORA_CACHE``, else ``$XDG_CACHE_HOME/vidlora``, else ``~/.cache/vidlora``.
"""

from __future__ import annotations

import email.message
import hashlib
import http.client
import json
import math
import os
import re
import socket
import struct
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidlora.common.cache_dir import vidlora_cache_dir
from vidlora.common.hub import hf_endpoint, hub_offline, is_reachable
from vidlora.common.progress import progress_bar
from vidlora.errors import SourceError, UnsafeFileError, VidloraError

__all__ = [
    "ResolvedSource",
    "resolve_source",
    "parse_lora_spec",
    "vidlora_cache_dir",
    "check_safetensors_file",
    "hf_endpoint",
    "is_reachable",
    "CIVITAI_API_ENV",
    "CIVITAI_TOKEN_ENV",
]

CIVITAI_API_ENV = "VIDLORA_CIVITAI_API"
CIVITAI_TOKEN_ENV = "CIVITAI_TOKEN"
_CIVITAI_DEFAULT_API = "https://civitai.com"

_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# safetensors' own reader refuses headers above 100 MB; a LoRA header is a few hundred KB.
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_CHUNK_BYTES = 1 << 20
_DOWNLOAD_ATTEMPTS = 3  # a transfer cut this many times in one call is reported, not retried forever
_TIMEOUT_S = 30.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[^\s]+)?$")
_CIVITAI_REF = re.compile(r"^civitai:(\d+)?(?:@(\d+))?$")
# A strength is a float or a comma list of floats; text made only of these characters
# that still fails to parse is a typo in a strength, not part of a file name.
_STRENGTH_CHARS = re.compile(r"^[\d\s.,eE+-]+$")


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


def parse_lora_spec(spec: str) -> tuple[str, float | list[float]]:
    """Split the CLI's ``SOURCE[:W]`` into (source, strength).

    The text after the LAST colon is a strength only when it parses as a float or a
    comma list of floats (``0.8``, ``-0.5``, ``0.9,0.8,0.7``), so ``civitai:120096@135931``,
    ``http://host:8080/x.safetensors`` and ``C:\\loras\\x.safetensors`` stay whole.
    Without a strength the weight is 1.0. A list is a schedule over the steps.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VidloraError("empty LoRA spec; expected SOURCE or SOURCE:STRENGTH (e.g. motion.safetensors:0.8)")
    spec = spec.strip()
    head, sep, tail = spec.rpartition(":")
    if not sep:
        return spec, 1.0
    # "civitai:120096" and "https://host:8080" end in a number that is not a strength.
    if head.lower() in ("civitai", "http", "https", "hf") or re.match(r"^https?://[^/]+$", head, re.I):
        return spec, 1.0
    if not tail.strip():
        raise VidloraError(f"LoRA spec {spec!r} ends with ':' but no strength; expected SOURCE:STRENGTH")
    strength = _parse_strength(tail)
    if strength is None:
        existing = Path(head).expanduser()
        if head and existing.exists() and not Path(spec).expanduser().exists():
            raise VidloraError(
                f"LoRA spec {spec!r}: {tail!r} is not a strength; expected a number (0.8) or a comma list (0.9,0.8,0.7)"
            )
        if _STRENGTH_CHARS.match(tail) and any(c.isdigit() for c in tail):
            raise VidloraError(
                f"LoRA spec {spec!r}: {tail!r} is not a strength; expected a number (0.8) or a comma list (0.9,0.8,0.7)"
            )
        return spec, 1.0
    if not head:
        raise VidloraError(f"LoRA spec {spec!r} has a strength but no source before ':'")
    return head, strength


def resolve_source(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ResolvedSource:
    """Turn a LoRA reference into a verified local .safetensors file (see the module doc).

    cache_dir: where remote files go (default ``vidlora_cache_dir()``); Hub files go to
        ``cache_dir/huggingface`` when it is given, else to huggingface_hub's own cache.
    progress: show a progress bar while downloading.
    """
    text = os.fspath(source).strip() if isinstance(source, (str, os.PathLike)) else None
    if not text:
        raise SourceError(f"LoRA source must be a non-empty path, URL, Hub id or civitai:ID; got {source!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else vidlora_cache_dir()
    if text.lower().startswith("civitai:"):
        return _resolve_civitai(text, cache, progress)
    if re.match(r"^https?://", text, re.I):
        civitai_ref = _civitai_ref_from_page_url(text)
        if civitai_ref is not None:
            return _resolve_civitai(civitai_ref, cache, progress)
        return _resolve_url(text, cache, progress)
    local = Path(text).expanduser()
    if local.exists():
        return _resolve_local(local)
    hub = text[3:] if text.lower().startswith("hf:") else text
    if _HUB_ID.match(hub) and not text.startswith((".", "/", "~")):
        return _resolve_hub(hub, cache if cache_dir is not None else None)
    return _raise_missing_local(text)


def check_safetensors_file(path: str | os.PathLike, *, what: str | None = None) -> None:
    """Check that ``path`` holds a complete safetensors file, from its bytes alone.

    Raises UnsafeFileError for pickle / zip (torch.save) content and SourceError for
    anything else that is not safetensors (an HTML page, a JSON error, a truncated file).
    Nothing is deserialised beyond the JSON header.
    """
    path = Path(path)
    what = what or str(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
        header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        # A safetensors file is <u64 header length><JSON object>: test that shape first,
        # since its first 8 bytes are binary and may happen to read as '{"'.
        if not (2 <= header_len <= _MAX_HEADER_BYTES and head[8:9] == b"{"):
            kind = _sniff_foreign(head)
            if kind is not None and kind.startswith(("a pickle", "a zip")):
                raise UnsafeFileError(
                    f"{what} is {kind}, not safetensors: pickled checkpoints can run arbitrary code on load, "
                    "so vidlora refuses them (convert it to .safetensors with a tool you trust)"
                )
            if kind is None:
                kind = f"{size} bytes starting {head[:8]!r}" if size else "empty"
            raise SourceError(f"{what} is not a .safetensors file ({kind})")
        if 8 + header_len > size:
            raise SourceError(
                f"{what} is truncated: its safetensors header needs {8 + header_len} bytes, the file has {size}"
            )
        handle.seek(8)
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SourceError(f"{what} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise SourceError(f"{what} is not a safetensors file (its header is not a JSON object)")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SourceError(f"{what} is not a valid safetensors file (tensor {name!r} has no data_offsets)")
        data_end = max(data_end, offsets[1])
    have = size - 8 - header_len
    if data_end > have:
        raise SourceError(f"{what} is truncated: its tensors need {data_end} data bytes, the file has {have}")


# ---------------------------------------------------------------------------- strengths


def _parse_strength(text: str) -> float | list[float] | None:
    parts = [p.strip() for p in text.split(",")]
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            return None
        if not math.isfinite(value):
            raise VidloraError(f"LoRA strength {part!r} is not a finite number")
        values.append(value)
    return values[0] if len(values) == 1 else values


# ---------------------------------------------------------------------------- local


def _resolve_local(path: Path) -> ResolvedSource:
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f"; it holds {', '.join(found)}" if found else ""
        raise SourceError(f"LoRA source {path} is a folder; give the .safetensors file inside it{hint}")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnsafeFileError(
            f"{path} is a pickled checkpoint ({path.suffix}): loading it can run arbitrary code, so vidlora "
            "reads .safetensors files only"
        )
    try:
        check_safetensors_file(path)
        digest = _sha256_file(path)
    except PermissionError:
        raise SourceError(f"LoRA file {path} is not readable (permission denied)") from None
    return ResolvedSource(path=path.resolve(), sha256=digest, origin=str(path))


def _raise_missing_local(text: str) -> ResolvedSource:
    hint = ""
    if ":" in text:
        hint = " (the part after the last ':' is read as a strength only when it is a number)"
    raise SourceError(
        f"LoRA source {text!r} is not an existing file, a URL, a Hugging Face Hub id (owner/repo[/file.safetensors]) "
        f"or civitai:MODEL@VERSION{hint}"
    )


# ---------------------------------------------------------------------------- Hugging Face Hub


def _resolve_hub(ref: str, cache: Path | None) -> ResolvedSource:
    from huggingface_hub import HfApi, hf_hub_download

    parts = ref.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    endpoint = hf_endpoint()
    hf_cache = str(cache / "huggingface") if cache is not None else None
    where = f"{repo_id} on {endpoint}"
    if filename is not None:
        if filename.lower().endswith(_PICKLE_SUFFIXES):
            raise UnsafeFileError(
                f"{ref} names a pickled checkpoint: loading it can run arbitrary code, so vidlora reads .safetensors only"
            )
        if not filename.lower().endswith(".safetensors"):
            raise SourceError(f"Hub source {ref!r} must name a .safetensors file (owner/repo/path/file.safetensors)")
    # huggingface_hub retries a refused connection 5 times with backoff (~25 s per call);
    # one quick probe tells "offline" apart so that the cache answers at once instead.
    offline = hub_offline(endpoint)
    if filename is None:
        filename = _single_hub_safetensors(HfApi(endpoint=endpoint), repo_id, where, hf_cache, offline)
    try:
        local = hf_hub_download(repo_id, filename, cache_dir=hf_cache, endpoint=endpoint, local_files_only=offline)
    except Exception as exc:  # huggingface_hub/httpx raise many types; each is translated below
        raise _hub_error(exc, where, filename) from None
    path = Path(local)
    check_safetensors_file(path, what=f"{filename} from {where}")
    return ResolvedSource(
        path=path, sha256=_sha256_file(path), origin=f"hf:{repo_id}/{filename}",
        info={"repo_id": repo_id, "filename": filename, "endpoint": endpoint},
    )


def _single_hub_safetensors(api: Any, repo_id: str, where: str, hf_cache: str | None, offline: bool) -> str:
    if offline:
        cached = _cached_hub_safetensors(repo_id, hf_cache)
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
        pickles = sorted(f for f in files if f.lower().endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise UnsafeFileError(
                f"{where} has no .safetensors file, only pickled checkpoints ({', '.join(pickles)}): refused, "
                "since loading them can run arbitrary code"
            )
        raise SourceError(f"{where} has no .safetensors file (it holds: {', '.join(sorted(files)) or 'nothing'})")
    listing = "\n  ".join(f"{repo_id}/{t}" for t in tensors)
    raise SourceError(
        f"{where} holds {len(tensors)} .safetensors files; name the one you want as owner/repo/FILE:\n  {listing}"
    )


def _cached_hub_safetensors(repo_id: str, hf_cache: str | None) -> list[str]:
    # Offline: a repo whose one .safetensors file was downloaded before still resolves.
    from huggingface_hub import constants

    root = Path(hf_cache) if hf_cache else Path(constants.HF_HUB_CACHE)
    snapshots = root / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    found = {p.relative_to(s).as_posix() for s in snapshots.glob("*") for p in s.rglob("*.safetensors")}
    return sorted(found)


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


# ---------------------------------------------------------------------------- Civitai


def _civitai_ref_from_page_url(url: str) -> str | None:
    # https://civitai.com/models/120096/name?modelVersionId=135931 is a web page; resolve
    # it through the API instead of downloading HTML.
    parsed = urllib.parse.urlparse(url)
    if not (parsed.hostname or "").endswith("civitai.com"):
        return None
    match = re.match(r"^/models/(\d+)", parsed.path)
    if not match:
        return None
    version = urllib.parse.parse_qs(parsed.query).get("modelVersionId", [None])[0]
    return f"civitai:{match.group(1)}" + (f"@{version}" if version else "")


def _resolve_civitai(ref: str, cache: Path, progress: bool) -> ResolvedSource:
    match = _CIVITAI_REF.match(ref.strip())
    if not match or not (match.group(1) or match.group(2)):
        raise SourceError(f"Civitai source {ref!r} must look like civitai:MODEL@VERSION (e.g. civitai:120096@135931) or civitai:MODEL")
    model_id, version_id = match.group(1), match.group(2)
    api = os.environ.get(CIVITAI_API_ENV, _CIVITAI_DEFAULT_API).rstrip("/")
    token = os.environ.get(CIVITAI_TOKEN_ENV) or None
    if version_id is None:
        model = _civitai_json(f"{api}/api/v1/models/{model_id}", f"Civitai model {model_id}", token)
        versions = model.get("modelVersions") or []
        if not versions:
            raise SourceError(f"Civitai model {model_id} has no published versions")
        version_id = str(versions[0]["id"])  # the API lists the newest version first
    version = _civitai_version(api, version_id, token, cache)
    owner = str(version.get("modelId", ""))
    if model_id is not None and owner and owner != model_id:
        raise SourceError(f"Civitai version {version_id} belongs to model {owner}, not {model_id}; check civitai:{model_id}@{version_id}")
    what = f"civitai:{owner or model_id}@{version_id}"
    chosen = _civitai_pick_file(version.get("files") or [], what)
    url = chosen.get("downloadUrl") or f"{api}/api/download/models/{version_id}"
    expected = (chosen.get("hashes") or {}).get("SHA256")
    resolved = _download(
        url, cache / "civitai" / version_id, progress=progress, what=what,
        token=token, token_kind="civitai", expected_sha256=expected, name_hint=chosen.get("name"),
    )
    words = tuple(w.strip() for w in version.get("trainedWords") or [] if isinstance(w, str) and w.strip())
    info = {"model_id": owner or model_id, "version_id": version_id, "base_model": version.get("baseModel"),
            "file": chosen.get("name")}
    return ResolvedSource(path=resolved.path, sha256=resolved.sha256, origin=what, trigger_words=words, info=info)


def _civitai_version(api: str, version_id: str, token: str | None, cache: Path) -> dict[str, Any]:
    # A published version's file list never changes: keep the API answer so that a LoRA
    # downloaded once resolves offline.
    saved = cache / "civitai" / version_id / "version.json"
    try:
        version = _civitai_json(f"{api}/api/v1/model-versions/{version_id}", f"Civitai version {version_id}", token)
    except SourceError as exc:
        if "cannot reach" in str(exc) and saved.is_file():
            return json.loads(saved.read_text())
        raise
    saved.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(saved, json.dumps(version))
    return version


def _civitai_pick_file(files: list[dict[str, Any]], what: str) -> dict[str, Any]:
    def is_safetensors(f: dict[str, Any]) -> bool:
        fmt = str((f.get("metadata") or {}).get("format", ""))
        return fmt.lower() == "safetensor" or str(f.get("name", "")).lower().endswith(".safetensors")

    models = [f for f in files if f.get("type", "Model") == "Model"] or files
    tensors = [f for f in models if is_safetensors(f)]
    if not tensors:
        listed = ", ".join(f"{f.get('name')} ({(f.get('metadata') or {}).get('format', '?')})" for f in models) or "none"
        raise UnsafeFileError(
            f"{what} offers no SafeTensor file (files: {listed}); pickled formats are refused since loading them can run arbitrary code"
        )
    primary = [f for f in tensors if f.get("primary")]
    if len(primary) == 1 or len(tensors) == 1:
        return (primary or tensors)[0]
    names = ", ".join(str(f.get("name")) for f in tensors)
    raise SourceError(f"{what} has several SafeTensor files and none is marked primary ({names}); download the one you want by URL")


def _civitai_json(url: str, what: str, token: str | None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with _open(url, headers) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, what, token, "civitai") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _connection_error(exc, what, url) from None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        raise SourceError(f"{what}: the Civitai API at {_redact(url)} did not answer JSON") from None
    if not isinstance(value, dict):
        raise SourceError(f"{what}: unexpected answer from the Civitai API at {_redact(url)}")
    return value


# ---------------------------------------------------------------------------- URLs


def _resolve_url(url: str, cache: Path, progress: bool) -> ResolvedSource:
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    token = os.environ.get(CIVITAI_TOKEN_ENV) if host.endswith("civitai.com") else None
    key = hashlib.sha256(url.encode()).hexdigest()[:24]
    resolved = _download(url, cache / "downloads" / key, progress=progress, what=_redact(url), token=token,
                         token_kind="civitai" if token is not None or host.endswith("civitai.com") else "url")
    return ResolvedSource(path=resolved.path, sha256=resolved.sha256, origin=_redact(url))


@dataclass
class _Downloaded:
    path: Path
    sha256: str


def _download(
    url: str, folder: Path, *, progress: bool, what: str, token: str | None, token_kind: str,
    expected_sha256: str | None = None, name_hint: str | None = None,
) -> _Downloaded:
    """Fetch ``url`` into ``folder`` (one folder per source), resuming a previous part.

    folder/record.json names the finished file and its sha256; folder/download.part
    is the transfer in progress and folder/download.part.json what it was fetched from
    (an ETag, so a resumed part is never glued onto a changed file).
    """
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "record.json"
    done = _cached_download(folder, record_path, expected_sha256)
    if done is not None:
        return done
    with _folder_lock(folder):
        done = _cached_download(folder, record_path, expected_sha256)
        if done is not None:
            return done
        part = folder / "download.part"
        name = None
        last_problem = ""
        for _ in range(_DOWNLOAD_ATTEMPTS):
            outcome = _fetch_once(url, part, progress=progress, what=what, token=token, token_kind=token_kind)
            name = outcome.get("name") or name
            if outcome["complete"]:
                break
            last_problem = outcome["problem"]
        else:
            have = part.stat().st_size if part.exists() else 0
            raise SourceError(
                f"download of {what} was cut off {_DOWNLOAD_ATTEMPTS} times ({last_problem}); {have} bytes are kept in "
                f"{part} and the next run resumes from there"
            )
        try:
            check_safetensors_file(part, what=f"the file downloaded from {what}")
        except (SourceError, UnsafeFileError) as exc:
            _discard(part)
            if token_kind == "civitai" and "HTML" in str(exc) and not token:
                raise SourceError(f"{exc}; Civitai serves a login page when a download needs an API key: set {CIVITAI_TOKEN_ENV}") from None
            raise
        digest = _sha256_file(part)
        if expected_sha256 and digest.lower() != expected_sha256.lower():
            _discard(part)
            raise SourceError(f"the file downloaded from {what} has sha256 {digest}, but the source lists {expected_sha256.lower()}; deleted it")
        final = folder / _safe_file_name(name_hint or name or _name_from_url(url))
        os.replace(part, final)
        _discard(part, only_meta=True)
        _atomic_write_text(record_path, json.dumps({"url": _redact(url), "file": final.name, "sha256": digest,
                                                    "size": final.stat().st_size}))
        return _Downloaded(final, digest)


def _cached_download(folder: Path, record_path: Path, expected_sha256: str | None) -> _Downloaded | None:
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        path = folder / record["file"]
        if path.is_file() and path.stat().st_size == record["size"]:
            if expected_sha256 is None or expected_sha256.lower() == record["sha256"]:
                return _Downloaded(path, record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None  # a damaged record: download again


def _fetch_once(url: str, part: Path, *, progress: bool, what: str, token: str | None, token_kind: str) -> dict[str, Any]:
    """One HTTP transfer into ``part``: resumes from its size when the server agrees.

    Returns {"complete": bool, "problem": str, "name": str | None}.
    """
    meta_path = part.with_name(part.name + ".json")
    have = part.stat().st_size if part.exists() else 0
    meta = _read_json(meta_path) if have else {}
    headers = {"Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if have and meta.get("validator"):
        # If-Range: the server sends the rest only if the file is still the one the part
        # came from, else the whole new file (200). Without an ETag/Last-Modified there is
        # no such guarantee, so the part is dropped and the transfer restarts.
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = meta["validator"]
    try:
        response = _open(url, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our part is longer than the file: start over
            _discard(part)
            return {"complete": False, "problem": "HTTP 416 on resume", "name": None}
        raise _http_error(exc, what, token, token_kind) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _connection_error(exc, what, url) from None
    with response:
        resumed = response.status == 206
        if resumed:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                response.close()
                _discard(part)
                return {"complete": False, "problem": f"server resumed at byte {start}, not {have}", "name": None}
        else:
            have = 0  # 200: the server sent the whole file (Range ignored or file changed)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        name = _name_from_disposition(response.headers.get("Content-Disposition")) or _name_from_url(response.geturl())
        _atomic_write_text(meta_path, json.dumps({"validator": validator, "total": total}))
        received = have
        problem = ""
        with open(part, "ab" if resumed else "wb") as out, progress_bar(f"download {_short(what)}", total, unit="bytes", completed=have, enabled=progress) as advance:
            try:
                while True:
                    chunk = response.read(_CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                problem = f"{type(exc).__name__} after {received} bytes"
    if total is not None and received < total:
        return {"complete": False, "problem": problem or f"truncated transfer: got {received} of {total} bytes", "name": name}
    if problem:
        return {"complete": False, "problem": problem, "name": name}
    return {"complete": True, "problem": "", "name": name}


class _DropAuthOnHostChange(urllib.request.HTTPRedirectHandler):
    # Civitai answers a download with a redirect to a signed storage URL; forwarding the
    # Authorization header there would leak the token (and S3-style stores reject a
    # request that carries two credentials).
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlparse(newurl).hostname != urllib.parse.urlparse(req.full_url).hostname:
            for key in list(new.headers):
                if key.lower() == "authorization":
                    del new.headers[key]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _open(url: str, headers: dict[str, str]):
    from vidlora import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"vidlora/{__version__}", **headers})
    opener = urllib.request.build_opener(_DropAuthOnHostChange)
    return opener.open(request, timeout=_TIMEOUT_S)


def _http_error(exc: urllib.error.HTTPError, what: str, token: str | None, token_kind: str) -> SourceError:
    code = exc.code
    if code in (401, 403):
        if token_kind == "civitai":
            advice = (f"the key in {CIVITAI_TOKEN_ENV} was refused" if token
                      else f"this download needs a Civitai API key: set {CIVITAI_TOKEN_ENV} (civitai.com > Account settings > API Keys)")
        else:
            advice = "the server wants credentials vidlora does not have"
        return SourceError(f"{what}: HTTP {code} {exc.reason}: {advice}")
    if code == 404:
        return SourceError(f"{what}: HTTP 404 Not Found (check the id or URL)")
    if code == 429:
        return SourceError(f"{what}: HTTP 429 Too Many Requests; wait a minute and try again")
    return SourceError(f"{what}: HTTP {code} {exc.reason}")


def _connection_error(exc: BaseException, what: str, url: str) -> SourceError:
    reason = getattr(exc, "reason", exc)
    host = urllib.parse.urlparse(url).netloc
    return SourceError(f"{what}: cannot reach {host} ({reason}); check the network (offline?)")


# ---------------------------------------------------------------------------- helpers


def _sniff_foreign(head: bytes) -> str | None:
    """Name content that is certainly not safetensors, from its first bytes."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save format, which holds a pickle)"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML page (an error or login page?)"
    if text.startswith((b"{", b"[")):
        return "JSON text (an API error message?)"
    return None


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"^\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _name_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    message = email.message.Message()
    message["content-disposition"] = value
    return message.get_filename()


def _name_from_url(url: str) -> str:
    segment = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
    return segment or "lora.safetensors"


def _safe_file_name(name: str) -> str:
    name = os.path.basename(name.replace("\\", "/")).strip() or "lora"
    name = re.sub(r"[^\w.+-]", "_", name)
    if name.startswith("."):
        name = "_" + name
    # "record.json" / "download.part" live in the same folder; the LoRA always ends in .safetensors
    return name if name.lower().endswith(".safetensors") else name + ".safetensors"


def _redact(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if not parsed.query and not parsed.password:
        return url
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    secret = re.compile(r"token|key|sig|signature|auth|credential|password", re.I)
    clean = urllib.parse.urlencode([(k, "***" if secret.search(k) else v) for k, v in query], safe="*")
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc, query=clean))


def _short(what: str) -> str:
    return what if len(what) <= 48 else "..." + what[-45:]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _discard(part: Path, only_meta: bool = False) -> None:
    if not only_meta:
        part.unlink(missing_ok=True)
    part.with_name(part.name + ".json").unlink(missing_ok=True)


def _folder_lock(folder: Path):
    # Two processes resolving the same source share one folder: the second waits for
    # the first download instead of appending to the same part file.
    import contextlib

    @contextlib.contextmanager
    def lock():
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

    return lock()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

