"""A plain ``http://`` / ``https://`` URL -> its file in ``CACHE/downloads/<hash of the URL>/``."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from .cache import url_folder
from .civitai import civitai_auth
from .download import download
from .redact import redact_url
from .resolved_source import ResolvedSource
from .transport import Auth

__all__ = ["resolve_url"]


def resolve_url(url: str, cache: Path, progress: bool) -> ResolvedSource:
    # A direct civitai.com download link (/api/download/models/V) needs the Civitai key.
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    auth = civitai_auth() if host.endswith("civitai.com") else Auth()
    got = download(url, url_folder(cache, url), progress=progress, what=redact_url(url), auth=auth)
    return ResolvedSource(path=got.path, sha256=got.sha256, origin=redact_url(url))
