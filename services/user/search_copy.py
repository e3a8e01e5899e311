"""The `user-search` consumer group: people search's copy of follows and blocks.

Search excludes accounts either side of a block with the viewer and ranks followed
accounts first in one SQL query (search.py), so it keeps its own copy of graph's
edges and of follower counts, from graph's events (kit/relationships.py: idempotent
and order-insensitive). EARLIEST: the copy needs every edge; what the streams no
longer hold is back-filled from graph's export (search.py, docs/search.md).
"""

from __future__ import annotations

from typing import ClassVar

from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.db import Database
from services.kit.relationships import (
    lock_follow_edges,
    on_relationship_events,
    set_block,
    set_follow,
)

GROUP = "user-search"
START = Start.EARLIEST


class SearchCopy:
    """The `user-search` consumer: graph events -> "user".search_follows, search_blocks
    and search_follower_counts."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, db: Database) -> None:
        self._db = db

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        on_relationship_events(handlers, self._follow, self._block)
        return handlers

    async def _follow(self, follower: int, followee: int, on: bool, meta: EventMeta) -> None:
        async with self._db.transaction() as conn:
            # One edge at a time (the back-fill takes the same locks), so "did it
            # flip?" is read and written atomically.
            await lock_follow_edges(conn, "user", [(follower, followee)])
            before = await conn.fetchval(
                """SELECT following FROM "user".search_follows
                   WHERE follower_id = $1 AND followee_id = $2""",
                follower,
                followee,
            )
            after = await set_follow(conn, "user", follower, followee, on, meta.event_id)
            if after is not None and bool(before) != after:
                await conn.execute(
                    """INSERT INTO "user".search_follower_counts (user_id, follower_count)
                       VALUES ($1, GREATEST($2, 0))
                       ON CONFLICT (user_id) DO UPDATE SET follower_count =
                         GREATEST("user".search_follower_counts.follower_count + $2, 0)""",
                    followee,
                    1 if after else -1,
                )

    async def _block(self, blocker: int, blocked: int, on: bool, meta: EventMeta) -> None:
        await set_block(self._db.primary, "user", blocker, blocked, on, meta.event_id)
