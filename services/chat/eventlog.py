"""The per-user event log: one durable, gapless position stream per user.

Writers append in their own transaction (`EventLog.append`), taking each
recipient's next position under the row lock of `stream_heads`, so one user's
positions commit in order and a reader that has seen position N can never later
find a smaller one appearing. After commit, `Wakeups.notify` publishes
(user, position) on Redis pub/sub to wake the streams holding that user; the
wake-up is at-most-once, which is fine: streams also read the log on every
heartbeat, and on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import redis.asyncio as aioredis
from socialmesh.chat.v1 import chat_pb2

from services.kit.errors import InvalidArgument
from services.kit.tasks import cancel_and_wait
from services.kit.timestamps import from_datetime

log = logging.getLogger("socialmesh.chat.eventlog")

CURSOR_PREFIX = "c1."
WAKE_CHANNEL_PREFIX = "chat:wake:"
#: Wake-up channel that reaches every stream of every instance (e.g. after a
#: bulk change); payload ignored.
WAKE_ALL = "chat:wake-all"


def encode_cursor(position: int) -> str:
    return f"{CURSOR_PREFIX}{position:x}"


def decode_cursor(cursor: str, field: str = "since") -> int | None:
    """The position in a cursor; None for an empty one (start from now)."""
    if not cursor:
        return None
    if not cursor.startswith(CURSOR_PREFIX) or len(cursor) > 24:
        raise InvalidArgument([(field, "not a cursor this server issued")])
    try:
        position = int(cursor[len(CURSOR_PREFIX) :], 16)
    except ValueError as exc:
        raise InvalidArgument([(field, "not a cursor this server issued")]) from exc
    if position < 0:
        raise InvalidArgument([(field, "not a cursor this server issued")])
    return position


@dataclass(frozen=True)
class LoggedEvent:
    position: int
    event: chat_pb2.ChatEvent


@dataclass(frozen=True)
class Head:
    last_position: int
    floor_position: int


class EventLog:
    """Appends to and reads the per-user logs (the chat schema's own tables)."""

    def __init__(self, schema: str = "chat") -> None:
        self._schema = schema

    async def append(
        self,
        conn: asyncpg.Connection,
        events: Mapping[int, chat_pb2.ChatEvent],
    ) -> dict[int, int]:
        """Appends one event per user (in the caller's transaction); returns positions.

        Heads are locked in user-id order, so concurrent appends to overlapping
        member sets cannot deadlock.
        """
        if not events:
            return {}
        user_ids = sorted(events)
        rows = await conn.fetch(
            f"""INSERT INTO {self._schema}.stream_heads AS h (user_id, last_position)
                SELECT u, 1 FROM unnest($1::bigint[]) WITH ORDINALITY AS t(u, o) ORDER BY o
                ON CONFLICT (user_id) DO UPDATE SET last_position = h.last_position + 1
                RETURNING user_id, last_position""",
            user_ids,
        )
        positions = {int(r["user_id"]): int(r["last_position"]) for r in rows}
        await conn.execute(
            f"""INSERT INTO {self._schema}.user_events (user_id, position, event)
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])""",
            user_ids,
            [positions[u] for u in user_ids],
            [events[u].SerializeToString() for u in user_ids],
        )
        return positions

    async def append_same(
        self, conn: asyncpg.Connection, user_ids: Iterable[int], event: chat_pb2.ChatEvent
    ) -> dict[int, int]:
        return await self.append(conn, {u: event for u in set(user_ids)})

    async def head(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> Head:
        row = await conn.fetchrow(
            f"SELECT last_position, floor_position FROM {self._schema}.stream_heads"
            " WHERE user_id = $1",
            user_id,
        )
        if row is None:
            return Head(0, 0)
        return Head(int(row["last_position"]), int(row["floor_position"]))

    async def read(
        self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int, after: int, limit: int
    ) -> list[LoggedEvent]:
        rows = await conn.fetch(
            f"SELECT position, event, create_time FROM {self._schema}.user_events"
            " WHERE user_id = $1 AND position > $2 ORDER BY position LIMIT $3",
            user_id,
            after,
            limit,
        )
        out = []
        for row in rows:
            event = chat_pb2.ChatEvent.FromString(row["event"])
            event.cursor = encode_cursor(int(row["position"]))
            if not event.HasField("create_time"):
                event.create_time.CopyFrom(from_datetime(row["create_time"]))
            out.append(LoggedEvent(int(row["position"]), event))
        return out

    async def prune(
        self, pool: asyncpg.Pool, *, older_than: datetime, keep_per_user: int, batch: int = 5000
    ) -> int:
        """Drops events past retention (by age, or beyond the newest `keep_per_user`).

        Raises each touched user's floor first, in the same transaction, so a
        reader resuming from a pruned position is told to resync rather than
        silently skipping.
        """
        removed = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"""WITH doomed AS (
                            SELECT e.user_id, e.position FROM {self._schema}.user_events e
                            JOIN {self._schema}.stream_heads h USING (user_id)
                            WHERE e.create_time < $1 OR e.position <= h.last_position - $2
                            LIMIT $3)
                        DELETE FROM {self._schema}.user_events e USING doomed d
                        WHERE e.user_id = d.user_id AND e.position = d.position
                        RETURNING e.user_id, e.position""",
                    older_than,
                    keep_per_user,
                    batch,
                )
                floors: dict[int, int] = defaultdict(int)
                for r in rows:
                    floors[int(r["user_id"])] = max(floors[int(r["user_id"])], int(r["position"]))
                if floors:
                    await conn.execute(
                        f"""UPDATE {self._schema}.stream_heads h
                            SET floor_position = greatest(h.floor_position, f.p)
                            FROM unnest($1::bigint[], $2::bigint[]) AS f(u, p)
                            WHERE h.user_id = f.u""",
                        list(floors),
                        list(floors.values()),
                    )
            removed += len(rows)
            if len(rows) < batch:
                return removed


class Wakeups:
    """Redis pub/sub wake-ups for the streams this instance holds.

    One subscriber connection per instance whatever the number of streams:
    channels are (un)subscribed as the first stream of a user opens and the
    last one closes. A lost connection wakes every local stream on reconnect,
    so they back-fill from the log.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._changes: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        #: Subscriptions requested but not yet sent, by user.
        self._subscribed: dict[int, asyncio.Future[None]] = {}

    @staticmethod
    def channel(user_id: int) -> str:
        return f"{WAKE_CHANNEL_PREFIX}{user_id}"

    async def notify(self, positions: Mapping[int, int]) -> None:
        """Wakes the recipients' streams (after the transaction committed)."""
        if not positions:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for user_id, position in positions.items():
                pipe.publish(self.channel(user_id), str(position))
            await pipe.execute()
        except Exception:
            log.warning("chat wake-up publish failed", exc_info=True)

    async def register(self, user_id: int) -> asyncio.Event:
        """A wake-up event for one stream of `user_id`, once its channel is subscribed.

        Waiting for the subscription matters: a stream reads the log after
        registering, so every append after that read is certain to wake it.
        """
        event = asyncio.Event()
        first = not self._waiters[user_id]
        self._waiters[user_id].add(event)
        pending = self._subscribed.get(user_id)
        if first or pending is not None:
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                self._subscribed[user_id] = pending
                self._changes.put_nowait(("subscribe", user_id))
            try:
                await asyncio.wait_for(asyncio.shield(pending), timeout=2)
            except TimeoutError:
                log.warning("chat wake-up subscription slow; relying on heartbeats")
        return event

    def unregister(self, user_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(user_id)
        if waiters is None:
            return
        waiters.discard(event)
        if not waiters:
            del self._waiters[user_id]
            self._changes.put_nowait(("unsubscribe", user_id))

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    @property
    def streams(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-wakeups")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("chat wake-up subscriber lost; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)
            self.wake_all()

    async def _session(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(WAKE_ALL)
            # Re-subscribe whatever is open now (after a reconnect); drop queued changes.
            while not self._changes.empty():
                self._changes.get_nowait()
            pending = list(self._subscribed)
            if self._waiters:
                await pubsub.subscribe(*[self.channel(u) for u in list(self._waiters)])
            self._confirm(pending)
            self.wake_all()
            while True:
                await self._apply_changes(pubsub)
                message = await pubsub.get_message(timeout=0.02)
                if message is None:
                    continue
                channel = message["channel"]
                if isinstance(channel, bytes):
                    channel = channel.decode()
                if channel == WAKE_ALL:
                    self.wake_all()
                    continue
                with contextlib.suppress(ValueError):
                    user_id = int(channel[len(WAKE_CHANNEL_PREFIX) :])
                    for event in self._waiters.get(user_id, ()):
                        event.set()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _apply_changes(self, pubsub: aioredis.client.PubSub) -> None:
        subscribe: list[str] = []
        unsubscribe: list[str] = []
        drained: list[int] = []
        while not self._changes.empty():
            _, user_id = self._changes.get_nowait()
            drained.append(user_id)
            # The latest state wins: a user may have opened and closed since.
            wanted = user_id in self._waiters
            (subscribe if wanted else unsubscribe).append(self.channel(user_id))
        if subscribe:
            await pubsub.subscribe(*set(subscribe))
        if unsubscribe:
            await pubsub.unsubscribe(*set(unsubscribe))
        self._confirm(drained)

    def _confirm(self, user_ids: list[int]) -> None:
        for user_id in user_ids:
            future = self._subscribed.pop(user_id, None)
            if future is not None and not future.done():
                future.set_result(None)


def event_at(create_time: datetime | None = None, **kind: object) -> chat_pb2.ChatEvent:
    """A ChatEvent with one oneof member set, e.g. `event_at(message=msg)`."""
    event = chat_pb2.ChatEvent(**kind)  # type: ignore[arg-type]
    if create_time is not None:
        event.create_time.CopyFrom(from_datetime(create_time))
    return event
