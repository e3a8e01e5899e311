"""The `post-search` consumer: post's own copy of what search visibility needs.

Follows, blocks, and private or deleted accounts from graph's and user's events,
written to `search_follows`, `search_blocks` and `search_authors` so a search page
decides visibility inside its one query (search.py). Events are applied
order-insensitively by event id; what the streams no longer hold is back-filled
from graph's and user's exports in the background (docs/search.md).
"""

from __future__ import annotations

from typing import ClassVar

from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.user.v1 import events_pb2 as user_events
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.backfill import BackfillResult, BackfillWorker
from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.db import Database
from services.kit.relationships import on_relationship_events, set_block, set_follow

from .search import backfill

GROUP = "post-search"
#: Every retained event counts: the copy must hold every follow and block.
START = Start.EARLIEST


class SearchProjection:
    """Graph's and user's events -> post's search-visibility tables."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, db: Database) -> None:
        self._db = db

    def handlers(self) -> EventHandlers:
        h = EventHandlers()
        on_relationship_events(h, self._follow, self._block)
        h.on(user_events.UserUpdated, self._on_user_updated)
        h.on(user_events.UserDeleted, self._on_user_deleted)
        return h

    async def _follow(self, follower: int, followee: int, on: bool, meta: EventMeta) -> None:
        await set_follow(self._db.primary, "post", follower, followee, on, meta.event_id)

    async def _block(self, blocker: int, blocked: int, on: bool, meta: EventMeta) -> None:
        await set_block(self._db.primary, "post", blocker, blocked, on, meta.event_id)

    async def _on_user_updated(self, e: user_events.UserUpdated, meta: EventMeta) -> None:
        await self._db.primary.execute(
            """INSERT INTO post.search_authors (user_id, is_private, event_id) VALUES ($1, $2, $3)
               ON CONFLICT (user_id) DO UPDATE
               SET is_private = EXCLUDED.is_private, event_id = EXCLUDED.event_id
               WHERE post.search_authors.event_id < EXCLUDED.event_id""",
            e.user_id,
            e.is_private,
            meta.event_id,
        )

    async def _on_user_deleted(self, e: user_events.UserDeleted, meta: EventMeta) -> None:
        # Deletion is final, whatever order the events come in.
        await self._db.primary.execute(
            """INSERT INTO post.search_authors (user_id, deleted, event_id) VALUES ($1, true, $2)
               ON CONFLICT (user_id) DO UPDATE SET deleted = true""",
            e.user_id,
            meta.event_id,
        )

    def backfill_worker(
        self,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        users: user_pb2_grpc.UserServiceAsyncStub,
    ) -> BackfillWorker:
        """Back-fills the copy in the background whenever it never was (docs/search.md)."""

        async def fill(event_id: int, result: BackfillResult) -> None:
            await backfill(self._db, graph, users, event_id, result)

        return BackfillWorker(self._db, "post", fill)
