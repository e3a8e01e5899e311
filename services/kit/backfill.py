"""Back-fill of a service's event-fed copies from their owners' internal exports.

A copy kept from events (services/kit/relationships.py; search's account states)
only knows the events still in the streams: rows loaded with COPY (`socialmesh
seed`) or events trimmed before the consumer group existed never reach it. The
back-fill pages through the owner's service-only export (graph
`ExportRelationships`, user `ExportAccountStates`) with this service's own
credential and writes every row with the copy's forward-only upserts.

Ordering: every back-filled row carries the event id of the *snapshot*, a
snowflake for (start of the export - `SNAPSHOT_MARGIN_MS`). An event newer than
that still wins over the row (it may describe a change the export missed or
already shows: either way it is the truth), and an event older than that is
already reflected in what the export reads (a write transaction older than the
margin has committed). Rows the copy holds "on" with an older event id that the
export no longer contains (an unfollow or unblock whose event was lost) are
turned off with the snapshot's id.

When: `socialmesh search backfill` runs it on demand; a service runs it in the
background when its copy has never been back-filled (no row in
`<schema>.search_backfill`), under a PostgreSQL advisory lock so only one
replica does the work. `socialmesh seed` empties that table, so running services
back-fill within `RECHECK_SECONDS` and stopped ones at their next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc

from .db import Database
from .ids import EPOCH_MS, SEQUENCE_BITS, WORKER_BITS
from .migrations import quote_ident
from .relationships import (
    Executor,
    Pair,
    lock_follow_edges,
    retire_blocks,
    retire_follows,
    stale_follows,
    upsert_blocks,
    upsert_follows,
)
from .tasks import BackgroundLoop

log = logging.getLogger("socialmesh.backfill")
T = TypeVar("T")

#: How far before the export's start its rows are dated (see the module docstring).
SNAPSHOT_MARGIN_MS = 60_000
#: Rows asked for per export page (the exports' maximum).
EXPORT_PAGE_SIZE = 10_000
#: Edges per transaction where writes take per-edge advisory locks (user search
#: counts follows that flip): the shared lock table holds a few thousand locks.
LOCKED_CHUNK = 1_000
#: How often a running service checks whether its copy must be back-filled again
#: (`socialmesh seed` asks for it by emptying `<schema>.search_backfill`).
RECHECK_SECONDS = 60.0
#: Called in the writing transaction with the follows that flipped (follower,
#: followee, now following): user search keeps follower counts from them.
FollowFlips = Callable[[Executor, list[tuple[int, int, bool]]], Awaitable[None]]


def snapshot_event_id(now_ms: int | None = None) -> int:
    """The smallest snowflake of (now - margin): below every id minted from then on."""
    at = (int(time.time() * 1000) if now_ms is None else now_ms) - SNAPSHOT_MARGIN_MS
    return max(at - EPOCH_MS, 0) << (WORKER_BITS + SEQUENCE_BITS)


@dataclass
class BackfillResult:
    """What one back-fill wrote."""

    snapshot_event_id: int
    follows: int = 0
    blocks: int = 0
    accounts: int = 0
    #: Rows the copy had "on" that the export no longer has.
    retired: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.follows:,} follows, {self.blocks:,} blocks, {self.accounts:,} accounts, "
            f"{self.retired:,} stale rows turned off in {self.seconds:.1f}s "
            f"(snapshot event id {self.snapshot_event_id})"
        )


async def export_pages(
    fetch: Callable[[str], Awaitable[tuple[Sequence[T], str]]],
) -> AsyncIterator[Sequence[T]]:
    """Every page of an AIP-158 list: `fetch(page_token)` -> (rows, next_page_token)."""
    token = ""
    while True:
        rows, token = await fetch(token)
        yield rows
        if not token:
            return


async def backfill_relationships(
    db: Database,
    schema: str,
    graph: graph_pb2_grpc.GraphServiceAsyncStub,
    event_id: int,
    result: BackfillResult,
    *,
    on_follow_flips: FollowFlips | None = None,
) -> None:
    """Writes graph's follows and blocks into `<schema>.search_follows/_blocks`.

    With `on_follow_flips` the follow writes take the same per-edge locks as the
    event handler, so "did it flip?" is exact, and report the flips in their
    transaction.
    """

    async def fetch(token: str) -> tuple[Sequence[graph_pb2.RelationshipEdge], str]:
        reply = await graph.ExportRelationships(
            graph_pb2.ExportRelationshipsRequest(page_size=EXPORT_PAGE_SIZE, page_token=token),
            timeout=30,
        )
        return reply.edges, reply.next_page_token

    async for page in export_pages(fetch):
        follows = [
            (e.from_user_id, e.to_user_id)
            for e in page
            if e.kind == graph_pb2.RELATIONSHIP_KIND_FOLLOW
        ]
        blocks = [
            (e.from_user_id, e.to_user_id)
            for e in page
            if e.kind == graph_pb2.RELATIONSHIP_KIND_BLOCK
        ]
        await _write_follows(db, schema, follows, event_id, on_follow_flips)
        if blocks:
            await upsert_blocks(db.primary, schema, blocks, event_id)
        result.follows += len(follows)
        result.blocks += len(blocks)
    # What the export no longer has but the copy still holds from older events.
    while stale := await stale_follows(db.primary, schema, event_id, LOCKED_CHUNK):
        result.retired += await _retire_follows(db, schema, stale, event_id, on_follow_flips)
    result.retired += await retire_blocks(db.primary, schema, event_id)


async def _write_follows(
    db: Database,
    schema: str,
    pairs: list[Pair],
    event_id: int,
    on_follow_flips: FollowFlips | None,
) -> None:
    if on_follow_flips is None:
        await upsert_follows(db.primary, schema, pairs, event_id)
        return
    for start in range(0, len(pairs), LOCKED_CHUNK):
        chunk = pairs[start : start + LOCKED_CHUNK]
        async with db.transaction() as conn:
            await lock_follow_edges(conn, schema, chunk)
            flipped = await upsert_follows(conn, schema, chunk, event_id)
            if flipped:
                await on_follow_flips(conn, [(a, b, True) for a, b in flipped])


async def _retire_follows(
    db: Database,
    schema: str,
    pairs: list[Pair],
    event_id: int,
    on_follow_flips: FollowFlips | None,
) -> int:
    async with db.transaction() as conn:
        if on_follow_flips is not None:
            await lock_follow_edges(conn, schema, pairs)
        retired = await retire_follows(conn, schema, pairs, event_id)
        if retired and on_follow_flips is not None:
            await on_follow_flips(conn, [(a, b, False) for a, b in retired])
    return len(retired)


# -- when it runs -------------------------------------------------------------------


def _lock_key(schema: str) -> str:
    return f"search-backfill:{schema}"


async def is_backfilled(db: Database, schema: str) -> bool:
    """Whether the copy has been back-filled since it was last asked for."""
    s = quote_ident(schema)
    return bool(await db.primary.fetchval(f"SELECT EXISTS (SELECT 1 FROM {s}.search_backfill)"))


async def request_backfill(conn: Executor, schema: str) -> None:
    """Asks for a new back-fill (bulk loads that bypass events call it)."""
    await conn.execute(f"DELETE FROM {quote_ident(schema)}.search_backfill")


async def run_backfill(
    db: Database,
    schema: str,
    fill: Callable[[int, BackfillResult], Awaitable[None]],
    *,
    wait: bool,
) -> BackfillResult | None:
    """Runs `fill(snapshot_event_id, result)` under the copy's advisory lock, then marks it.

    `wait=False` (a service starting): gives up when another process holds the
    lock or the copy has been back-filled meanwhile; `wait=True` (the CLI):
    waits for the lock and always runs.
    """
    s = quote_ident(schema)
    async with db.primary.acquire() as lock:
        if wait:
            await lock.execute(
                "SELECT pg_advisory_lock(hashtextextended($1, 0))", _lock_key(schema)
            )
        elif not await lock.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", _lock_key(schema)
        ):
            return None
        try:
            if not wait and await is_backfilled(db, schema):
                return None
            started = time.monotonic()
            result = BackfillResult(snapshot_event_id())
            await fill(result.snapshot_event_id, result)
            result.seconds = time.monotonic() - started
            await db.primary.execute(
                f"""INSERT INTO {s}.search_backfill
                        (snapshot_event_id, follows, blocks, accounts, retired)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (snapshot_event_id) DO NOTHING""",
                result.snapshot_event_id,
                result.follows,
                result.blocks,
                result.accounts,
                result.retired,
            )
            return result
        finally:
            await lock.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_key(schema)
            )


class BackfillWorker(BackgroundLoop):
    """Back-fills a service's copy in the background whenever it has not been.

    Checks at start and every `recheck_seconds`; retries with backoff while the
    exporting services are not reachable yet. Start-up is never blocked.
    """

    def __init__(
        self,
        db: Database,
        schema: str,
        fill: Callable[[int, BackfillResult], Awaitable[None]],
        *,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._db = db
        self._schema = schema
        self._fill = fill
        self._recheck = recheck_seconds
        #: Set once the copy is known to be back-filled (tests wait on it).
        self.done = asyncio.Event()

    def task_name(self) -> str:
        return f"search-backfill-{self._schema}"

    async def run(self) -> None:
        failures = 0
        while True:
            delay = self._recheck
            try:
                if not await is_backfilled(self._db, self._schema):
                    log.info("%s search copy: back-filling from the exports", self._schema)
                    result = await run_backfill(self._db, self._schema, self._fill, wait=False)
                    if result is not None:
                        log.info("%s search copy back-filled: %s", self._schema, result.describe())
                if await is_backfilled(self._db, self._schema):
                    self.done.set()
                else:  # another replica holds the lock: look again soon
                    self.done.clear()
                    delay = min(5.0, self._recheck)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop outlives any failure (peers still starting...)
                failures += 1
                delay = min(2.0**failures, self._recheck)
                if isinstance(exc, grpc.aio.AioRpcError):  # peers still starting, usually
                    why = f"{exc.code().name}: {exc.details()}"
                else:
                    why = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s search copy: back-fill failed (%s); retrying in %.0fs",
                    self._schema,
                    why,
                    delay,
                )
            await asyncio.sleep(delay)
