"""The stream engine: one user's event log read from a cursor, then live.

Connect, StreamEvents, SyncEvents and the browsers' SSE streams (sse.py) all
read the log through `Streams`: replay and live delivery are the same code, so
a stream on any instance, after any reconnect, sees every event exactly once,
in order. A stream ends with a control event: RECONNECT (jittered) when the
server drains, TOKEN_EXPIRING before the caller's token expires,
SESSION_ENDED on revocation, RESYNC_REQUIRED first when the cursor is older
than the log keeps. An account holds at most `max_streams_per_user` streams
(config): one more is refused with RESOURCE_EXHAUSTED (TOO_MANY_STREAMS)
before it starts, and open ones are never cut, so a client is not kicked off
by its own reconnect loop or by someone else's stolen token opening more.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2
from socialmesh.chat.v1 import chat_pb2

from services.kit.auth import Caller, Revocations
from services.kit.db import Database
from services.kit.errors import InvalidArgument, Reason, ResourceExhausted, ServiceError
from services.kit.pagination import page_size
from services.kit.tasks import cancel_and_wait

from .config import ChatConfig
from .eventlog import EventLog, Head, Wakeups, decode_cursor, encode_cursor
from .presence import PresenceTracker, StreamLimitReached

log = logging.getLogger("socialmesh.chat")

#: Events read from the log per round trip while catching up.
READ_BATCH = 200
#: A stream ends (TOKEN_EXPIRING) this long before the caller's token expires.
TOKEN_MARGIN_SECONDS = 60
SYNC_PAGES = (100, 500)
SYNC_DEFAULT_TIMEOUT, SYNC_MAX_TIMEOUT = 25.0, 30.0

#: A refused stream is told to retry after this long (a closed stream frees its slot
#: at once; a crashed instance's count until they age out).
STREAM_LIMIT_RETRY_SECONDS = 10.0


class TooManyStreams(ResourceExhausted):
    """429 TOO_MANY_STREAMS: the account holds as many open event streams as it may."""

    reason = Reason.TOO_MANY_STREAMS

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"at most {limit} open event streams per account: close one (another tab or"
            " device), then reconnect",
            subject="event streams",
            retry_after_seconds=STREAM_LIMIT_RETRY_SECONDS,
            limit=limit,
        )


#: Runs one Connect action; None for `subscribe` (the stream then starts delivery).
Act = Callable[[Caller, chat_pb2.ConnectRequest], Awaitable[chat_pb2.Ack | None]]


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(int(seconds * 1000))
    return value


def control(kind: int, cursor: str, **fields: Any) -> chat_pb2.ChatEvent:
    event = chat_pb2.ChatEvent(cursor=cursor, control=chat_pb2.StreamControl(kind=kind, **fields))  # type: ignore[arg-type]
    event.create_time.GetCurrentTime()
    return event


class Streams:
    """Delivery of one user's event log to Connect, StreamEvents, SyncEvents and SSE."""

    def __init__(
        self,
        db: Database,
        events: EventLog,
        wakeups: Wakeups,
        presence: PresenceTracker,
        config: Callable[[], ChatConfig],
        *,
        revocations: Callable[[], Revocations | None],
        broadcast_presence: Callable[[int], Awaitable[None]],
    ) -> None:
        self._db = db
        self._log = events
        self._wakeups = wakeups
        self._presence = presence
        self._config = config
        self._revocations = revocations
        self._broadcast_presence = broadcast_presence
        #: Set when the server drains: every stream ends with RECONNECT.
        self.draining = False

    def hello(self, cursor: str) -> chat_pb2.ChatEvent:
        now = chat_pb2.ChatEvent()
        now.create_time.GetCurrentTime()
        return control(
            chat_pb2.STREAM_CONTROL_KIND_HELLO,
            cursor,
            heartbeat_interval=duration(self._config().heartbeat_seconds),
            server_time=now.create_time,
        )

    async def start_position(
        self, user_id: int, since: str
    ) -> tuple[int, chat_pb2.ChatEvent | None]:
        """Where delivery starts, and a RESYNC_REQUIRED control if the cursor is unusable."""
        position = decode_cursor(since)
        head: Head = await self._log.head(self._db.primary, user_id)
        if position is None:
            return head.last_position, None
        if position < head.floor_position or position > head.last_position:
            cursor = encode_cursor(head.last_position)
            return head.last_position, control(
                chat_pb2.STREAM_CONTROL_KIND_RESYNC_REQUIRED,
                cursor,
                reason="the cursor is older than the event log keeps: refetch, then continue",
            )
        return position, None

    async def events(
        self, caller: Caller, since: str, *, greet: bool
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        """The caller's events from `since`, then live, until a control ends the stream."""
        user_id = caller.user_id
        position, resync = await self.start_position(user_id, since)
        wake = await self._wakeups.register(user_id)
        # A logout or revocation wakes the stream at once (kit Revocations.watch), so it
        # ends within a moment rather than at the next heartbeat.
        revocations = self._revocations()
        unwatch = revocations.watch(caller, wake) if revocations is not None else None
        stream_id = uuid.uuid4().hex
        presence = self._presence
        try:
            try:
                came_online = await presence.open(
                    user_id, stream_id, self._config().max_streams_per_user
                )
            except StreamLimitReached as full:
                raise TooManyStreams(full.limit) from None
            if came_online:
                await self._broadcast_presence(user_id)
            if greet:
                yield self.hello(encode_cursor(position))
            if resync is not None:
                yield resync
            heartbeat = self._config().heartbeat_seconds
            while True:
                wake.clear()
                batch = await self._log.read(self._db.primary, user_id, position, READ_BATCH)
                for logged in batch:
                    position = logged.position
                    yield logged.event
                if len(batch) == READ_BATCH:
                    continue
                ending = await self.ending(caller, encode_cursor(position))
                if ending is not None:
                    yield ending
                    return
                until_expiry = (
                    caller.expires_at - TOKEN_MARGIN_SECONDS - time.time()
                    if caller.expires_at
                    else heartbeat
                )
                try:
                    await asyncio.wait_for(
                        wake.wait(), timeout=max(0.05, min(heartbeat, until_expiry))
                    )
                except TimeoutError:
                    ending = await self.ending(caller, encode_cursor(position))
                    if ending is not None:
                        yield ending
                        return
                    await presence.refresh(user_id, stream_id)
                    beat = chat_pb2.ChatEvent(
                        cursor=encode_cursor(position), heartbeat=chat_pb2.Heartbeat()
                    )
                    beat.heartbeat.server_time.GetCurrentTime()
                    beat.create_time.CopyFrom(beat.heartbeat.server_time)
                    yield beat
        finally:
            if unwatch is not None:
                unwatch()
            self._wakeups.unregister(user_id, wake)
            try:
                if await presence.close(user_id, stream_id):
                    await self._broadcast_presence(user_id)
            except Exception:
                log.debug("presence close failed", exc_info=True)

    async def ending(self, caller: Caller, cursor: str) -> chat_pb2.ChatEvent | None:
        """The control that ends this stream now, if any (drain, expiry, revocation)."""
        if self.draining:
            jitter = random.uniform(0.5, max(0.5, self._config().reconnect_jitter_seconds))
            return control(
                chat_pb2.STREAM_CONTROL_KIND_RECONNECT,
                cursor,
                retry_after=duration(jitter),
                reason="server restarting: reconnect with the last cursor",
            )
        if caller.expires_at and time.time() >= caller.expires_at - TOKEN_MARGIN_SECONDS:
            return control(
                chat_pb2.STREAM_CONTROL_KIND_TOKEN_EXPIRING,
                cursor,
                reason="the access token expires soon: refresh it and reconnect",
            )
        revocations = self._revocations()
        if revocations is not None and await revocations.is_revoked(caller):
            return control(
                chat_pb2.STREAM_CONTROL_KIND_SESSION_ENDED, cursor, reason="the session was revoked"
            )
        return None

    async def sync(
        self, caller: Caller, request: chat_pb2.SyncEventsRequest
    ) -> chat_pb2.SyncEventsResponse:
        """One long poll: the events after `request.since`, waiting up to its timeout."""
        size = page_size(request.page_size, default=SYNC_PAGES[0], maximum=SYNC_PAGES[1])
        timeout = SYNC_DEFAULT_TIMEOUT
        if request.HasField("timeout"):
            timeout = request.timeout.ToMilliseconds() / 1000
            if timeout < 0 or timeout > SYNC_MAX_TIMEOUT:
                raise InvalidArgument([("timeout", f"0 to {SYNC_MAX_TIMEOUT:.0f} seconds")])
        position, resync = await self.start_position(caller.user_id, request.since)
        reply = chat_pb2.SyncEventsResponse()
        if resync is not None:
            reply.events.append(resync)
        if not request.since or resync is not None:
            reply.next_cursor = encode_cursor(position)
            return reply
        wake = await self._wakeups.register(caller.user_id)
        try:
            deadline = time.monotonic() + timeout
            while True:
                wake.clear()
                batch = await self._log.read(self._db.primary, caller.user_id, position, size)
                if batch or time.monotonic() >= deadline or self.draining:
                    break
                try:
                    await asyncio.wait_for(wake.wait(), timeout=deadline - time.monotonic())
                except TimeoutError:
                    pass
        finally:
            self._wakeups.unregister(caller.user_id, wake)
        for logged in batch:
            reply.events.append(logged.event)
            position = logged.position
        reply.next_cursor = encode_cursor(position)
        return reply

    async def connect(
        self,
        caller: Caller,
        request_iterator: AsyncIterator[chat_pb2.ConnectRequest],
        act: Act,
    ) -> AsyncIterator[chat_pb2.ConnectResponse]:
        """The bidirectional stream: actions in (acked), events out once subscribed."""
        outbox: asyncio.Queue[chat_pb2.ConnectResponse | None] = asyncio.Queue(maxsize=1000)
        delivery: asyncio.Task[None] | None = None

        async def deliver(since: str) -> None:
            try:
                async for event in self.events(caller, since, greet=False):
                    await outbox.put(chat_pb2.ConnectResponse(event=event))
                    if event.WhichOneof("event") == "control" and event.control.kind not in (
                        chat_pb2.STREAM_CONTROL_KIND_HELLO,
                        chat_pb2.STREAM_CONTROL_KIND_RESYNC_REQUIRED,
                    ):
                        break
            except ServiceError as exc:
                await outbox.put(
                    chat_pb2.ConnectResponse(ack=chat_pb2.Ack(status=exc.status_proto()))
                )
            await outbox.put(None)

        async def read_actions() -> None:
            nonlocal delivery
            async for action in request_iterator:
                ack = await act(caller, action)
                if ack is None:  # subscribe: (re)start delivery from the cursor
                    if delivery is not None:
                        await cancel_and_wait(delivery)
                    delivery = asyncio.create_task(deliver(action.subscribe.since))
                    ack = chat_pb2.Ack(
                        client_request_id=action.client_request_id,
                        status=status_pb2.Status(code=code_pb2.OK),
                    )
                await outbox.put(chat_pb2.ConnectResponse(ack=ack))
            await outbox.put(None)

        head = await self._log.head(self._db.primary, caller.user_id)
        yield chat_pb2.ConnectResponse(event=self.hello(encode_cursor(head.last_position)))
        reader = asyncio.create_task(read_actions())
        try:
            while True:
                response = await outbox.get()
                if response is None:
                    break
                yield response
        finally:
            await cancel_and_wait(reader)
            if delivery is not None:
                await cancel_and_wait(delivery)
