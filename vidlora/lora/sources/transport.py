"""Opening HTTP(S) requests for the sources, and their failures as SourceError.

urllib, not a third-party client: the downloads need only GET with a few headers, and
the redirect handler below is the one piece of policy (credentials never follow a
redirect to another host).
"""

from __future__ import annotations

import functools
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from vidlora.errors import SourceError

__all__ = ["Auth", "open_url", "http_error", "connection_error"]

_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Auth:
    """A bearer token for one service, and what to tell the user when it does not do.

    token: sent as ``Authorization: Bearer``; None sends nothing.
    refused: the advice after HTTP 401/403.
    login_page: appended when an HTML page comes back instead of the file (services that
        answer a missing key with a login page, not a 401); None adds nothing.
    """

    token: str | None = None
    refused: str = "the server wants credentials vidlora does not have"
    login_page: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


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


@functools.lru_cache(maxsize=1)
def _user_agent() -> str:
    # From the installed distribution, not ``vidlora.__version__``: importing the package
    # root from here would make the lora layer depend on the facade above every layer.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"vidlora/{version('vidlora')}"
    except PackageNotFoundError:  # a checkout on sys.path, never installed
        return "vidlora"


def open_url(url: str, headers: dict[str, str]):
    """GET ``url`` (30 s socket timeout); raises urllib's HTTPError / URLError / OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent(), **headers})
    opener = urllib.request.build_opener(_DropAuthOnHostChange)
    return opener.open(request, timeout=_TIMEOUT_S)


def http_error(exc: urllib.error.HTTPError, what: str, auth: Auth) -> SourceError:
    code = exc.code
    if code in (401, 403):
        return SourceError(f"{what}: HTTP {code} {exc.reason}: {auth.refused}")
    if code == 404:
        return SourceError(f"{what}: HTTP 404 Not Found (check the id or URL)")
    if code == 429:
        return SourceError(f"{what}: HTTP 429 Too Many Requests; wait a minute and try again")
    return SourceError(f"{what}: HTTP {code} {exc.reason}")


def connection_error(exc: BaseException, what: str, url: str) -> SourceError:
    reason = getattr(exc, "reason", exc)
    parsed = urllib.parse.urlparse(url)
    host = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")  # never user:password@
    return SourceError(f"{what}: cannot reach {host} ({reason}); check the network (offline?)")
