"""Civitai: ``civitai:MODEL@VERSION`` (or ``civitai:MODEL``, its newest version) -> the
version's SafeTensor file, downloaded with ``$CIVITAI_TOKEN`` and checked against the
sha256 Civitai lists for it.

The API base is ``$VIDLORA_CIVITAI_API`` (default https://civitai.com): the version's file
list comes from ``/api/v1/model-versions/VERSION``, a model's versions from
``/api/v1/models/MODEL`` (newest first).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any

from vidlora.errors import SourceError, UnsafeFileError

from .cache import atomic_write_text, civitai_folder
from .download import download
from .redact import redact_url
from .resolved_source import ResolvedSource
from .transport import Auth, connection_error, http_error, open_url

__all__ = ["CIVITAI_API_ENV", "CIVITAI_TOKEN_ENV", "civitai_auth", "civitai_ref_from_page_url", "resolve_civitai"]

CIVITAI_API_ENV = "VIDLORA_CIVITAI_API"
CIVITAI_TOKEN_ENV = "CIVITAI_TOKEN"
_DEFAULT_API = "https://civitai.com"
_REF = re.compile(r"^civitai:(\d+)?(?:@(\d+))?$")


def civitai_auth() -> Auth:
    """The token in ``$CIVITAI_TOKEN`` (read now) and Civitai's advice when it fails."""
    token = os.environ.get(CIVITAI_TOKEN_ENV) or None
    if token:
        return Auth(token, refused=f"the key in {CIVITAI_TOKEN_ENV} was refused")
    return Auth(
        None,
        refused=f"this download needs a Civitai API key: set {CIVITAI_TOKEN_ENV} (civitai.com > Account settings > API Keys)",
        login_page=f"Civitai serves a login page when a download needs an API key: set {CIVITAI_TOKEN_ENV}",
    )


def civitai_ref_from_page_url(url: str) -> str | None:
    """``https://civitai.com/models/120096/name?modelVersionId=135931`` -> ``civitai:120096@135931``.

    A model page is HTML; it is resolved through the API instead. None for any other URL."""
    parsed = urllib.parse.urlparse(url)
    if not (parsed.hostname or "").endswith("civitai.com"):
        return None
    match = re.match(r"^/models/(\d+)", parsed.path)
    if not match:
        return None
    version = urllib.parse.parse_qs(parsed.query).get("modelVersionId", [None])[0]
    return f"civitai:{match.group(1)}" + (f"@{version}" if version else "")


def resolve_civitai(ref: str, cache: Path, progress: bool) -> ResolvedSource:
    match = _REF.match(ref.strip())
    if not match or not (match.group(1) or match.group(2)):
        raise SourceError(f"Civitai source {ref!r} must look like civitai:MODEL@VERSION (e.g. civitai:120096@135931) or civitai:MODEL")
    model_id, version_id = match.group(1), match.group(2)
    api = os.environ.get(CIVITAI_API_ENV, _DEFAULT_API).rstrip("/")
    auth = civitai_auth()
    if version_id is None:
        model = _api_json(f"{api}/api/v1/models/{model_id}", f"Civitai model {model_id}", auth)
        versions = model.get("modelVersions") or []
        if not versions:
            raise SourceError(f"Civitai model {model_id} has no published versions")
        version_id = str(versions[0]["id"])  # the API lists the newest version first
    version = _version(api, version_id, auth, cache)
    owner = str(version.get("modelId", ""))
    if model_id is not None and owner and owner != model_id:
        raise SourceError(f"Civitai version {version_id} belongs to model {owner}, not {model_id}; check civitai:{model_id}@{version_id}")
    what = f"civitai:{owner or model_id}@{version_id}"
    chosen = _pick_file(version.get("files") or [], what)
    url = chosen.get("downloadUrl") or f"{api}/api/download/models/{version_id}"
    expected = (chosen.get("hashes") or {}).get("SHA256")
    got = download(url, civitai_folder(cache, version_id), progress=progress, what=what, auth=auth,
                   expected_sha256=expected, name_hint=chosen.get("name"))
    words = tuple(w.strip() for w in version.get("trainedWords") or [] if isinstance(w, str) and w.strip())
    info = {"model_id": owner or model_id, "version_id": version_id, "base_model": version.get("baseModel"),
            "file": chosen.get("name")}
    return ResolvedSource(path=got.path, sha256=got.sha256, origin=what, trigger_words=words, info=info)


def _version(api: str, version_id: str, auth: Auth, cache: Path) -> dict[str, Any]:
    # A published version's file list never changes: keep the API answer so that a LoRA
    # downloaded once resolves offline.
    saved = civitai_folder(cache, version_id) / "version.json"
    try:
        version = _api_json(f"{api}/api/v1/model-versions/{version_id}", f"Civitai version {version_id}", auth)
    except SourceError as exc:
        if "cannot reach" in str(exc) and saved.is_file():
            return json.loads(saved.read_text())
        raise
    saved.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(version))
    return version


def _pick_file(files: list[dict[str, Any]], what: str) -> dict[str, Any]:
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


def _api_json(url: str, what: str, auth: Auth) -> dict[str, Any]:
    try:
        with open_url(url, {"Accept": "application/json", **auth.headers()}) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise http_error(exc, what, auth) from None
    except (urllib.error.URLError, OSError) as exc:
        raise connection_error(exc, what, url) from None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        raise SourceError(f"{what}: the Civitai API at {redact_url(url)} did not answer JSON") from None
    if not isinstance(value, dict):
        raise SourceError(f"{what}: unexpected answer from the Civitai API at {redact_url(url)}")
    return value
