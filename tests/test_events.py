"""The event bus against real PostgreSQL and Redis: typed events, poison events,
trimming, start positions, outbox pruning, idempotency and ordering helpers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.user.v1 import events_pb2 as user_events

from services.kit.consumers import (
    DeadLetters,
    EventHandlers,
    EventMeta,
    Start,
    StreamConsumer,
    claim_event,
    first_delivery,
    newer_than_applied,
    stats_key,
)
from services.kit.db import Database
from services.kit.events import FIELD_ENVELOPE, FIELD_TYPE, Outbox, OutboxRelay, seal, trim_stream
from services.kit.ids import IdGenerator
from services.kit.migrations import migrate
from services.kit.telemetry import setup_tracing

from .conftest import Infra


@pytest_asyncio.fixture
async def schema(db: Database, tmp_path: Path) -> str:
    """A fresh schema with the kit's outbox and consumed-events tables."""
    name = f"ev_{uuid.uuid4().hex[:10]}"
    async with db.primary.acquire() as conn:
        await migrate(conn, name, tmp_path)
    return name


def new_stream() -> str:
    return f"events:test-{uuid.uuid4().hex[:8]}"


IDS = IdGenerator(7)


async def add_events(redis, stream: str, *events, aggregate_id: int = 1) -> list[int]:
    """Publishes envelopes straight to a stream (what the relay does); returns event ids."""
    ids = []
    for event in events:
        event_id = IDS.next_id()
        envelope = seal(event, event_id=event_id, aggregate_id=aggregate_id)
        await redis.xadd(
            stream,
            {FIELD_TYPE: event.DESCRIPTOR.full_name, FIELD_ENVELOPE: envelope.SerializeToString()},
        )
        ids.append(event_id)
    return ids


async def until(condition: Callable[[], Awaitable[bool]], step: Callable[[], Awaitable[object]]):
    """Runs `step` until `condition` holds (at most 10 s)."""
    deadline = time.monotonic() + 10
    while not await condition():
        assert time.monotonic() < deadline, "condition never held"
        await step()


async def test_typed_events_go_from_the_outbox_to_a_typed_handler(db, redis, schema):
    outbox = Outbox("post", IdGenerator(3), schema=schema)
    async with db.transaction() as conn:
        event_id = await outbox.enqueue(
            conn, post_events.PostLiked(post_id=10, user_id=20, post_author_id=30), aggregate_id=10
        )
    stream = new_stream()
    relay = OutboxRelay(db, redis, schema, stream=stream)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0  # published once

    seen: list[tuple[post_events.PostLiked, EventMeta]] = []

    async def on_liked(event: post_events.PostLiked, meta: EventMeta) -> None:
        seen.append((event, meta))

    handlers = EventHandlers()
    handlers.on(post_events.PostLiked, on_liked)
    assert handlers.streams() == ["events:post"]  # the stream derives from the type
    consumer = StreamConsumer(redis, stream, "g", handlers, start=Start.EARLIEST, block_ms=0)
    await consumer.ensure_group()
    assert await consumer.poll_once() == 1
    event, meta = seen[0]
    assert (event.post_id, event.user_id, event.post_author_id) == (10, 20, 30)
    assert (meta.event_id, meta.aggregate_id, meta.producer) == (event_id, 10, "post")
    assert meta.event_type == "socialmesh.post.v1.PostLiked"
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_service_cannot_publish_another_services_events(db, schema):
    outbox = Outbox("user", IdGenerator(3), schema=schema)
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="cannot publish"):
            await outbox.enqueue(conn, post_events.PostLiked(post_id=1), aggregate_id=1)


async def test_a_rolled_back_change_publishes_no_event(db, schema):
    outbox = Outbox("user", IdGenerator(3), schema=schema)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await outbox.enqueue(conn, user_events.UserDeleted(user_id=1), aggregate_id=1)
            raise RuntimeError("boom")
    assert await db.primary.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 0


async def test_unknown_event_types_are_skipped_and_counted(redis):
    stream = new_stream()
    handled: list[int] = []

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        handled.append(event.user_id)

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    consumer = StreamConsumer(redis, stream, "g", handlers, start=Start.EARLIEST, block_ms=0)
    await consumer.ensure_group()
    await add_events(redis, stream, user_events.UserCreated(user_id=1))
    await add_events(redis, stream, user_events.UserDeleted(user_id=2))
    await consumer.poll_once()
    assert handled == [2]
    assert consumer.stats["skipped_unknown"] == 1
    assert await redis.hget(stats_key(stream, "g"), "skipped_unknown") == b"1"
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_poison_event_is_dead_lettered_while_later_events_are_handled(redis):
    stream = new_stream()
    handled: list[int] = []
    poisoned = {2}

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        if event.user_id in poisoned:
            raise RuntimeError(f"cannot handle user {event.user_id}")
        handled.append(event.user_id)

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    consumer = StreamConsumer(
        redis,
        stream,
        "notify",
        handlers,
        start=Start.EARLIEST,
        max_attempts=3,
        first_backoff_seconds=0.05,
        block_ms=10,
    )
    other_group = StreamConsumer(redis, stream, "other", handlers, start=Start.LATEST, block_ms=10)
    await consumer.ensure_group()
    await add_events(redis, stream, *(user_events.UserDeleted(user_id=i) for i in range(1, 6)))
    await other_group.ensure_group()  # created after: LATEST sees none of the five

    await consumer.poll_once()
    assert handled == [1, 3, 4, 5]  # no head-of-line blocking behind the poison event
    dead = DeadLetters(redis, stream, "notify")
    await until(lambda: _has_dead_letters(dead), consumer.poll_once)
    [letter] = await dead.list()
    assert letter.attempts == 3
    assert "cannot handle user 2" in letter.error
    assert letter.event_type == "socialmesh.user.v1.UserDeleted"
    assert consumer.stats["dead_lettered"] == 1
    assert consumer.stats["failed_attempts"] == 3
    assert (await redis.xpending(stream, "notify"))["pending"] == 0  # it moved on

    poisoned.clear()  # the bug is fixed: replay the dead letter to this group only
    assert await dead.replay() == 1
    assert await dead.list() == []
    await until(lambda: _contains(handled, 2), consumer.poll_once)
    assert sorted(handled) == [1, 2, 3, 4, 5]
    assert await other_group.poll_once() == 0  # the replay was not for "other"
    assert (await redis.xpending(stream, "other"))["pending"] == 0


async def _has_dead_letters(dead: DeadLetters) -> bool:
    return bool(await dead.list())


async def _contains(items: list[int], value: int) -> bool:
    return value in items


async def test_an_event_that_keeps_crashing_its_consumer_is_dead_lettered_unhandled(redis):
    stream = new_stream()
    calls: list[int] = []

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        calls.append(event.user_id)

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    await add_events(redis, stream, user_events.UserDeleted(user_id=9))
    consumer = StreamConsumer(
        redis, stream, "g", handlers, start=Start.EARLIEST, max_attempts=2, block_ms=0
    )
    await consumer.ensure_group()
    # Two processes died while handling it: delivered twice, never acked.
    await redis.xreadgroup("g", "crashed-1", {stream: ">"})
    [entry] = await redis.xpending_range(stream, "g", "-", "+", 1)
    await redis.xclaim(stream, "g", "crashed-2", 0, [entry["message_id"]])
    await redis.xclaim(stream, "g", consumer.consumer, 0, [entry["message_id"]])
    await consumer.poll_once()
    assert calls == []  # not handed to the handler a fourth time
    [letter] = await DeadLetters(redis, stream, "g").list()
    assert letter.error == "exceeded max attempts"


async def test_a_survivor_handles_what_a_crashed_consumer_left_pending(redis):
    stream = new_stream()
    await add_events(redis, stream, *(user_events.UserDeleted(user_id=i) for i in (1, 2, 3)))
    handled: list[int] = []

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        handled.append(event.user_id)

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    await redis.xgroup_create(stream, "g", id="0")
    await redis.xreadgroup("g", "doomed", {stream: ">"})  # read, then the process died
    survivor = StreamConsumer(
        redis, stream, "g", handlers, start=Start.EARLIEST, consumer="survivor", claim_idle_ms=50
    )
    await asyncio.sleep(0.1)
    assert await survivor.reclaim() == 3
    await survivor.retry_due()
    assert sorted(handled) == [1, 2, 3]
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_restarted_consumer_first_handles_what_its_earlier_life_left_pending(redis):
    """Acknowledgements go out per batch: a crash before they do leaves the batch
    pending under the consumer's name, and the next process with it handles the
    batch on its first poll (XPENDING is skipped only once nothing can be pending)."""
    stream = new_stream()
    await add_events(redis, stream, *(user_events.UserDeleted(user_id=i) for i in (1, 2, 3)))
    handled: list[int] = []

    async def crash_after_two(event: user_events.UserDeleted, meta: EventMeta) -> None:
        handled.append(event.user_id)
        if len(handled) == 2:
            raise asyncio.CancelledError  # the process dies mid-batch

    crashing = EventHandlers()
    crashing.on(user_events.UserDeleted, crash_after_two)
    first = StreamConsumer(redis, stream, "g", crashing, start=Start.EARLIEST, consumer="pod-1")
    await first.ensure_group()
    with pytest.raises(asyncio.CancelledError):
        await first.poll_once()
    assert (await redis.xpending(stream, "g"))["pending"] == 3  # nothing acknowledged

    again: list[int] = []

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        again.append(event.user_id)

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    restarted = StreamConsumer(redis, stream, "g", handlers, start=Start.EARLIEST, consumer="pod-1")
    assert await restarted.poll_once() == 3
    assert sorted(again) == [1, 2, 3]
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    assert restarted.stats["handled"] == 3


async def test_a_new_group_starts_where_it_says(redis):
    stream = new_stream()
    await add_events(redis, stream, user_events.UserDeleted(user_id=1))
    seen: dict[str, list[int]] = {"latest": [], "earliest": []}

    def recorder(group: str):
        async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
            seen[group].append(event.user_id)

        handlers = EventHandlers()
        handlers.on(user_events.UserDeleted, on_deleted)
        return handlers

    latest = StreamConsumer(
        redis, stream, "latest", recorder("latest"), start=Start.LATEST, block_ms=0
    )
    earliest = StreamConsumer(
        redis, stream, "earliest", recorder("earliest"), start=Start.EARLIEST, block_ms=0
    )
    await latest.ensure_group()
    await earliest.ensure_group()
    await add_events(redis, stream, user_events.UserDeleted(user_id=2))
    await latest.poll_once()
    await earliest.poll_once()
    assert seen == {"latest": [2], "earliest": [1, 2]}


async def test_trimming_never_drops_what_a_lagging_group_has_not_acknowledged(redis):
    stream = new_stream()
    handled = {"fast": 0, "slow": 0}

    def counter(group: str) -> EventHandlers:
        async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
            handled[group] += 1

        handlers = EventHandlers()
        handlers.on(user_events.UserDeleted, on_deleted)
        return handlers

    fast = StreamConsumer(
        redis, stream, "fast", counter("fast"), start=Start.EARLIEST, batch=500, block_ms=0
    )
    slow = StreamConsumer(
        redis, stream, "slow", counter("slow"), start=Start.EARLIEST, batch=300, block_ms=0
    )
    await fast.ensure_group()
    await slow.ensure_group()
    pipe = redis.pipeline(transaction=False)
    for i in range(2000):
        envelope = seal(user_events.UserDeleted(user_id=i), event_id=i + 1, aggregate_id=i)
        pipe.xadd(stream, {FIELD_ENVELOPE: envelope.SerializeToString()})
    await pipe.execute()
    while await fast.poll_once():
        pass
    assert handled["fast"] == 2000

    # Retention 0: only the groups' positions hold the stream. "slow" has read nothing.
    result = await trim_stream(redis, stream, retention_seconds=0)
    assert (result.removed, result.held_by) == (0, "slow")
    assert await redis.xlen(stream) == 2000

    await slow.poll_once()  # 300 handled and acked
    await redis.xreadgroup("slow", "crashed", {stream: ">"}, count=100)  # 100 pending
    result = await trim_stream(redis, stream, retention_seconds=0)
    assert result.removed == 300  # up to the oldest pending entry, not past it
    await slow.reclaim()  # nothing idle long enough yet; just proves it runs
    slow_claim = StreamConsumer(
        redis,
        stream,
        "slow",
        counter("slow"),
        start=Start.EARLIEST,
        consumer="heir",
        claim_idle_ms=0,
        batch=2000,
        block_ms=0,
    )
    await slow_claim.reclaim()
    await slow_claim.retry_due()
    while await slow.poll_once():
        pass
    assert handled["slow"] == 2000  # a lagging group lost nothing
    result = await trim_stream(redis, stream, retention_seconds=0)
    assert await redis.xlen(stream) <= 1  # everyone acked: trimmed to the last position


async def test_retention_keeps_recent_entries_even_when_every_group_has_read_them(redis):
    stream = new_stream()
    await add_events(redis, stream, user_events.UserDeleted(user_id=1))
    await redis.xgroup_create(stream, "g", id="$")
    result = await trim_stream(redis, stream, retention_seconds=3600)
    assert result.removed == 0 and result.held_by is None
    assert await redis.xlen(stream) == 1


async def test_published_outbox_rows_are_pruned_and_unpublished_ones_kept(db, redis, schema):
    outbox = Outbox("user", IdGenerator(4), schema=schema)
    async with db.transaction() as conn:
        for i in range(30):
            await outbox.enqueue(conn, user_events.UserDeleted(user_id=i), aggregate_id=i)
    relay = OutboxRelay(db, redis, schema, stream=new_stream(), batch_size=20, prune_batch=7)
    assert await relay.publish_pending() == 20  # 10 stay unpublished
    await db.primary.execute(
        f"UPDATE {schema}.outbox SET published_at = now() - interval '2 hours'"
        " WHERE published_at IS NOT NULL"
    )
    assert await relay.prune() == 20
    assert await db.primary.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 10
    assert await relay.publish_pending() == 10
    assert await relay.prune() == 0  # just published: within retention


async def test_one_relay_publishes_at_a_time_in_event_id_order(db, redis, schema):
    outbox = Outbox("user", IdGenerator(5), schema=schema)
    async with db.transaction() as conn:
        for i in range(600):
            await outbox.enqueue(conn, user_events.UserDeleted(user_id=i), aggregate_id=i)
    stream = new_stream()
    replicas = [OutboxRelay(db, redis, schema, stream=stream, batch_size=50) for _ in range(3)]

    async def unpublished() -> int:
        return int(
            await db.primary.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
            )
        )

    async def drain(relay: OutboxRelay) -> None:
        # Replicas that lose the lock publish nothing, so drain until empty, not a fixed count.
        deadline = asyncio.get_running_loop().time() + 60
        while await unpublished() and asyncio.get_running_loop().time() < deadline:
            await relay.publish_pending()

    await asyncio.gather(*(drain(r) for r in replicas))
    entries = await redis.xrange(stream)
    from services.kit.events import EventEnvelope

    published = [EventEnvelope.FromString(f[FIELD_ENVELOPE]).event_id for _, f in entries]
    assert len(published) == 600
    assert published == sorted(published)  # no interleaved batches, no duplicates


async def test_handlers_get_the_occur_time_as_an_aware_utc_datetime():
    """TIMESTAMPTZ columns and `datetime.now(UTC)` need it aware; the wire stays a Timestamp."""
    seen: list[EventMeta] = []

    async def on_followed(event: graph_events.Followed, meta: EventMeta) -> None:
        seen.append(meta)

    handlers = EventHandlers()
    handlers.on(graph_events.Followed, on_followed)
    at = datetime(2026, 12, 6, 5, 30, 1, 250_000, tzinfo=UTC)
    envelope = seal(graph_events.Followed(), event_id=1, aggregate_id=2, occur_time=at)
    assert await handlers.dispatch(envelope)
    (meta,) = seen
    assert meta.occur_time == at and meta.occur_time.utcoffset() is not None


async def test_claim_event_is_once_per_group_and_rolls_back_with_the_handler(db, schema):
    meta = EventMeta(
        event_id=IDS.next_id(),
        event_type="x",
        aggregate_id=1,
        occur_time=None,  # type: ignore[arg-type]
        producer="user",
    )
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            assert await claim_event(conn, schema, "g", meta)
            raise RuntimeError("handler failed after claiming")
    async with db.transaction() as conn:
        assert await claim_event(conn, schema, "g", meta)  # the rollback undid the claim
    async with db.transaction() as conn:
        assert not await claim_event(conn, schema, "g", meta)  # a redelivery
        assert await claim_event(conn, schema, "other-group", meta)


async def test_first_delivery_is_true_once(redis):
    meta = EventMeta(IDS.next_id(), "x", 1, None, "user")  # type: ignore[arg-type]
    assert await first_delivery(redis, "g", meta)
    assert not await first_delivery(redis, "g", meta)
    assert await first_delivery(redis, "g2", meta)


async def test_follow_state_is_right_whatever_order_its_events_arrive_in(redis):
    """Followed then Unfollowed of one pair, delivered newest first: the unfollow wins."""
    stream = new_stream()
    following: set[tuple[int, int]] = set()

    async def on_followed(event: graph_events.Followed, meta: EventMeta) -> None:
        pair = (event.follower_id, event.followee_id)
        if await newer_than_applied(redis, f"t:{stream}:follow:{pair}", meta):
            following.add(pair)

    async def on_unfollowed(event: graph_events.Unfollowed, meta: EventMeta) -> None:
        pair = (event.follower_id, event.followee_id)
        if await newer_than_applied(redis, f"t:{stream}:follow:{pair}", meta):
            following.discard(pair)

    handlers = EventHandlers()
    handlers.on(graph_events.Followed, on_followed)
    handlers.on(graph_events.Unfollowed, on_unfollowed)
    consumer = StreamConsumer(redis, stream, "feed", handlers, start=Start.EARLIEST, block_ms=0)
    await consumer.ensure_group()
    followed_id, unfollowed_id = IDS.next_id(), IDS.next_id()
    for event, event_id in (
        (graph_events.Unfollowed(follower_id=1, followee_id=2), unfollowed_id),
        (graph_events.Followed(follower_id=1, followee_id=2), followed_id),
    ):
        envelope = seal(event, event_id=event_id, aggregate_id=1)
        await redis.xadd(stream, {FIELD_ENVELOPE: envelope.SerializeToString()})
    await consumer.poll_once()
    assert following == set()
    # In order, the same handlers follow the pair.
    for event in (
        graph_events.Followed(follower_id=3, followee_id=4),
        graph_events.Unfollowed(follower_id=3, followee_id=4),
        graph_events.Followed(follower_id=3, followee_id=4),
    ):
        await add_events(redis, stream, event)
    await consumer.poll_once()
    assert following == {(3, 4)}


async def test_the_consumers_span_joins_the_producers_trace(redis):
    exporter = InMemorySpanExporter()
    setup_tracing("test", SimpleSpanProcessor(exporter))
    stream = new_stream()

    async def on_deleted(event: user_events.UserDeleted, meta: EventMeta) -> None:
        pass

    handlers = EventHandlers()
    handlers.on(user_events.UserDeleted, on_deleted)
    consumer = StreamConsumer(redis, stream, "g", handlers, start=Start.EARLIEST, block_ms=0)
    await consumer.ensure_group()
    with trace.get_tracer("test").start_as_current_span("producer request") as span:
        producer_trace = span.get_span_context().trace_id
        await add_events(redis, stream, user_events.UserDeleted(user_id=1))
    await consumer.poll_once()
    [consumed] = [s for s in exporter.get_finished_spans() if s.name.startswith("consume ")]
    assert consumed.name == "consume socialmesh.user.v1.UserDeleted"
    assert consumed.context.trace_id == producer_trace
    assert consumed.kind == trace.SpanKind.CONSUMER


def test_the_cli_lists_and_replays_a_groups_dead_letters(infra: Infra, capsys):
    import json

    import redis as sync_redis

    from services.cli import main as cli

    client = sync_redis.Redis.from_url(infra.redis_url)
    stream, group = new_stream(), "notify"
    envelope = seal(user_events.UserDeleted(user_id=42), event_id=IDS.next_id(), aggregate_id=42)
    client.xadd(
        f"{stream}:dlq:{group}",
        {
            FIELD_TYPE: "socialmesh.user.v1.UserDeleted",
            FIELD_ENVELOPE: envelope.SerializeToString(),
            "entry_id": "1-0",
            "group": group,
            "attempts": "5",
            "error": "RuntimeError: boom",
        },
    )
    base = ["events", "--redis-url", infra.redis_url, "dead-letters", "--stream", stream]
    assert cli([*base, "--group", group]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["event"] == {"userId": "42"}
    assert (listed["attempts"], listed["error"]) == (5, "RuntimeError: boom")
    assert cli([*base, "--group", group, "--replay"]) == 0
    assert "replayed 1" in capsys.readouterr().out
    [(_, fields)] = client.xrange(stream)
    assert fields[b"only_group"] == b"notify"
    assert client.xlen(f"{stream}:dlq:{group}") == 0
    client.close()
