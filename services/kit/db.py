"""asyncpg pools: one primary for writes, optional replicas for lag-tolerant reads."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .tasks import retry_with_backoff


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Database:
    """The service's PostgreSQL access; the store classes take one of these."""

    def __init__(self, primary: asyncpg.Pool, replicas: list[asyncpg.Pool]) -> None:
        self.primary = primary
        self._replicas = replicas
        self._next_replica = itertools.cycle(replicas) if replicas else None

    @classmethod
    async def connect(
        cls,
        dsn: str,
        replica_dsns: tuple[str, ...] = (),
        *,
        min_size: int = 1,
        max_size: int = 10,
        attempts: int = 30,
    ) -> Database:
        primary = await _pool_with_retry(dsn, min_size, max_size, attempts)
        replicas = [await _pool_with_retry(r, min_size, max_size, attempts) for r in replica_dsns]
        return cls(primary, replicas)

    def reader(self) -> asyncpg.Pool:
        """A pool for reads that tolerate replication lag (round-robin over replicas)."""
        return next(self._next_replica) if self._next_replica else self.primary

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.primary.acquire() as conn, conn.transaction():
            yield conn

    async def ping(self) -> bool:
        try:
            await self.primary.fetchval("SELECT 1")
            return True
        except (OSError, asyncpg.PostgresError):
            return False

    async def close(self) -> None:
        await asyncio.gather(self.primary.close(), *(r.close() for r in self._replicas))


async def _keep_session(_: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's default reset (`pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`): a round trip after every pooled query, for
    session state this code never leaves behind. Settings are `SET LOCAL`, session
    advisory locks are released in `finally` (kit/migrations.py, kit/backfill.py),
    nothing LISTENs, and asyncpg still rolls back a transaction left open."""


async def _pool_with_retry(dsn: str, min_size: int, max_size: int, attempts: int) -> Any:
    async def create() -> Any:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
        )

    return await retry_with_backoff(
        create, retry_on=(OSError, asyncpg.PostgresError), attempts=attempts
    )
