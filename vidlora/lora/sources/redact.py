"""URLs without their secrets, for messages, origins and cache records.

Civitai download links and signed storage URLs carry tokens in the query
(``?token=...``, ``X-Amz-Signature=...``); a URL with a password has it in the netloc.
Both are replaced before a URL is printed or written anywhere.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact_url"]

_SECRET_KEY = re.compile(r"token|key|sig|signature|auth|credential|password", re.I)


def redact_url(url: str) -> str:
    """``url`` with secret-looking query values as ``***`` and no user:password."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.query and not parsed.password:
        return url
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    clean = urllib.parse.urlencode([(k, "***" if _SECRET_KEY.search(k) else v) for k, v in query], safe="*")
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc, query=clean))
