"""PostgreSQL storage of the feed service (schema "feed"): impressions and feedback.

Timelines live in Redis (`timelines.py`); this holds what must be durable: what
clients displayed and what users asked to see less (or more) of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.kit.db import Database

SCHEMA = "feed"

NOT_INTERESTED = 1
SHOW_LESS_FROM_AUTHOR = 2
SHOW_MORE = 3


@dataclass(frozen=True)
class ImpressionRow:
    impression_id: str
    post_id: int
    surface: int
    position: int
    served_kind: int
    served_rank: int
    score: float
    arm: str
    dwell_ms: int
    display_time: datetime | None


@dataclass
class Feedback:
    """A viewer's feedback, as the next page applies it."""

    hidden_posts: set[int] = field(default_factory=set)
    less_authors: set[int] = field(default_factory=set)
    more_authors: set[int] = field(default_factory=set)


class FeedStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_impressions(self, viewer_id: int, rows: list[ImpressionRow]) -> int:
        """Inserts the impressions not recorded before; returns how many were new."""
        if not rows:
            return 0
        inserted = await self._db.primary.fetch(
            """INSERT INTO feed.impressions (viewer_id, impression_id, post_id, surface, position,
                   served_kind, served_rank, score, arm, dwell_ms, display_time)
               SELECT $1, i.* FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::int[],
                   $6::smallint[], $7::int[], $8::float8[], $9::text[], $10::bigint[],
                   $11::timestamptz[])
                 AS i(impression_id, post_id, surface, position, served_kind, served_rank,
                      score, arm, dwell_ms, display_time)
               ON CONFLICT DO NOTHING RETURNING impression_id""",
            viewer_id,
            [r.impression_id for r in rows],
            [r.post_id for r in rows],
            [r.surface for r in rows],
            [r.position for r in rows],
            [r.served_kind for r in rows],
            [r.served_rank for r in rows],
            [r.score for r in rows],
            [r.arm for r in rows],
            [r.dwell_ms for r in rows],
            [r.display_time for r in rows],
        )
        return len(inserted)

    async def add_feedback(self, viewer_id: int, post_id: int, author_id: int, kind: int) -> bool:
        inserted = await self._db.primary.fetchval(
            """INSERT INTO feed.feedback (viewer_id, post_id, author_id, kind)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            viewer_id,
            post_id,
            author_id,
            kind,
        )
        return bool(inserted)

    async def feedback(self, viewer_id: int) -> Feedback:
        """The viewer's feedback (primary: it must count from the very next page)."""
        rows = await self._db.primary.fetch(
            "SELECT post_id, author_id, kind FROM feed.feedback WHERE viewer_id = $1", viewer_id
        )
        out = Feedback()
        for row in rows:
            if row["kind"] == NOT_INTERESTED:
                out.hidden_posts.add(row["post_id"])
            elif row["kind"] == SHOW_LESS_FROM_AUTHOR:
                out.less_authors.add(row["author_id"])
            elif row["kind"] == SHOW_MORE:
                out.more_authors.add(row["author_id"])
        out.more_authors -= out.less_authors
        return out
