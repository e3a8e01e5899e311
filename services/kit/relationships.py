"""A service's own copy of the follow and block edges, kept from graph's typed events.

Services that must decide visibility inside their own SQL (search in user and post)
cannot read graph's tables; they keep `<schema>.search_follows` and
`<schema>.search_blocks` (each row carries the event id that set it) from
`Followed`/`Unfollowed`/`Blocked`/`Unblocked`. An edge changes only for a newer
event, so redelivered or reordered events never undo a later one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from socialmesh.graph.v1 import events_pb2 as graph_events

from .consumers import EventHandlers, EventMeta
from .migrations import quote_ident

#: An asyncpg connection (inside the caller's transaction) or pool.
Executor = Any
EdgeChange = Callable[[int, int, bool, EventMeta], Awaitable[None]]


async def set_follow(
    db: Executor, schema: str, follower: int, followee: int, on: bool, event_id: int
) -> bool | None:
    """Records the edge; its new state, or None when a newer event already set it."""
    s = quote_ident(schema)
    value = await db.fetchval(
        f"""INSERT INTO {s}.search_follows (follower_id, followee_id, following, event_id)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (follower_id, followee_id) DO UPDATE
            SET following = EXCLUDED.following, event_id = EXCLUDED.event_id
            WHERE {s}.search_follows.event_id < EXCLUDED.event_id
            RETURNING following""",
        follower,
        followee,
        on,
        event_id,
    )
    return None if value is None else bool(value)


async def set_block(
    db: Executor, schema: str, blocker: int, blocked: int, on: bool, event_id: int
) -> None:
    s = quote_ident(schema)
    await db.execute(
        f"""INSERT INTO {s}.search_blocks (blocker_id, blocked_id, blocking, event_id)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (blocker_id, blocked_id) DO UPDATE
            SET blocking = EXCLUDED.blocking, event_id = EXCLUDED.event_id
            WHERE {s}.search_blocks.event_id < EXCLUDED.event_id""",
        blocker,
        blocked,
        on,
        event_id,
    )


def on_relationship_events(handlers: EventHandlers, follow: EdgeChange, block: EdgeChange) -> None:
    """Routes graph's four edge events to `follow(a, b, on, meta)` / `block(a, b, on, meta)`."""

    async def followed(e: graph_events.Followed, meta: EventMeta) -> None:
        await follow(e.follower_id, e.followee_id, True, meta)

    async def unfollowed(e: graph_events.Unfollowed, meta: EventMeta) -> None:
        await follow(e.follower_id, e.followee_id, False, meta)

    async def blocked(e: graph_events.Blocked, meta: EventMeta) -> None:
        await block(e.blocker_id, e.blocked_id, True, meta)

    async def unblocked(e: graph_events.Unblocked, meta: EventMeta) -> None:
        await block(e.blocker_id, e.blocked_id, False, meta)

    handlers.on(graph_events.Followed, followed)
    handlers.on(graph_events.Unfollowed, unfollowed)
    handlers.on(graph_events.Blocked, blocked)
    handlers.on(graph_events.Unblocked, unblocked)
