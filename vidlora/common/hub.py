"""The Hugging Face Hub endpoint and the one "are we offline?" probe.

huggingface_hub retries a refused connection 5 times with backoff (~25 s per call); one
quick TCP probe tells "offline" apart first, so that callers ask the local cache only
(``local_files_only=True``) and answer at once.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

__all__ = ["hf_endpoint", "is_reachable", "hub_offline"]

_HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# huggingface_hub's own reading of HF_HUB_OFFLINE (constants._is_true)
_TRUE = ("1", "on", "yes", "true")


def hf_endpoint() -> str:
    """The Hugging Face Hub base URL: ``$HF_ENDPOINT`` read now (huggingface_hub reads it
    once, at import), else https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT", _HF_DEFAULT_ENDPOINT).rstrip("/")


def is_reachable(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host opens within 3 s (True behind a proxy,
    where a direct connection proves nothing)."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_offline(endpoint: str | None = None) -> bool:
    """True when the Hub must not be asked: ``HF_HUB_OFFLINE`` is set, or ``endpoint``
    (default :func:`hf_endpoint`) does not answer the probe."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    return not is_reachable(endpoint or hf_endpoint())
