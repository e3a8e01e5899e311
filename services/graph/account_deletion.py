"""The `graph` consumer: a deleted account leaves the graph.

Its edges go and everyone it touched has their counts and cached relationships
made stale. EARLIEST: a deletion from before this group existed still counts.
"""

from __future__ import annotations

from typing import ClassVar

import redis.asyncio as aioredis
from socialmesh.user.v1 import events_pb2 as user_events_pb2

from services.kit.consumers import EventHandlers, EventMeta, Start

from .changes import changed
from .store import GraphStore

GROUP = "graph"
START = Start.EARLIEST


class AccountDeletion:
    """UserDeleted -> the account's edges removed, the other ends' caches stale."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, redis: aioredis.Redis, store: GraphStore) -> None:
        self._redis = redis
        self._store = store

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(user_events_pb2.UserDeleted, self.on_user_deleted)
        return handlers

    async def on_user_deleted(self, event: user_events_pb2.UserDeleted, _: EventMeta) -> None:
        touched = await self._store.forget_user(event.user_id)
        await changed(self._redis, *touched, event.user_id)
