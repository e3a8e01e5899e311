"""What the home feed's read pipeline hands the presenter: one page, before it is a response."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

from .cursors import HomeCursor, Newer
from .timelines import Entry

#: The experiment label of pages no experiment arm shaped.
FOLLOWING_ARM = "following"


@dataclass
class FeedPage:
    """One page cut from the timelines (or a RANKED session)."""

    entries: list[Entry]
    posts: dict[int, post_pb2.Post]
    kind: int
    next_cursor: HomeCursor | None
    newer_cursor: Newer
    new_item_count: int = 0
    scores: list[float] = field(default_factory=list)
    first_rank: int = 0
    arm: str = FOLLOWING_ARM
    #: Per entry, where a RANKED item came from (features.SOURCES).
    sources: list[str] = field(default_factory=list)
    #: Author and reposter cards already fetched for this page (by user id).
    cards: dict[int, user_pb2.User] = field(default_factory=dict)


def allowed(entry: Entry, muted: Set[int], hidden: Set[int]) -> bool:
    """Not hidden by feedback, and neither its author nor its reposter is muted."""
    return (
        entry.post_id not in hidden
        and entry.author_id not in muted
        and entry.sharer_id not in muted
    )
