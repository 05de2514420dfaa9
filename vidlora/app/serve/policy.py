"""Where a request's LoRAs (and image URL) may come from, and who may ask.

- ``--lora-dir`` roots: a relative LoRA name (``motion.safetensors``, ``styles/ink.safetensors``)
  is looked up in each root in order.
- On a loopback bind (the default, 127.0.0.1) a request may name anything ``--lora``
  takes, as the person at the keyboard could.
- On any other bind, requests come from the network: local files only from inside the
  ``--lora-dir`` roots (after resolving symlinks and ``..``: a link out of a root is
  refused), URLs only from the Hugging Face Hub and Civitai unless ``--allow-url-host``
  names more hosts or ``--allow-any-url`` is given; image URLs only from named hosts.
- A bearer token (``--token`` or ``$VIDLORA_SERVE_TOKEN``) guards every ``/v1`` route
  when set; ``/healthz`` stays open for load balancers.

Pure Python: no torch, no Ray.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from .config import ServeConfig
from .request import RequestError

__all__ = ["locate_source", "check_resolved", "check_image_url", "check_token", "is_remote_origin", "HUB_HOSTS",
           "CIVITAI_HOSTS"]  # fmt: skip

HUB_HOSTS = ("huggingface.co", "hf.co")
CIVITAI_HOSTS = ("civitai.com",)


def locate_source(source: str, config: ServeConfig, where: str) -> str:
    """The source to resolve for a request's ``source`` (a path inside a root when one
    holds it), or RequestError 403 naming the rule it breaks."""
    text = source.strip()
    lowered = text.lower()
    if lowered.startswith("civitai:"):
        return text
    if re.match(r"^https?://", text, re.I):
        host = (urlsplit(text).hostname or "").lower()
        if config.loopback or config.allow_any_url or _host_allowed(host, (*HUB_HOSTS, *CIVITAI_HOSTS, *_hub_endpoint(),
                                                                          *config.allow_url_hosts)):  # fmt: skip
            return text
        raise RequestError(403, f"{where}.model: URLs from {host or 'that host'} are not allowed on this server "
                           "(the Hugging Face Hub and Civitai are); start it with --allow-url-host "
                           f"{host or 'HOST'} or --allow-any-url", f"{where}.model")  # fmt: skip
    path = Path(text).expanduser()
    for root in config.lora_dirs:
        candidate = Path(root).expanduser() / text
        if not path.is_absolute() and candidate.exists():
            return _inside_roots(candidate, config, where)
    if path.is_absolute() or text.startswith(("~", ".")) or path.exists():
        return text if config.loopback else _inside_roots(path, config, where)
    return text  # owner/repo[/file]: the Hub (or a missing file: resolving it names the problem)


def is_remote_origin(origin: str) -> bool:
    """Whether a resolved source came from the network (its origin: ``hf:``, ``civitai:``, a URL)."""
    return origin.lower().startswith(("hf:", "civitai:", "http://", "https://"))


def check_resolved(resolved, config: ServeConfig, where: str) -> None:
    """Off loopback, a source that resolved to a local file (a name found in a LoRA folder,
    ``VIDLORA_LORA_DIRS`` included) must lie inside the ``--lora-dir`` roots."""
    if not config.loopback and not is_remote_origin(resolved.origin):
        _inside_roots(Path(resolved.path), config, where)


def check_image_url(url: str, config: ServeConfig) -> None:
    if config.loopback or config.allow_any_url:
        return
    host = (urlsplit(url).hostname or "").lower()
    if not _host_allowed(host, config.allow_url_hosts):
        raise RequestError(403, f"image: URLs from {host or 'that host'} are not allowed on this server; send the image "
                           f"as base64, or start it with --allow-url-host {host or 'HOST'}", "image")  # fmt: skip


def check_token(config: ServeConfig, authorization: str | None) -> None:
    """RequestError 401 unless the request carries ``Authorization: Bearer <token>``."""
    if not config.token:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.token.encode()):
        raise RequestError(401, "this server needs a bearer token: send the header Authorization: Bearer <token>")


def _inside_roots(path: Path, config: ServeConfig, where: str) -> str:
    real = path.resolve()
    for root in config.lora_dirs:
        if real.is_relative_to(Path(root).expanduser().resolve()):
            return str(real)
    if not config.lora_dirs:
        why = "this server takes local LoRA files only from --lora-dir folders, and has none"
    else:
        why = f"it is outside the --lora-dir folders ({', '.join(config.lora_dirs)})"
    raise RequestError(403, f"{where}.model: {path} is refused: {why}", f"{where}.model")


def _host_allowed(host: str, allowed) -> bool:
    return any(host == a.lower() or host.endswith("." + a.lower()) for a in allowed if a)


def _hub_endpoint() -> tuple[str, ...]:
    endpoint = os.environ.get("HF_ENDPOINT")
    host = urlsplit(endpoint).hostname if endpoint else None
    return (host,) if host else ()
