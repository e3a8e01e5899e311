"""The refresh token as a browser cookie (`x-refresh-token-transport: cookie`).

A web app cannot keep a refresh token away from scripts; an HttpOnly cookie it
never reads can. The contract (promised to the web app):

* `POST /v1/auth:login` and `POST /v1/auth:refresh` with the request header
  `x-refresh-token-transport: cookie` answer with
  `Set-Cookie: sm_refresh=<token>; HttpOnly; SameSite=Strict; Path=/v1/auth:refresh; Max-Age=<ttl>`
  (plus `Secure` when the request came over https, `x-forwarded-proto: https`) and
  leave `refreshToken` empty in the body;
* `POST /v1/auth:refresh` with an empty `refreshToken` reads the `sm_refresh` cookie;
* `POST /v1/auth:logout` and `:logoutEverywhere` clear it (`Max-Age=0`).

gRPC metadata in, response metadata out: the edge's transcoder turns the request's
HTTP headers into metadata and the response's initial metadata into headers. The
token stays out of URLs (and so out of the access log).
"""

from __future__ import annotations

from typing import Any

COOKIE_NAME = "sm_refresh"
#: Exactly the refresh call: a browser sends a cookie only to paths its Path covers
#: (RFC 6265 5.1.4), and "/v1/auth" does not cover "/v1/auth:refresh" (no "/" after
#: it). Logout clears it with the same Path without needing to receive it.
COOKIE_PATH = "/v1/auth:refresh"
#: Not a credential: only says "a refresh cookie was set" (see set_cookies).
HINT_COOKIE_NAME = "sm_session"
TRANSPORT_HEADER = "x-refresh-token-transport"


def _values(metadata: Any, key: str) -> list[str]:
    return [v for k, v in metadata or () if k == key and isinstance(v, str)]


def wants_cookie(metadata: Any) -> bool:
    """Whether the client asked for the refresh token as a cookie."""
    return any(v.strip().lower() == "cookie" for v in _values(metadata, TRANSPORT_HEADER))


def _secure(metadata: Any) -> bool:
    return any(v.strip().lower() == "https" for v in _values(metadata, "x-forwarded-proto"))


def refresh_cookie(metadata: Any) -> str:
    """The `sm_refresh` cookie of the request ("" when it has none)."""
    for header in _values(metadata, "cookie"):
        for pair in header.split(";"):
            name, _, value = pair.strip().partition("=")
            if name == COOKIE_NAME and value:
                return value.strip().strip('"')
    return ""


def set_cookies(token: str, max_age: int, metadata: Any) -> tuple[tuple[str, str], ...]:
    """The `set-cookie` response metadata carrying a refresh token (or clearing it), and
    the session hint beside it: `sm_session=1`, readable by scripts but secret-free, so
    a page load asks `:refresh` only when there is a session to restore (a refresh
    without a cookie is a failed request in every signed-out page's console)."""
    secure = ["Secure"] if _secure(metadata) else []
    refresh = [f"{COOKIE_NAME}={token}", "HttpOnly", "SameSite=Strict", f"Path={COOKIE_PATH}"]
    hint = [f"{HINT_COOKIE_NAME}={'1' if token else ''}", "SameSite=Strict", "Path=/"]
    return tuple(
        ("set-cookie", "; ".join([*parts, f"Max-Age={max_age}", *secure]))
        for parts in (refresh, hint)
    )


def clear_cookies(metadata: Any) -> tuple[tuple[str, str], ...]:
    return set_cookies("", 0, metadata)
