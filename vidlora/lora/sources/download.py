"""The one resumable HTTP downloader (Civitai and plain URLs): a URL -> a verified file in
its cache folder.

In the folder (one per source, ``cache.py``): ``download.part`` is the transfer in
progress and ``download.part.json`` what it was fetched from (an ETag or Last-Modified,
so a resumed part is never glued onto a changed file). A finished transfer is checked by
the one safetensors validator and, when the source lists one, against its sha256; only
then is it renamed to its final name and recorded. A bad file is deleted, never kept.
"""

from __future__ import annotations

import email.message
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from vidlora.common.progress import progress_bar
from vidlora.errors import SourceError, UnsafeFileError

from ..safetensors_check import looks_like_html
from .cache import CachedFile, atomic_write_text, folder_lock, read_json_object, read_record, write_record
from .redact import redact_url
from .transport import Auth, connection_error, http_error, open_url
from .verify import check_source_file, sha256_file

__all__ = ["download"]

_CHUNK_BYTES = 1 << 20
_ATTEMPTS = 3  # a transfer cut this many times in one call is reported, not retried forever
_PART = "download.part"


@dataclass(frozen=True)
class _Transfer:
    """How one HTTP transfer ended."""

    complete: bool
    problem: str = ""
    name: str | None = None  # the file name the server gave (Content-Disposition or final URL)


def download(
    url: str, folder: Path, *, what: str, progress: bool, auth: Auth = Auth(),
    expected_sha256: str | None = None, name_hint: str | None = None,
) -> CachedFile:
    """Fetch ``url`` into ``folder``, resuming a previous part; the cached file if done.

    what: how messages name the source (a redacted URL, ``civitai:M@V``). auth: the token
    to send and the advice when it is missing or refused. expected_sha256: the digest the
    source lists (a mismatch deletes the file). name_hint: the final file name (else the
    server's, else the URL's); it always ends in .safetensors.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = read_record(folder, expected_sha256)
    if done is not None:
        return done
    with folder_lock(folder):
        done = read_record(folder, expected_sha256)  # another process finished it meanwhile
        if done is not None:
            return done
        part = folder / _PART
        name = None
        last_problem = ""
        for _ in range(_ATTEMPTS):
            outcome = _fetch_once(url, part, progress=progress, what=what, auth=auth)
            name = outcome.name or name
            if outcome.complete:
                break
            last_problem = outcome.problem
        else:
            have = part.stat().st_size if part.exists() else 0
            raise SourceError(
                f"download of {what} was cut off {_ATTEMPTS} times ({last_problem}); {have} bytes are kept in "
                f"{part} and the next run resumes from there"
            )
        _check_part(part, what, auth)
        digest = sha256_file(part)
        if expected_sha256 and digest.lower() != expected_sha256.lower():
            _discard(part)
            raise SourceError(
                f"the file downloaded from {what} has sha256 {digest}, but the source lists {expected_sha256.lower()}; deleted it"
            )
        final = folder / _safe_file_name(name_hint or name or _name_from_url(url))
        os.replace(part, final)
        _discard(part, only_meta=True)
        return write_record(folder, url=redact_url(url), path=final, sha256=digest)


def _check_part(part: Path, what: str, auth: Auth) -> None:
    try:
        check_source_file(part, what=f"the file downloaded from {what}")
    except (SourceError, UnsafeFileError) as exc:
        with open(part, "rb") as handle:
            html = looks_like_html(handle.read(64))
        _discard(part)
        if html and auth.login_page:
            raise SourceError(f"{exc}; {auth.login_page}") from None
        raise


def _fetch_once(url: str, part: Path, *, progress: bool, what: str, auth: Auth) -> _Transfer:
    """One HTTP transfer into ``part``: resumes from its size when the server agrees."""
    meta_path = _meta_path(part)
    have = part.stat().st_size if part.exists() else 0
    meta = read_json_object(meta_path) if have else {}
    headers = {"Accept-Encoding": "identity", **auth.headers()}
    if have and meta.get("validator"):
        # If-Range: the server sends the rest only if the file is still the one the part
        # came from, else the whole new file (200). Without an ETag/Last-Modified there is
        # no such guarantee, so the part is dropped and the transfer restarts.
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = meta["validator"]
    try:
        response = open_url(url, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our part is longer than the file: start over
            _discard(part)
            return _Transfer(False, "HTTP 416 on resume")
        raise http_error(exc, what, auth) from None
    except (urllib.error.URLError, OSError) as exc:
        raise connection_error(exc, what, url) from None
    with response:
        resumed = response.status == 206
        if resumed:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                response.close()
                _discard(part)
                return _Transfer(False, f"server resumed at byte {start}, not {have}")
        else:
            have = 0  # 200: the server sent the whole file (Range ignored or file changed)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        name = _name_from_disposition(response.headers.get("Content-Disposition")) or _name_from_url(response.geturl())
        atomic_write_text(meta_path, json.dumps({"validator": validator, "total": total}))
        received = have
        problem = ""
        label = f"download {what if len(what) <= 48 else '...' + what[-45:]}"
        with open(part, "ab" if resumed else "wb") as out, \
                progress_bar(label, total, unit="bytes", completed=have, enabled=progress) as advance:
            try:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                problem = f"{type(exc).__name__} after {received} bytes"
    if total is not None and received < total:
        return _Transfer(False, problem or f"truncated transfer: got {received} of {total} bytes", name)
    if problem:
        return _Transfer(False, problem, name)
    return _Transfer(True, "", name)


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard(part: Path, only_meta: bool = False) -> None:
    if not only_meta:
        part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


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
