"""Opaque, tamper-checked page tokens for keyset pagination (AIP-158).

A token is base64url(JSON payload) + "." + base64url(HMAC-SHA256). The payload
names the list it belongs to (`scope`) so a token from one list (or for another
user) is rejected instead of silently paging something else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("page token secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]

    def encode(self, scope: str, position: dict[str, Any]) -> str:
        body = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def decode(self, scope: str, token: str, field: str = "page_token") -> dict[str, Any] | None:
        """The position in a token, None for the first page; INVALID_ARGUMENT if forged."""
        if not token:
            return None
        try:
            body_text, signature = token.split(".", 1)
            body = _unb64(body_text)
            if not hmac.compare_digest(_unb64(signature), self._sign(body)):
                raise ValueError("bad signature")
            data = json.loads(body)
            if data.get("s") != scope or not isinstance(data.get("p"), dict):
                raise ValueError("token of another list")
            return dict(data["p"])
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise InvalidArgument([(field, "invalid or tampered page token")]) from exc


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = 1000) -> int:
    """AIP-158: 0 means the default, above the maximum is clamped, negative is an error."""
    if requested < 0:
        raise InvalidArgument([("page_size", "must not be negative")])
    return min(requested or default, maximum)
