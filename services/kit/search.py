"""What every service's search shares: the anonymous-search budget and planning per query."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import asyncpg
import grpc

from .auth import current_viewer_id
from .db import Database
from .ratelimit import RateLimiter, client_address

#: Anonymous searches per client address per minute (SEARCH_ANONYMOUS_PER_MINUTE).
ANONYMOUS_SEARCHES_PER_MINUTE = 60


def anonymous_limit() -> int:
    """`SEARCH_ANONYMOUS_PER_MINUTE` overrides the default (shared addresses, test stacks)."""
    value = int(os.environ.get("SEARCH_ANONYMOUS_PER_MINUTE", ANONYMOUS_SEARCHES_PER_MINUTE))
    if value < 1:
        raise SystemExit("SEARCH_ANONYMOUS_PER_MINUTE must be a positive number")
    return value


async def limit_anonymous(limiter: RateLimiter, context: grpc.aio.ServicerContext) -> int | None:
    """The viewer; an anonymous caller spends one unit of its client's budget."""
    viewer = current_viewer_id()
    if viewer is None:
        client = client_address(context.invocation_metadata(), context.peer())
        if client is not None:
            await limiter.enforce(client, "anonymous searches per client")
    return viewer


async def fetch_planned_per_query(
    db: Database, sql: str, args: Sequence[Any]
) -> list[asyncpg.Record]:
    """Runs a search query with a plan made for its actual parameters.

    After five executions PostgreSQL may switch a prepared statement to a generic
    plan, blind to the query's values (how common the words are, how long the
    prefix is); for search that turned 15 ms into 900 ms on the seeded data. The
    setting is LOCAL to this read-only transaction.
    """
    async with db.reader().acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return list(await conn.fetch(sql, *args))
