"""Typed events: the outbox that commits them with the change, and the relay to Redis Streams.

* Events are protobuf messages from `proto/socialmesh/<service>/v1/events.proto`.
  `Outbox.enqueue(conn, PostLiked(...), aggregate_id=post_id)` writes one in the
  caller's transaction, wrapped in a `socialmesh.events.v1.EventEnvelope`
  (binary protobuf): the change and its event commit together or not at all.
  The stream and the type derive from the message: no service writes a topic.
* `OutboxRelay` moves committed rows to the stream `events:<service>`, one
  publisher per service at a time (an advisory lock), in event-id order.
  Delivery is at-least-once: a crash between XADD and marking the row
  published re-publishes it, and consumers deduplicate on `event_id`.
* The relay also trims the stream, but never below what a consumer group has
  not acknowledged (the slowest group's position), and prunes published
  outbox rows after a retention period, so neither grows without bound.

Consumers (typed dispatch, retries, dead letters) live in `consumers.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.message import Message
from opentelemetry import propagate
from socialmesh.events.v1 import envelope_pb2

from .db import Database
from .ids import IdGenerator
from .migrations import quote_ident
from .tasks import BackgroundLoop
from .timestamps import from_datetime

log = logging.getLogger("socialmesh.events")

EventEnvelope = envelope_pb2.EventEnvelope

#: Stream entry fields: the envelope, its type (readable in redis-cli without
#: decoding), and, for a dead letter replayed to one group, that group's name.
FIELD_ENVELOPE = b"envelope"
FIELD_TYPE = b"type"
FIELD_ONLY_GROUP = b"only_group"


def producer_of(event_type: str) -> str:
    """`socialmesh.post.v1.PostLiked` -> `post` (the package names the producer)."""
    parts = event_type.split(".")
    if len(parts) != 4 or parts[0] != "socialmesh":
        raise ValueError(f"{event_type!r} is not a socialmesh.<service>.v1.<Event> message")
    return parts[1]


def stream_name(service: str) -> str:
    """The Redis Stream a service's events are published to."""
    return f"events:{service}"


def stream_of(event_type: type[Message] | str) -> str:
    """The stream that carries events of this message type."""
    name = event_type if isinstance(event_type, str) else event_type.DESCRIPTOR.full_name
    return stream_name(producer_of(name))


def current_traceparent() -> str:
    """W3C trace context of the active span, for the envelope ('' when not tracing)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def seal(
    event: Message, *, event_id: int, aggregate_id: int, occur_time: datetime | None = None
) -> EventEnvelope:
    """Wraps a typed event in the envelope every consumer reads."""
    payload = any_pb2.Any()
    payload.Pack(event)
    full_name = event.DESCRIPTOR.full_name
    return EventEnvelope(
        event_id=event_id,
        type=full_name,
        aggregate_id=aggregate_id,
        occur_time=from_datetime(occur_time or datetime.now(UTC)),
        traceparent=current_traceparent(),
        producer=producer_of(full_name),
        payload=payload,
    )


def unpack(envelope: EventEnvelope) -> Message:
    """The typed event inside an envelope (its module must have been imported)."""
    descriptor = descriptor_pool.Default().FindMessageTypeByName(envelope.type)
    # The generated class itself (isinstance works), from the module protoc wrote.
    module = importlib.import_module(
        descriptor.file.name.removesuffix(".proto").replace("/", ".") + "_pb2"
    )
    event: Message = getattr(module, descriptor.name)()
    envelope.payload.Unpack(event)
    return event


async def recent_events(
    redis: aioredis.Redis, stream: str, count: int = 100
) -> list[tuple[EventEnvelope, Message]]:
    """The newest `count` events of a stream, newest first, decoded (tools and tests)."""
    entries: Any = await redis.xrevrange(stream, count=count)
    decoded = []
    for _entry_id, fields in entries:
        envelope = EventEnvelope.FromString(fields[FIELD_ENVELOPE])
        decoded.append((envelope, unpack(envelope)))
    return decoded


class Outbox:
    """Typed publish for one producing service: events commit with the change."""

    def __init__(self, service: str, ids: IdGenerator, *, schema: str | None = None) -> None:
        self._service = service
        self._table = f"{quote_ident(schema or service)}.outbox"
        self._ids = ids

    async def enqueue(self, conn: asyncpg.Connection, event: Message, *, aggregate_id: int) -> int:
        """Records `event` inside the caller's open transaction; returns its event id."""
        event_type = event.DESCRIPTOR.full_name
        if producer_of(event_type) != self._service:
            raise ValueError(f"the {self._service} service cannot publish {event_type}")
        event_id = self._ids.next_id()
        envelope = seal(event, event_id=event_id, aggregate_id=aggregate_id)
        await conn.execute(
            f"INSERT INTO {self._table} (event_id, event_type, aggregate_id, envelope)"
            " VALUES ($1, $2, $3, $4)",
            event_id,
            event_type,
            aggregate_id,
            envelope.SerializeToString(),
        )
        return event_id


def parse_entry_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_entry_id(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"


@dataclass(frozen=True)
class TrimResult:
    """What one trim pass decided (for logs, tests and `socialmesh events status`)."""

    min_id: str
    removed: int
    #: The group holding the stream back, if a group (not retention) set the floor.
    held_by: str | None


async def trim_stream(
    redis: aioredis.Redis,
    stream: str,
    *,
    retention_seconds: float,
    lag_alarm_entries: int = 1_000_000,
) -> TrimResult:
    """Trims entries that every group has acknowledged and that are past retention.

    The floor is the lowest of: each group's oldest pending entry, each group's
    next undelivered entry, and `now - retention`. A group that never reads
    holds the stream back (and is reported loudly) rather than losing events.
    """
    floor = (int((time.time() - retention_seconds) * 1000), 0)
    held_by: str | None = None
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:  # no such stream yet
        return TrimResult(format_entry_id(floor), 0, None)
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        delivered = parse_entry_id(group["last-delivered-id"])
        position = (delivered[0], delivered[1] + 1)
        if group["pending"]:
            summary = await redis.xpending(stream, name)
            position = min(position, parse_entry_id(summary["min"]))
        if position < floor:
            floor, held_by = position, name
    min_id = format_entry_id(floor)
    removed = int(await redis.xtrim(stream, minid=min_id, approximate=False))
    if held_by is not None:
        length = await redis.xlen(stream)
        if length > lag_alarm_entries:
            log.error(
                "consumer group %r holds %d entries of %s past retention; it is not "
                "keeping up (or is abandoned: `socialmesh events status`, then destroy it "
                "or let it catch up). Nothing it has not acknowledged is trimmed.",
                held_by,
                length,
                stream,
            )
    return TrimResult(min_id, removed, held_by)


def _publisher_lock_key(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"outbox-relay:{schema}".encode()).digest()[:8], "big", signed=True
    )


class OutboxRelay(BackgroundLoop):
    """Publishes committed outbox rows to the service's stream, oldest first.

    One relay per service publishes at a time (a transaction-scoped advisory
    lock; other replicas' passes return at once), so stream order is event-id
    order among committed rows. It also trims the stream (`trim_stream`) and
    prunes rows published more than `outbox_retention_seconds` ago.
    """

    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        schema: str,
        *,
        batch_size: int = 200,
        poll_seconds: float = 0.25,
        stream_retention_seconds: float = 24 * 3600,
        outbox_retention_seconds: float = 3600,
        consumed_retention_seconds: float = 7 * 24 * 3600,
        maintenance_seconds: float = 30,
        prune_batch: int = 5000,
        stream: str | None = None,
    ) -> None:
        self._db = db
        self._redis = redis
        self._schema = quote_ident(schema)
        self._lock_key = _publisher_lock_key(schema)
        self.stream = stream or stream_name(schema)
        self._batch = batch_size
        self._poll = poll_seconds
        self._stream_retention = stream_retention_seconds
        self._outbox_retention = outbox_retention_seconds
        self._consumed_retention = consumed_retention_seconds
        self._maintenance = maintenance_seconds
        self._prune_batch = prune_batch
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Asks for an immediate pass (called after a commit that enqueued events)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """One pass: publishes up to a batch; returns how many rows it published."""
        async with self._db.transaction() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", self._lock_key):
                return 0  # another replica is publishing; keeping one publisher keeps order
            rows = await conn.fetch(
                f"SELECT event_id, event_type, envelope FROM {self._schema}.outbox"
                " WHERE published_at IS NULL ORDER BY event_id LIMIT $1",
                self._batch,
            )
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(
                    self.stream, {FIELD_TYPE: row["event_type"], FIELD_ENVELOPE: row["envelope"]}
                )
            await pipe.execute()
            await conn.execute(
                f"UPDATE {self._schema}.outbox SET published_at = now()"
                " WHERE event_id = ANY($1::bigint[])",
                [row["event_id"] for row in rows],
            )
            return len(rows)

    async def prune(self) -> int:
        """Deletes published rows past retention, a batch at a time; returns how many."""
        removed = 0
        while True:
            status = await self._db.primary.execute(
                f"""DELETE FROM {self._schema}.outbox WHERE event_id = ANY(ARRAY(
                        SELECT event_id FROM {self._schema}.outbox
                        WHERE published_at < now() - make_interval(secs => $1)
                        LIMIT $2))""",
                self._outbox_retention,
                self._prune_batch,
            )
            count = int(status.split()[-1])
            removed += count
            if count < self._prune_batch:
                break
        await self._db.primary.execute(
            f"""DELETE FROM {self._schema}.consumed_events
                WHERE consumed_at < now() - make_interval(secs => $1)""",
            self._consumed_retention,
        )
        return removed

    async def maintain(self) -> None:
        """Trims the stream and prunes the outbox (every `maintenance_seconds`)."""
        await trim_stream(self._redis, self.stream, retention_seconds=self._stream_retention)
        await self.prune()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_maintenance = loop.time()
        while True:
            try:
                while await self.publish_pending() == self._batch:
                    pass
                if loop.time() - last_maintenance >= self._maintenance:
                    last_maintenance = loop.time()
                    await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; will retry")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def task_name(self) -> str:
        return f"outbox-relay-{self.stream}"
