"""The `user-counts` consumer group: profile counts and cached relationships go stale.

Graph and post bump a user's generations (kit/counts.py, kit/relcache.py) after
their change commits; these events bump them again in case a writer died in
between. LATEST: entries cached before this group existed expire within the hour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import redis.asyncio as aioredis
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.post.v1 import events_pb2 as post_events

from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.counts import GENERATIONS as COUNTS
from services.kit.counts import changed
from services.kit.generations import bump
from services.kit.relcache import GENERATIONS as RELATIONSHIPS

GROUP = "user-counts"
START = Start.LATEST

#: Graph events that change a relationship -> the pair whose cached entries go stale.
RELATIONSHIP_EVENTS: dict[type[Any], Callable[[Any], tuple[int, int]]] = {
    graph_events.Followed: lambda e: (e.follower_id, e.followee_id),
    graph_events.Unfollowed: lambda e: (e.follower_id, e.followee_id),
    graph_events.FollowRequested: lambda e: (e.requester_id, e.target_id),
    graph_events.FollowRequestAccepted: lambda e: (e.requester_id, e.target_id),
    graph_events.Blocked: lambda e: (e.blocker_id, e.blocked_id),
    graph_events.Unblocked: lambda e: (e.blocker_id, e.blocked_id),
    graph_events.Muted: lambda e: (e.muter_id, e.muted_id),
    graph_events.Unmuted: lambda e: (e.muter_id, e.muted_id),
}
#: ... and those that change follower/following counts too.
COUNT_EVENTS = {graph_events.Followed, graph_events.Unfollowed}


class StaleCounts:
    """The `user-counts` consumer: graph and post events -> generation bumps."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        for event_type in RELATIONSHIP_EVENTS:
            handlers.on(event_type, self.on_graph_changed)
        handlers.on(post_events.PostCreated, self.on_post_created)
        handlers.on(post_events.PostDeleted, self.on_post_deleted)
        return handlers

    async def on_graph_changed(self, event: Any, _: EventMeta) -> None:
        """Relationships of the pair go stale, and their counts if an edge changed."""
        kind = type(event)
        namespaces = [RELATIONSHIPS, COUNTS] if kind in COUNT_EVENTS else [RELATIONSHIPS]
        await bump(self._redis, namespaces, RELATIONSHIP_EVENTS[kind](event))

    async def on_post_created(self, event: post_events.PostCreated, _: EventMeta) -> None:
        await changed(self._redis, (event.author_id,))

    async def on_post_deleted(self, event: post_events.PostDeleted, _: EventMeta) -> None:
        await changed(self._redis, (event.author_id,))
