"""Event consumers: typed dispatch, consumer groups, bounded retries, dead letters.

* `EventHandlers` maps event message types to handlers; `dispatch` unpacks the
  envelope and calls the one registered for its type (unknown types are skipped
  and counted, so producers can add events before consumers know them). The
  handler's span joins the producer's trace through the envelope's traceparent.
* `StreamConsumer` reads one stream with a consumer group, starting where the
  group chooses (`Start.LATEST` for "from now on", `Start.EARLIEST` for
  rebuilders). A failing event is retried with exponential backoff while the
  events behind it carry on; after `max_attempts` deliveries it is parked in the
  dead-letter stream `<stream>:dlq:<group>` with its error, counted and logged,
  and acknowledged. Entries left pending by a crashed consumer are claimed.
* Delivery is at-least-once and order is not guaranteed across retries or
  between a group's consumers: handlers make themselves idempotent with
  `claim_event` (PostgreSQL, in the handler's transaction) or `first_delivery`
  (Redis SET NX), and order-insensitive with `newer_than_applied`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar

import asyncpg
import redis.asyncio as aioredis
from google.protobuf.message import Message
from opentelemetry import propagate, trace

from .events import (
    FIELD_ENVELOPE,
    FIELD_ONLY_GROUP,
    FIELD_TYPE,
    EventEnvelope,
    stream_of,
)
from .migrations import quote_ident
from .tasks import BackgroundLoop

log = logging.getLogger("socialmesh.events")
tracer = trace.get_tracer("socialmesh.events")

E = TypeVar("E", bound=Message)


@dataclass(frozen=True)
class EventMeta:
    """The envelope's facts, handed to every handler beside the typed event."""

    event_id: int
    event_type: str
    aggregate_id: int
    #: When the producer committed the event: timezone-aware UTC, as TIMESTAMPTZ
    #: columns and comparisons with `datetime.now(UTC)` need (the wire keeps a
    #: google.protobuf.Timestamp).
    occur_time: datetime
    producer: str


Handler = Callable[[Any, EventMeta], Awaitable[None]]


class EventHandlers:
    """Typed dispatch: one handler per event message type."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[type[Message], Handler]] = {}

    def on(self, event_type: type[E], handler: Callable[[E, EventMeta], Awaitable[None]]) -> None:
        name = event_type.DESCRIPTOR.full_name
        if name in self._handlers:
            raise ValueError(f"a handler for {name} is already registered")
        self._handlers[name] = (event_type, handler)

    def streams(self) -> list[str]:
        """The streams the registered types are published on (one consumer each)."""
        return sorted({stream_of(name) for name in self._handlers})

    def handles(self, event_type: str) -> bool:
        return event_type in self._handlers

    async def dispatch(self, envelope: EventEnvelope) -> bool:
        """Runs the handler for the envelope's type; False if there is none."""
        registered = self._handlers.get(envelope.type)
        if registered is None:
            return False
        message_type, handler = registered
        event = message_type()
        if not envelope.payload.Unpack(event):
            raise ValueError(f"payload {envelope.payload.type_url} is not {envelope.type}")
        meta = EventMeta(
            event_id=envelope.event_id,
            event_type=envelope.type,
            aggregate_id=envelope.aggregate_id,
            occur_time=envelope.occur_time.ToDatetime(tzinfo=UTC),
            producer=envelope.producer,
        )
        parent = propagate.extract({"traceparent": envelope.traceparent})
        with tracer.start_as_current_span(
            f"consume {envelope.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "redis", "messaging.message.id": envelope.event_id},
        ):
            await handler(event, meta)
        return True


class Start(enum.Enum):
    """Where a new consumer group starts reading; chosen explicitly by every consumer."""

    #: Only events published after the group is created (notifications: never
    #: notify for last month's likes).
    LATEST = "$"
    #: Everything still in the stream (rebuilders, and consumers that must not
    #: miss an event published before their first deployment).
    EARLIEST = "0"


class ConsumerGroup(Protocol):
    """One consumer group as a class, in its own module: its name (`GROUP`, listed
    in docs/events.md), where a new group starts (`START`) and its typed handlers.
    A servicer runs each through `ServicerBase.consume(c.GROUP, c.handlers(), start=c.START)`."""

    GROUP: ClassVar[str]
    START: ClassVar[Start]

    def handlers(self) -> EventHandlers: ...


def dead_letter_stream(stream: str, group: str) -> str:
    return f"{stream}:dlq:{group}"


def stats_key(stream: str, group: str) -> str:
    return f"{stream}:stats:{group}"


def consumer_name() -> str:
    """This process's consumer name within a group (host and pid)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamConsumer(BackgroundLoop):
    """At-least-once consumer-group reader that never stalls on one bad event."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        handlers: EventHandlers,
        *,
        start: Start,
        consumer: str | None = None,
        max_attempts: int = 5,
        first_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        claim_idle_ms: int = 30_000,
        dead_consumer_idle_ms: int = 3_600_000,
        block_ms: int = 1000,
        batch: int = 100,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or consumer_name()
        self._handlers = handlers
        self._start = start
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._claim_idle_ms = claim_idle_ms
        self._dead_consumer_idle_ms = dead_consumer_idle_ms
        self._block_ms = block_ms
        self._batch = batch
        #: entry id -> monotonic time its next attempt is due.
        self._retry_at: dict[bytes, float] = {}
        #: Entries whose delivery count the claim raised without an attempt.
        self._claimed_unattempted: set[bytes] = set()
        #: handled, skipped_unknown, failed_attempts, dead_lettered (also in Redis).
        self.stats: Counter[str] = Counter()
        #: Entries done with, acknowledged together when their batch settles.
        self._acks: list[bytes] = []
        #: Whether XPENDING was asked since start (entries left by an earlier life).
        self._checked_pending = False

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                self.stream, self.group, id=self._start.value, mkstream=True
            )
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _backoff(self, attempts: int) -> float:
        return float(min(self._first_backoff * 2 ** max(attempts - 1, 0), self._max_backoff))

    async def _settle(self, changes: Counter[str]) -> None:
        """Acknowledges a batch's finished entries and moves its counters: one round trip
        per batch, not one XACK per event (a crash before it redelivers them: handlers
        are idempotent)."""
        acks, self._acks = self._acks, []
        if not changes and not acks:
            return
        self.stats.update(changes)
        pipe = self._redis.pipeline(transaction=False)
        if acks:
            pipe.xack(self.stream, self.group, *acks)
        for name, delta in changes.items():
            pipe.hincrby(stats_key(self.stream, self.group), name, delta)
        try:
            await pipe.execute()
        except BaseException:
            self._acks[:0] = acks  # still owed: the next batch sends them
            raise

    async def _dead_letter(
        self, entry_id: bytes, fields: dict[bytes, bytes], attempts: int, error: str
    ) -> None:
        record: dict[Any, Any] = {
            k: v for k, v in fields.items() if k in (FIELD_TYPE, FIELD_ENVELOPE)
        }
        record.update(
            {
                b"entry_id": entry_id,
                b"group": self.group.encode(),
                b"attempts": str(attempts).encode(),
                b"error": error[:2000].encode(),
                b"failed_at_ms": str(int(time.time() * 1000)).encode(),
            }
        )
        await self._redis.xadd(dead_letter_stream(self.stream, self.group), record)
        await self._redis.xack(self.stream, self.group, entry_id)
        self._retry_at.pop(entry_id, None)
        log.error(
            "dead-lettered %s entry %s (%s) for group %s after %d attempts: %s",
            self.stream,
            entry_id.decode(),
            fields.get(FIELD_TYPE, b"?").decode(errors="replace"),
            self.group,
            attempts,
            error,
        )

    async def _handle_entry(
        self, entry_id: bytes, fields: dict[bytes, bytes] | None, attempts: int
    ) -> Counter[str]:
        """Handles one delivery; returns the counters it moved."""
        outcome: Counter[str] = Counter()
        if not fields:  # deleted from the stream while pending
            self._acks.append(entry_id)
            return outcome
        only = fields.get(FIELD_ONLY_GROUP)
        if only is not None and only.decode() != self.group:  # a replay meant for another group
            self._acks.append(entry_id)
            return outcome
        if attempts > self._max_attempts:  # e.g. it crashed the process every time
            await self._dead_letter(entry_id, fields, attempts - 1, "exceeded max attempts")
            outcome["dead_lettered"] += 1
            return outcome
        try:
            envelope = EventEnvelope.FromString(fields[FIELD_ENVELOPE])
            known = await self._handlers.dispatch(envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome["failed_attempts"] += 1
            error = f"{type(exc).__name__}: {exc}"
            if attempts >= self._max_attempts:
                await self._dead_letter(entry_id, fields, attempts, error)
                outcome["dead_lettered"] += 1
            else:
                delay = self._backoff(attempts)
                self._retry_at[entry_id] = time.monotonic() + delay
                log.warning(
                    "%s entry %s failed in group %s (attempt %d/%d, retry in %.1fs): %s",
                    self.stream,
                    entry_id.decode(),
                    self.group,
                    attempts,
                    self._max_attempts,
                    delay,
                    error,
                )
            return outcome
        self._acks.append(entry_id)
        self._retry_at.pop(entry_id, None)
        outcome["handled" if known else "skipped_unknown"] += 1
        return outcome

    async def read_new(self) -> int:
        """Handles entries never delivered to this group; returns how many it handled."""
        response: Any = await self._redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self._batch,
            block=self._block_ms or None,
        )
        outcome: Counter[str] = Counter()
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                outcome += await self._handle_entry(entry_id, fields, attempts=1)
        await self._settle(outcome)
        return outcome["handled"]

    async def retry_due(self) -> int:
        """Re-delivers this consumer's pending entries whose backoff has passed."""
        self._checked_pending = True
        pending: Any = await self._redis.xpending_range(
            self.stream, self.group, "-", "+", self._batch, consumername=self.consumer
        )
        now = time.monotonic()
        due = {p["message_id"]: p["times_delivered"] for p in pending}
        due = {i: n for i, n in due.items() if self._retry_at.get(i, 0.0) <= now}
        if not due:
            return 0
        claimed: Any = await self._redis.xclaim(
            self.stream, self.group, self.consumer, min_idle_time=0, message_ids=list(due)
        )
        outcome: Counter[str] = Counter()
        found = set()
        for entry_id, fields in claimed:
            found.add(entry_id)
            attempts = due[entry_id] + (0 if entry_id in self._claimed_unattempted else 1)
            self._claimed_unattempted.discard(entry_id)
            outcome += await self._handle_entry(entry_id, fields, attempts=attempts)
        for missing in set(due) - found:  # trimmed or deleted while pending
            await self._handle_entry(missing, None, attempts=0)
        await self._settle(outcome)
        return outcome["handled"]

    async def reclaim(self) -> int:
        """Takes over entries idle on other (crashed) consumers; returns how many.

        They become this consumer's pending entries and are handled by
        `retry_due`, which knows how often each was delivered already.
        """
        moved = 0
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
            for entry_id, _fields in entries:
                self._retry_at.pop(entry_id, None)
                self._claimed_unattempted.add(entry_id)
            moved += len(entries)
            if cursor in (b"0-0", "0-0"):
                break
        await self._forget_dead_consumers()
        return moved

    async def _forget_dead_consumers(self) -> None:
        """Removes consumers (old pods) idle for long with nothing pending."""
        for info in await self._redis.xinfo_consumers(self.stream, self.group):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if (
                name != self.consumer
                and info["pending"] == 0
                and info["idle"] > self._dead_consumer_idle_ms
            ):
                await self._redis.xgroup_delconsumer(self.stream, self.group, name)

    async def poll_once(self) -> int:
        """Retries what is due, then reads new entries; returns how many were handled.

        XPENDING only when something may be pending here: a failed attempt, a claimed
        entry, or (once) what an earlier process with this name left behind."""
        retried = 0
        if self._retry_at or self._claimed_unattempted or not self._checked_pending:
            retried = await self.retry_due()
        return retried + await self.read_new()

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


def consumers_for(
    redis: aioredis.Redis, group: str, handlers: EventHandlers, *, start: Start, **options: Any
) -> list[StreamConsumer]:
    """One consumer per stream the handlers listen to, all in `group`."""
    return [
        StreamConsumer(redis, stream, group, handlers, start=start, **options)
        for stream in handlers.streams()
    ]


@dataclass(frozen=True)
class DeadLetter:
    """An event a group gave up on, as stored in its dead-letter stream."""

    dead_letter_id: str
    entry_id: str
    event_type: str
    attempts: int
    error: str
    envelope: EventEnvelope


class DeadLetters:
    """Lists and replays one group's dead letters (`socialmesh events ...`)."""

    def __init__(self, redis: aioredis.Redis, stream: str, group: str) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.key = dead_letter_stream(stream, group)

    async def list(self, count: int = 100) -> list[DeadLetter]:
        entries: Any = await self._redis.xrange(self.key, count=count)
        return [
            DeadLetter(
                dead_letter_id=entry_id.decode(),
                entry_id=fields[b"entry_id"].decode(),
                event_type=fields.get(FIELD_TYPE, b"").decode(),
                attempts=int(fields[b"attempts"]),
                error=fields[b"error"].decode(),
                envelope=EventEnvelope.FromString(fields[FIELD_ENVELOPE]),
            )
            for entry_id, fields in entries
        ]

    async def replay(self, dead_letter_ids: Iterable[str] | None = None) -> int:
        """Re-publishes dead letters to the stream for this group only; returns how many.

        Other groups skip (and ack) the replayed entries, so only the group that
        gave up sees the event again.
        """
        wanted = set(dead_letter_ids) if dead_letter_ids is not None else None
        replayed = 0
        entries: Any = await self._redis.xrange(self.key)
        for entry_id, fields in entries:
            if wanted is not None and entry_id.decode() not in wanted:
                continue
            await self._redis.xadd(
                self.stream,
                {
                    FIELD_TYPE: fields.get(FIELD_TYPE, b""),
                    FIELD_ENVELOPE: fields[FIELD_ENVELOPE],
                    FIELD_ONLY_GROUP: self.group.encode(),
                },
            )
            await self._redis.xdel(self.key, entry_id)
            replayed += 1
        return replayed


async def claim_event(conn: asyncpg.Connection, schema: str, group: str, meta: EventMeta) -> bool:
    """True the first time `group` handles this event; call it in the handler's transaction.

    The row commits (or rolls back) with the handler's own writes, so a
    redelivered event is recognised exactly when its effects are already there.
    """
    inserted = await conn.fetchval(
        f"INSERT INTO {quote_ident(schema)}.consumed_events (consumer_group, event_id)"
        " VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        group,
        meta.event_id,
    )
    return bool(inserted)


async def first_delivery(
    redis: aioredis.Redis, group: str, meta: EventMeta, *, ttl_seconds: int = 7 * 24 * 3600
) -> bool:
    """True the first time `group` sees this event, for effects that live only in Redis.

    Not transactional with the effect: mark after applying an idempotent effect,
    or before a non-idempotent one whose loss on a crash is acceptable.
    """
    return bool(await redis.set(f"events:seen:{group}:{meta.event_id}", 1, nx=True, ex=ttl_seconds))


# Event ids are up to 63 bits, beyond Lua's exact numbers, so they are compared
# as zero-padded strings.
_NEWER_THAN_APPLIED = """
local current = redis.call('GET', KEYS[1])
if current and current >= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


async def newer_than_applied(
    redis: aioredis.Redis, key: str, meta: EventMeta, *, ttl_seconds: int = 7 * 24 * 3600
) -> bool:
    """True if this event is newer than the last one applied to `key` (and records it).

    Makes handlers order-insensitive: e.g. for the key `follow:<a>:<b>`, an
    Unfollowed that arrives before an older Followed wins, and the stale Followed
    is ignored, whatever order retries and consumers deliver them in.
    """
    applied = await redis.eval(_NEWER_THAN_APPLIED, 1, key, f"{meta.event_id:020d}", ttl_seconds)
    return bool(applied)
