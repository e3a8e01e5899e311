"""Typed page positions of the feed's listings, sealed in kit `PageTokens`.

The token body keeps its short keys (tokens already handed out stay valid):

* `Older(before, top)` (`b`, `t`; scope `feed:<viewer>:<FOLLOWING>`): a FOLLOWING
  page older than `before`; `top` heads the session
* `Newer(after)` (`a`; FOLLOWING scope): entries newer than `after`, a
  newer_page_token of either tab
* `RankedAt(session, offset, top)` (`r`, `o`, `t`; scope `feed:<viewer>:<RANKED>`):
  a page of a scored RANKED session
* `TrendAt(snapshot, offset)` (`k`, `o`; scope `trends:<what>:<window>`): a page of
  a trends snapshot

A field of the wrong type is a tampered token (INVALID_ARGUMENT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from socialmesh.feed.v1 import feed_pb2

from services.kit.errors import InvalidArgument
from services.kit.pagination import PageTokens, int_field, str_field

FOLLOWING = feed_pb2.FEED_KIND_FOLLOWING
RANKED = feed_pb2.FEED_KIND_RANKED


@dataclass(frozen=True)
class Older:
    """FOLLOWING: entries older than `before` ("": from the top); `top` heads the session."""

    before: str = ""
    top: str = ""

    def body(self) -> dict[str, Any]:
        return {"b": self.before, "t": self.top}


@dataclass(frozen=True)
class Newer:
    """Entries newer than `after` (read FOLLOWING-style, whichever tab asks)."""

    after: str

    def body(self) -> dict[str, Any]:
        return {"a": self.after}


@dataclass(frozen=True)
class RankedAt:
    """RANKED: `offset` into the scored session `session`; `top` heads the session."""

    session: str
    offset: int
    top: str

    def body(self) -> dict[str, Any]:
        return {"r": self.session, "o": self.offset, "t": self.top}


HomeCursor = Older | Newer | RankedAt


def home_scope(viewer: int, kind: int) -> str:
    return f"feed:{viewer}:{kind}"


def encode_home(tokens: PageTokens, viewer: int, cursor: HomeCursor) -> str:
    kind = RANKED if isinstance(cursor, RankedAt) else FOLLOWING
    return tokens.encode(home_scope(viewer, kind), cursor.body())


def decode_home(tokens: PageTokens, viewer: int, kind: int, token: str) -> HomeCursor | None:
    """A GetHomeFeed page_token of tab `kind`; a newer_page_token of either tab is accepted."""
    if not token:
        return None
    try:
        position = tokens.decode(home_scope(viewer, kind), token)
    except InvalidArgument:
        position = tokens.decode(home_scope(viewer, FOLLOWING), token)
        if position is None or "a" not in position:
            raise
    if position is None:
        return None
    if "a" in position:
        return Newer(str_field(position, "a"))
    if kind == RANKED:
        return RankedAt(
            str_field(position, "r"), int_field(position, "o"), str_field(position, "t")
        )
    return Older(str_field(position, "b"), str_field(position, "t"))


@dataclass(frozen=True)
class TrendAt:
    """A trends listing's page: `offset` into the snapshot `snapshot`."""

    snapshot: str
    offset: int

    def body(self) -> dict[str, Any]:
        return {"k": self.snapshot, "o": self.offset}


def trend_scope(what: str, window: int) -> str:
    return f"trends:{what}:{window}"


def decode_trend(tokens: PageTokens, what: str, window: int, token: str) -> TrendAt | None:
    position = tokens.decode(trend_scope(what, window), token)
    if position is None:
        return None
    return TrendAt(str_field(position, "k"), int_field(position, "o"))


def encode_trend(tokens: PageTokens, what: str, window: int, at: TrendAt) -> str:
    return tokens.encode(trend_scope(what, window), at.body())
