"""Transactional outbox, its relay to Redis Streams, and consumer groups.

* `enqueue` writes an event row in the caller's transaction: the change and its
  event commit together or not at all.
* `OutboxRelay` moves unpublished rows to the stream `events:<service>` (XADD,
  then marks the row published). A crash between the two re-publishes the row
  on restart: delivery is at-least-once, and every event carries a stable
  `event_id` so consumers deduplicate.
* `StreamConsumer` reads with a consumer group, acks after the handler
  succeeds, and re-claims entries a crashed consumer left pending (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from .db import Database
from .ids import IdGenerator
from .migrations import quote_ident
from .tasks import BackgroundLoop

log = logging.getLogger("socialmesh.events")


def stream_name(service: str) -> str:
    return f"events:{service}"


@dataclass(frozen=True)
class Event:
    event_id: int
    topic: str
    aggregate_id: int
    payload: dict[str, Any]

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Event:
        return cls(
            event_id=int(fields[b"event_id"]),
            topic=fields[b"topic"].decode(),
            aggregate_id=int(fields[b"aggregate_id"]),
            payload=json.loads(fields[b"payload"]),
        )


async def enqueue(
    conn: asyncpg.Connection,
    schema: str,
    ids: IdGenerator,
    topic: str,
    aggregate_id: int,
    payload: dict[str, Any],
) -> int:
    """Records an event inside the caller's open transaction; returns its event id."""
    event_id = ids.next_id()
    await conn.execute(
        f"INSERT INTO {quote_ident(schema)}.outbox (event_id, topic, aggregate_id, payload)"
        " VALUES ($1, $2, $3, $4)",
        event_id,
        topic,
        aggregate_id,
        payload,
    )
    return event_id


class OutboxRelay(BackgroundLoop):
    """Publishes committed outbox rows to the service's stream, oldest first."""

    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        schema: str,
        *,
        batch_size: int = 200,
        poll_seconds: float = 0.25,
        stream_maxlen: int = 1_000_000,
    ) -> None:
        self._db = db
        self._redis = redis
        self._schema = quote_ident(schema)
        self._stream = stream_name(schema)
        self._batch = batch_size
        self._poll = poll_seconds
        self._maxlen = stream_maxlen
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Asks for an immediate pass (called after a commit that enqueued events)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """One pass: publishes up to a batch; returns how many rows it published."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                f"SELECT event_id, topic, aggregate_id, payload FROM {self._schema}.outbox"
                " WHERE published_at IS NULL ORDER BY event_id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(
                    self._stream,
                    {
                        "event_id": str(row["event_id"]),
                        "topic": row["topic"],
                        "aggregate_id": str(row["aggregate_id"]),
                        "payload": json.dumps(row["payload"]),
                    },
                    maxlen=self._maxlen,
                    approximate=True,
                )
            await pipe.execute()
            await conn.execute(
                f"UPDATE {self._schema}.outbox SET published_at = now()"
                " WHERE event_id = ANY($1::bigint[])",
                [row["event_id"] for row in rows],
            )
            return len(rows)

    async def run(self) -> None:
        while True:
            try:
                while await self.publish_pending() == self._batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; will retry")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def task_name(self) -> str:
        return f"outbox-relay-{self._stream}"


Handler = Callable[[Event], Awaitable[None]]


class StreamConsumer(BackgroundLoop):
    """At-least-once consumer-group reader that survives consumer crashes.

    The handler must be idempotent (dedupe on `event.event_id`): an entry is
    acked only after the handler returns, and entries pending on a dead
    consumer for longer than `claim_idle_ms` are re-claimed and re-handled.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        claim_idle_ms: int = 30_000,
        block_ms: int = 1000,
        batch: int = 100,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._claim_idle_ms = claim_idle_ms
        self._block_ms = block_ms
        self._batch = batch

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        handled = 0
        for entry_id, fields in entries:
            if not fields:  # deleted by MAXLEN trimming while pending
                await self._redis.xack(self.stream, self.group, entry_id)
                continue
            await self._handler(Event.from_fields(fields))
            await self._redis.xack(self.stream, self.group, entry_id)
            handled += 1
        return handled

    async def reclaim(self) -> int:
        """Takes over entries idle on other (crashed) consumers and handles them."""
        handled = 0
        cursor: bytes | str = "0-0"
        while True:
            result: Any = await self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=cursor,
                count=self._batch,
            )
            cursor, entries = result[0], result[1]
            handled += await self._handle(entries)
            if cursor in (b"0-0", "0-0"):
                return handled

    async def poll_once(self) -> int:
        """Handles this consumer's own pending entries, then new ones."""
        handled = 0
        for start in ("0", ">"):
            response: Any = await self._redis.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: start},
                count=self._batch,
                block=None if start == "0" else self._block_ms,
            )
            for _stream, entries in response or []:
                handled += await self._handle(entries)
        return handled

    async def run(self) -> None:
        await self.ensure_group()
        loop = asyncio.get_running_loop()
        last_claim = 0.0
        while True:
            try:
                if loop.time() - last_claim > self._claim_idle_ms / 2000:
                    await self.reclaim()
                    last_claim = loop.time()
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s/%s failed; retrying", self.group, self.consumer)
                await asyncio.sleep(1.0)

    def task_name(self) -> str:
        return f"consumer-{self.group}-{self.consumer}"
