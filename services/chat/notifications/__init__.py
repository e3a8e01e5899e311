"""Notifications: grouped from typed events, listed, counted, read, dismissed, pushed.

Write side (consumer group `chat-notifications`, from `$`): likes, shares,
comments, mentions, follows, follow requests and accepted requests become
notification groups, Mastodon-style: likes (and shares) of one post share a
group, follows share one per day, comments and mentions never group. New
activity in a group gives it a fresh, time-ordered `notification_id`, so it
sorts first and reads as unread again; `actor_count` counts distinct people
(`notification_actors`), `sample_actor_ids` keeps the 8 newest. Nothing is
stored for your own actions, nor between accounts that block each other or
from an account the recipient mutes (asked of graph with chat's own
credential). `claim_event` in the same transaction makes redelivery harmless.

The group, the recipient's new unread count and (for recipients with no open
stream) push deliveries are written in one transaction with the recipient's
event log entries, so a notification is live on the chat stream exactly when
it is stored.

Modules (one job each; none imports the servicer, which builds `Notifications`
in `on_ready` and runs `NotificationGrouping` as its consumer group):

- `activity.py`: notification kinds and `Activity` (one thing that happened).
- `grouping.py`: consumer group `chat-notifications` (`NotificationGrouping`):
  event -> activities -> groups, log entries and pushes.
- `store.py`: the SQL the consumer and the reads share (upsert a group, read
  marks, counts, queue pushes).
- `endpoints.py`: which push endpoints may be registered (kinds, egress guard).
- `senders.py`: the providers configured from env and the sender per kind;
  `webpush.py`, `apns.py`, `fcm.py` the non-webhook senders, `summary.py`
  what a device shows (docs/push.md).
- this module: `Notifications`, the facade the RPCs call (list, count, mark,
  dismiss, push endpoints, pushes after a message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2_grpc

from services.kit.consumers import EventHandlers, EventMeta
from services.kit.db import Database
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from services.kit.ids import IdGenerator
from services.kit.pagination import PageSizes, PageTokens
from services.kit.timestamps import from_datetime
from services.kit.validation import require_positive_id

from ..eventlog import EventLog, Wakeups
from ..push import KIND_WEBHOOK, PushConfig, PushSender, PushWorker, new_signing_secret
from .activity import (
    COMMENT,
    FOLLOW,
    FOLLOW_ACCEPTED,
    FOLLOW_REQUEST,
    KNOWN_TYPES,
    LIKE,
    MENTION,
    SHARE,
    Activity,
)
from .endpoints import validate_endpoint
from .grouping import IsOnline, MessageUnread, NotificationGrouping
from .senders import PushProviders
from .store import MAX_SAMPLE_ACTORS, NotificationStore, notification_proto

__all__ = [
    "COMMENT",
    "CONSUMER_GROUP",
    "FOLLOW",
    "FOLLOW_ACCEPTED",
    "FOLLOW_REQUEST",
    "LIKE",
    "MAX_SAMPLE_ACTORS",
    "MENTION",
    "SHARE",
    "Activity",
    "NotificationGrouping",
    "Notifications",
    "PushProviders",
    "notification_proto",
    "validate_endpoint",
]

log = logging.getLogger("socialmesh.chat.notifications")

CONSUMER_GROUP = NotificationGrouping.GROUP
#: ListNotifications page sizes (chat.proto): default 20, at most 100.
NOTIFICATION_PAGES = PageSizes(default=20, maximum=100)
MAX_PUSH_ENDPOINTS = 10


class Notifications:
    """Notification groups, unread counts, push endpoints and the push worker of chat."""

    def __init__(
        self,
        db: Database,
        ids: IdGenerator,
        page_tokens: PageTokens,
        *,
        events: EventLog,
        wakeups: Wakeups,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        is_online: IsOnline,
        message_unread: MessageUnread,
        schema: str = "chat",
        sender: PushSender | None = None,
        push_config: PushConfig | None = None,
        providers: PushProviders | None = None,
        is_private: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self._db = db
        self._ids = ids
        self._tokens = page_tokens
        self._events = events
        self._wakeups = wakeups
        self._is_online = is_online
        self._message_unread = message_unread
        self.store = NotificationStore(ids, schema=schema)
        #: Push providers and egress guard (env: docs/push.md).
        self.providers = providers or PushProviders.from_env()
        self._sender: PushSender = sender or self.providers.sender()
        self.push_worker = PushWorker(db, self._sender, schema=schema, config=push_config)
        #: Consumer group `chat-notifications` (the servicer runs it).
        self.grouping = NotificationGrouping(
            db,
            self.store,
            events=events,
            wakeups=wakeups,
            graph=graph,
            is_online=is_online,
            message_unread=message_unread,
            poke_push=self.poke_push,
            is_private=is_private,
            schema=schema,
        )

    # ----- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Starts the push worker (one per instance; instances share the rows)."""
        self.push_worker.start()

    async def stop(self) -> None:
        await self.push_worker.stop()
        await self._sender.close()

    def handlers(self) -> EventHandlers:
        """The `chat-notifications` handlers (`grouping.py`)."""
        return self.grouping.handlers()

    async def record(self, meta: EventMeta, activities: Sequence[Activity]) -> None:
        """Stores the activities of one event (`NotificationGrouping.record`)."""
        await self.grouping.record(meta, activities)

    # ----- reads -----------------------------------------------------------

    @staticmethod
    def _types(values: Sequence[int], field: str) -> list[int]:
        unknown = [v for v in values if v not in KNOWN_TYPES]
        if unknown:
            raise InvalidArgument([(field, f"unknown notification type {unknown[0]}")])
        return sorted(set(values))

    async def list_notifications(
        self, user_id: int, request: chat_pb2.ListNotificationsRequest
    ) -> chat_pb2.ListNotificationsResponse:
        """Newest first by notification_id; the page token is bound to the filters."""
        types = self._types(request.types, "types")
        excluded = self._types(request.exclude_types, "exclude_types")
        scope = f"notifications:{user_id}:{types}:{excluded}"
        page = self._tokens.page(scope, "before", request, NOTIFICATION_PAGES)
        pool = self._db.primary
        rows = await pool.fetch(
            f"""SELECT * FROM {self.store.s}.notifications
                WHERE user_id = $1 AND NOT dismissed
                  AND ($2::bigint IS NULL OR notification_id < $2)
                  AND (cardinality($3::smallint[]) = 0 OR kind = ANY($3::smallint[]))
                  AND NOT (kind = ANY($4::smallint[]))
                ORDER BY notification_id DESC
                LIMIT $5""",
            user_id,
            page.position,
            types,
            excluded,
            page.limit,
        )
        marker = await self.store.marker(pool, user_id)
        return chat_pb2.ListNotificationsResponse(
            notifications=[notification_proto(r, marker) for r in page.rows(rows)],
            next_page_token=page.next_token(rows, lambda r: int(r["notification_id"])),
            unread_count=await self.store.unread(pool, user_id),
        )

    async def unread_counts(self, user_id: int) -> chat_pb2.UnreadCounts:
        messages = await self._message_unread(user_id)
        return await self.store.counts(self._db.primary, user_id, messages)

    # ----- writes ----------------------------------------------------------

    async def mark_read(
        self, user_id: int, request: chat_pb2.MarkNotificationsReadRequest
    ) -> chat_pb2.UnreadCounts:
        """Moves the read mark forward only (never past the newest notification).

        Capping at the newest id keeps a client from marking notifications
        that do not exist yet as read. Other devices learn the new counts
        from an unread_counts event.
        """
        require_positive_id(request.up_to_notification_id, "up_to_notification_id")
        messages = await self._message_unread(user_id)
        s = self.store.s
        async with self._db.transaction() as conn:
            await conn.execute(
                f"""INSERT INTO {s}.notification_markers AS m (user_id, last_read_id)
                    SELECT $1, least($2::bigint, max(notification_id))
                    FROM {s}.notifications WHERE user_id = $1
                    HAVING max(notification_id) IS NOT NULL
                    ON CONFLICT (user_id) DO UPDATE
                    SET last_read_id = greatest(m.last_read_id, EXCLUDED.last_read_id)""",
                user_id,
                request.up_to_notification_id,
            )
            counts = await self.store.counts(conn, user_id, messages)
            positions = await self._append_counts(conn, user_id, counts)
        await self._wakeups.notify(positions)
        return counts

    async def _append_counts(
        self, conn: asyncpg.Connection, user_id: int, counts: chat_pb2.UnreadCounts
    ) -> dict[int, int]:
        event = chat_pb2.ChatEvent(unread_counts=counts)
        event.create_time.CopyFrom(from_datetime(datetime.now(UTC)))
        return await self._events.append(conn, {user_id: event})

    async def dismiss(self, user_id: int, request: chat_pb2.DismissNotificationRequest) -> None:
        """Hides one group; another user's id is NOT_FOUND exactly like a missing one."""
        require_positive_id(request.notification_id, "notification_id")
        messages = await self._message_unread(user_id)
        s = self.store.s
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""UPDATE {s}.notifications SET dismissed = true
                    WHERE notification_id = $1 AND user_id = $2
                    RETURNING group_key""",
                request.notification_id,
                user_id,
            )
            if row is None:
                raise NotFound(f"notification {request.notification_id} not found")
            # New activity after a dismissal starts the group over.
            await conn.execute(
                f"DELETE FROM {s}.notification_actors WHERE user_id = $1 AND group_key = $2",
                user_id,
                row["group_key"],
            )
            counts = await self.store.counts(conn, user_id, messages)
            positions = await self._append_counts(conn, user_id, counts)
        await self._wakeups.notify(positions)

    # ----- push endpoints --------------------------------------------------

    def push_config(self) -> chat_pb2.PushConfig:
        """The VAPID public key and the endpoint kinds this server delivers to."""
        return self.providers.config_proto()

    async def create_push_endpoint(
        self, user_id: int, request: chat_pb2.CreatePushEndpointRequest
    ) -> chat_pb2.PushEndpoint:
        """Idempotent per (user, url or device token); at most MAX_PUSH_ENDPOINTS per user.

        A new webhook gets its signing secret; only this call returns it (a
        repeat is the same endpoint, secret included, so a lost answer is not
        a lost secret). A Web Push subscription registered again with new keys
        keeps its id and takes the new keys (browsers rotate them).
        """
        new = await validate_endpoint(request.push_endpoint, self.providers)
        s = self.store.s
        async with self._db.transaction() as conn:
            # Serialises one user's creates so the limit holds under concurrency.
            await conn.execute(
                "SELECT pg_advisory_xact_lock("
                "hashtextextended('chat-push:' || $1::bigint::text, 0))",
                user_id,
            )
            row = await conn.fetchrow(
                f"""UPDATE {s}.push_endpoints SET p256dh = $3, auth_secret = $4
                    WHERE user_id = $1 AND url = $2 RETURNING *""",
                user_id,
                new.key,
                new.p256dh,
                new.auth_secret,
            )
            if row is None:
                count = await conn.fetchval(
                    f"SELECT count(*) FROM {s}.push_endpoints WHERE user_id = $1", user_id
                )
                if count >= MAX_PUSH_ENDPOINTS:
                    raise FailedPrecondition(
                        f"at most {MAX_PUSH_ENDPOINTS} push endpoints; delete one first",
                        reason=Reason.LIMIT_REACHED,
                    )
                row = await conn.fetchrow(
                    f"""INSERT INTO {s}.push_endpoints
                            (push_endpoint_id, user_id, url, kind, signing_secret,
                             p256dh, auth_secret, device_token)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
                    self._ids.next_id(),
                    user_id,
                    new.key,
                    new.kind,
                    new_signing_secret() if new.kind == KIND_WEBHOOK else "",
                    new.p256dh,
                    new.auth_secret,
                    new.device_token,
                )
        endpoint = chat_pb2.PushEndpoint(
            push_endpoint_id=int(row["push_endpoint_id"]),
            url=new.url,
            kind=int(row["kind"]),  # type: ignore[arg-type]
            signing_secret=str(row["signing_secret"]),
        )
        endpoint.create_time.CopyFrom(from_datetime(row["create_time"]))
        return endpoint

    async def delete_push_endpoint(
        self, user_id: int, request: chat_pb2.DeletePushEndpointRequest
    ) -> None:
        """Removes the endpoint and whatever is queued for it; NOT_FOUND if not the caller's."""
        require_positive_id(request.push_endpoint_id, "push_endpoint_id")
        deleted = await self._db.primary.fetchval(
            f"""DELETE FROM {self.store.s}.push_endpoints
                WHERE push_endpoint_id = $1 AND user_id = $2 RETURNING true""",
            request.push_endpoint_id,
            user_id,
        )
        if not deleted:
            raise NotFound(f"push endpoint {request.push_endpoint_id} not found")

    async def enqueue_push(
        self, conn: asyncpg.Connection, user_ids: Sequence[int], event: chat_pb2.ChatEvent
    ) -> None:
        """Queues `event` for every push endpoint of `user_ids`, in the caller's transaction."""
        await self.store.enqueue_push(conn, user_ids, event)

    async def after_message(self, row: Any, message: chat_pb2.Message) -> None:
        """Queues a push of a new message for accepted members without an open stream.

        Called after the send committed; a failure here is logged, never
        returned to the sender (the message is stored and streamed already).
        Members whose conversation is still a request get no push (spam).
        """
        try:
            recipients = [
                int(m.user_id)
                for m in row.members
                if m.user_id != message.sender_id
                and m.state == chat_pb2.CONVERSATION_STATE_ACCEPTED
            ]
            if not recipients:
                return
            online = await self._is_online(recipients)
            offline = [u for u in recipients if u not in online]
            if not offline:
                return
            event = chat_pb2.ChatEvent(message=message)
            event.create_time.CopyFrom(message.create_time)
            async with self._db.transaction() as conn:
                await self.enqueue_push(conn, offline, event)
            self.push_worker.poke()
        except Exception:  # a lost push must not fail a stored send
            log.warning("could not queue pushes for message %d", message.message_id, exc_info=True)

    def poke_push(self) -> None:
        """Wakes this instance's push worker (after committing deliveries)."""
        self.push_worker.poke()
