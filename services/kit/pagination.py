"""Opaque, tamper-checked page tokens for keyset pagination (AIP-158).

A token is base64url(JSON payload) + "." + base64url(HMAC-SHA256). The payload
names the list it belongs to (`scope`) so a token from one list (or for another
user) is rejected instead of silently paging something else.

Servicers page through `PageTokens.page(...)`:

    page = tokens.page(f"followers:{user_id}", "edge_id", request)
    rows = await store.followers(user_id, page.position, page.limit)
    return Reply(items=page.rows(rows), next_page_token=page.next_token(rows, key_of))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
T = TypeVar("T")


@dataclass(frozen=True)
class PageSizes:
    """A list's page sizes (its contract): page_size 0 means `default`, more than
    `maximum` is clamped."""

    default: int = DEFAULT_PAGE_SIZE
    maximum: int = 1000


#: What most lists document: "default 50, at most 1000".
STANDARD_PAGES = PageSizes()


class PageRequest(Protocol):
    """Any AIP-158 List request."""

    @property
    def page_size(self) -> int: ...

    @property
    def page_token(self) -> str: ...


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

    def page(
        self,
        scope: str,
        key: str,
        request: PageRequest,
        sizes: PageSizes = STANDARD_PAGES,
    ) -> Page:
        """The page a request asks for: its size and the keyset position to continue from.

        `key` names the position in the token (the column the list is ordered
        by, e.g. "edge_id"); `scope` binds the token to this one list.
        """
        size = page_size(request.page_size, default=sizes.default, maximum=sizes.maximum)
        position = self.decode(scope, request.page_token)
        after: int | None = None
        if position is not None:
            value = position.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument([("page_token", "invalid or tampered page token")])
            after = value
        return Page(self, scope, key, size, after)


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated list.

    Fetch `limit` rows (one more than the page, to learn whether another page
    follows) continuing from `position` (None: the first page).
    """

    tokens: PageTokens
    scope: str
    key: str
    size: int
    #: Key of the last row of the previous page; None on the first page.
    position: int | None

    @property
    def limit(self) -> int:
        return self.size + 1

    def rows(self, fetched: Sequence[T]) -> list[T]:
        """The rows that belong on this page."""
        return list(fetched[: self.size])

    def next_token(self, fetched: Sequence[T], key_of: Callable[[T], int]) -> str:
        """Token for the page after this one; empty when this is the last page."""
        if len(fetched) <= self.size:
            return ""
        return self.tokens.encode(self.scope, {self.key: key_of(fetched[self.size - 1])})


def page_size(
    requested: int,
    *,
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = 1000,
    field: str = "page_size",
) -> int:
    """AIP-158: 0 means the default, above the maximum is clamped, negative is an error."""
    if requested < 0:
        raise InvalidArgument([(field, "must not be negative")])
    return min(requested or default, maximum)


# Typed page positions read their token body's fields through these: a field of the
# wrong type is a tampered token (INVALID_ARGUMENT), never a crash.


def str_field(position: Mapping[str, object], key: str) -> str:
    value = position.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument([("page_token", "invalid or tampered page token")])
    return value


def int_field(position: Mapping[str, object], key: str) -> int:
    value = position.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument([("page_token", "invalid or tampered page token")])
    return value
