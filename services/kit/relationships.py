"""A service's own copy of the follow and block edges, kept from graph's typed events.

Services that must decide visibility inside their own SQL (search in user and post)
cannot read graph's tables; they keep `<schema>.search_follows` and
`<schema>.search_blocks` (each row carries the event id that set it) from
`Followed`/`Unfollowed`/`Blocked`/`Unblocked`. An edge changes only for a newer
event, so redelivered or reordered events never undo a later one.

The set-based writers below (`upsert_follows`, `retire_follows`, ...) apply graph's
export the same forward-only way (services/kit/backfill.py, docs/search.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from socialmesh.graph.v1 import events_pb2 as graph_events

from .consumers import EventHandlers, EventMeta
from .migrations import quote_ident

#: An asyncpg connection (inside the caller's transaction) or pool.
Executor = Any
EdgeChange = Callable[[int, int, bool, EventMeta], Awaitable[None]]
Pair = tuple[int, int]


def follow_lock_key(schema: str, follower: int, followee: int) -> str:
    """The advisory lock serialising writes to one edge of a copy that counts flips."""
    return f"{schema}-search-follow:{follower}:{followee}"


async def lock_follow_edges(db: Executor, schema: str, pairs: Sequence[Pair]) -> None:
    """Takes the edges' transaction-level advisory locks (in one order: no deadlocks)."""
    keys = sorted({follow_lock_key(schema, a, b) for a, b in pairs})
    if keys:
        await db.execute(
            """SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
               FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS ordered""",
            keys,
        )


async def upsert_follows(
    db: Executor, schema: str, pairs: Sequence[Pair], event_id: int
) -> list[Pair]:
    """Marks the edges followed as of `event_id` unless a newer event set them.

    Returns the edges that were not followed before (their state flipped).
    """
    if not pairs:
        return []
    s = quote_ident(schema)
    rows = await db.fetch(
        f"""WITH input AS (
                SELECT DISTINCT follower_id, followee_id
                FROM unnest($1::bigint[], $2::bigint[]) AS x(follower_id, followee_id)),
            before AS (
                SELECT i.follower_id, i.followee_id, coalesce(f.following, false) AS was
                FROM input i LEFT JOIN {s}.search_follows f USING (follower_id, followee_id)),
            written AS (
                INSERT INTO {s}.search_follows (follower_id, followee_id, following, event_id)
                SELECT follower_id, followee_id, true, $3 FROM input
                ON CONFLICT (follower_id, followee_id) DO UPDATE
                SET following = true, event_id = EXCLUDED.event_id
                WHERE {s}.search_follows.event_id < EXCLUDED.event_id
                RETURNING follower_id, followee_id)
            SELECT w.follower_id, w.followee_id
            FROM written w JOIN before b USING (follower_id, followee_id)
            WHERE NOT b.was""",
        [a for a, _ in pairs],
        [b for _, b in pairs],
        event_id,
    )
    return [(r[0], r[1]) for r in rows]


async def stale_follows(db: Executor, schema: str, event_id: int, limit: int) -> list[Pair]:
    """Followed edges last set before `event_id` (absent from a newer export)."""
    s = quote_ident(schema)
    rows = await db.fetch(
        f"""SELECT follower_id, followee_id FROM {s}.search_follows
            WHERE following AND event_id < $1 LIMIT $2""",
        event_id,
        limit,
    )
    return [(r[0], r[1]) for r in rows]


async def retire_follows(
    db: Executor, schema: str, pairs: Sequence[Pair], event_id: int
) -> list[Pair]:
    """Unfollows the edges as of `event_id` if still followed and older; those turned off."""
    if not pairs:
        return []
    s = quote_ident(schema)
    rows = await db.fetch(
        f"""UPDATE {s}.search_follows f SET following = false, event_id = $3
            FROM unnest($1::bigint[], $2::bigint[]) AS x(follower_id, followee_id)
            WHERE f.follower_id = x.follower_id AND f.followee_id = x.followee_id
              AND f.following AND f.event_id < $3
            RETURNING f.follower_id, f.followee_id""",
        [a for a, _ in pairs],
        [b for _, b in pairs],
        event_id,
    )
    return [(r[0], r[1]) for r in rows]


async def upsert_blocks(db: Executor, schema: str, pairs: Sequence[Pair], event_id: int) -> None:
    """Marks the edges blocked as of `event_id` unless a newer event set them."""
    if not pairs:
        return
    s = quote_ident(schema)
    await db.execute(
        f"""INSERT INTO {s}.search_blocks (blocker_id, blocked_id, blocking, event_id)
            SELECT DISTINCT blocker_id, blocked_id, true, $3::bigint
            FROM unnest($1::bigint[], $2::bigint[]) AS x(blocker_id, blocked_id)
            ON CONFLICT (blocker_id, blocked_id) DO UPDATE
            SET blocking = true, event_id = EXCLUDED.event_id
            WHERE {s}.search_blocks.event_id < EXCLUDED.event_id""",
        [a for a, _ in pairs],
        [b for _, b in pairs],
        event_id,
    )


async def retire_blocks(db: Executor, schema: str, event_id: int) -> int:
    """Unblocks every edge last set before `event_id`; how many were turned off."""
    s = quote_ident(schema)
    rows = await db.fetch(
        f"""UPDATE {s}.search_blocks SET blocking = false, event_id = $1
            WHERE blocking AND event_id < $1 RETURNING 1""",
        event_id,
    )
    return len(rows)


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
