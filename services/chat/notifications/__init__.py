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
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.consumers import EventHandlers, EventMeta, Start, claim_event
from services.kit.db import Database
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from services.kit.ids import IdGenerator
from services.kit.migrations import quote_ident
from services.kit.pagination import PageSizes, PageTokens
from services.kit.timestamps import from_datetime
from services.kit.validation import Violations, require_positive_id, strip_control_characters

from .eventlog import EventLog, Wakeups
from .push import PushConfig, PushSender, PushWorker, WebhookSender

if TYPE_CHECKING:
    from .servicer import ChatServicer

log = logging.getLogger("socialmesh.chat.notifications")

CONSUMER_GROUP = "chat-notifications"
NT = chat_pb2.NotificationType
FOLLOW = NT.NOTIFICATION_TYPE_FOLLOW
LIKE = NT.NOTIFICATION_TYPE_LIKE
COMMENT = NT.NOTIFICATION_TYPE_COMMENT
MENTION = NT.NOTIFICATION_TYPE_MENTION
SHARE = NT.NOTIFICATION_TYPE_SHARE
FOLLOW_REQUEST = NT.NOTIFICATION_TYPE_FOLLOW_REQUEST
FOLLOW_ACCEPTED = NT.NOTIFICATION_TYPE_FOLLOW_ACCEPTED
KNOWN_TYPES = frozenset(v for v in NT.values() if v != NT.NOTIFICATION_TYPE_UNSPECIFIED)

#: Newest actors a group shows (chat.proto: "up to 8").
MAX_SAMPLE_ACTORS = 8
#: Comment snippet length (chat.proto).
MAX_SNIPPET = 140
#: ListNotifications page sizes (chat.proto): default 20, at most 100.
NOTIFICATION_PAGES = PageSizes(default=20, maximum=100)
MAX_PUSH_ENDPOINTS = 10
MAX_URL_CHARS = 2048
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

IsOnline = Callable[[Sequence[int]], Awaitable[set[int]]]
MessageUnread = Callable[[int], Awaitable[tuple[int, int]]]


@dataclass(frozen=True)
class Activity:
    """One thing that happened to `recipient`, before grouping."""

    recipient: int
    actor: int
    kind: int
    group_key: str
    post_id: int = 0
    comment_id: int = 0
    snippet: str = ""
    #: The recipient may see the post only as an approved follower of `actor`
    #: (a FOLLOWERS post, or any post of a private account): no notification
    #: otherwise, or a mention would reveal a post they cannot open.
    requires_following: bool = False


def _utc(value: datetime) -> datetime:
    """Envelope times are naive UTC; asyncpg needs them aware for TIMESTAMPTZ."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _snippet(text: str) -> str:
    return strip_control_characters(text)[:MAX_SNIPPET]


def notification_proto(row: Mapping[str, Any], last_read_id: int) -> chat_pb2.Notification:
    sample = [int(a) for a in row["sample_actor_ids"]]
    notification = chat_pb2.Notification(
        notification_id=int(row["notification_id"]),
        type=int(row["kind"]),  # type: ignore[arg-type]
        actor_id=sample[0] if sample else 0,
        post_id=int(row["post_id"]) or None,  # absent when none, never "0"
        comment_id=int(row["comment_id"]) or None,
        read=int(row["notification_id"]) <= last_read_id,
        group_key=str(row["group_key"]),
        sample_actor_ids=sample,
        actor_count=int(row["actor_count"]),
        snippet=str(row["snippet"]),
    )
    notification.create_time.CopyFrom(from_datetime(row["create_time"]))
    notification.latest_time.CopyFrom(from_datetime(row["latest_time"]))
    return notification


def validate_push_url(url: str, field: str = "push_endpoint.url") -> None:
    """https anywhere, plain http only to this machine (local development and tests)."""
    if not url:
        raise InvalidArgument([(field, "required")])
    v = Violations()
    v.check(len(url) <= MAX_URL_CHARS, field, f"at most {MAX_URL_CHARS} characters")
    v.check(
        not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url),
        field,
        "must not contain spaces or control characters",
    )
    v.raise_if_any()
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidArgument([(field, "not a valid URL")]) from exc
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument([(field, "must be an https URL with a host")])
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument([(field, "must not carry credentials")])
    if parts.scheme == "http" and not _is_local(host):
        raise InvalidArgument([(field, "must be https (http only for localhost)")])
    if not _is_local(host) and _is_internal_address(host):
        # The worker posts from inside the cluster: no pushes to private or
        # link-local addresses (cloud metadata). Names are not resolved here.
        raise InvalidArgument([(field, "must not point at a private or reserved address")])


def _is_internal_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        is_private: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self._db = db
        self._ids = ids
        self._tokens = page_tokens
        self._events = events
        self._wakeups = wakeups
        self._graph = graph
        self._is_online = is_online
        self._message_unread = message_unread
        self._is_private = is_private
        self._schema_name = schema
        self._s = quote_ident(schema)
        self._sender: PushSender = sender or WebhookSender()
        self.push_worker = PushWorker(db, self._sender, schema=schema, config=push_config)

    # ----- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Starts the push worker (one per instance; instances share the rows)."""
        self.push_worker.start()

    async def stop(self) -> None:
        await self.push_worker.stop()
        await self._sender.close()

    # ----- consumers -------------------------------------------------------

    def handlers(self) -> EventHandlers:
        """Typed dispatch for consumer group `chat-notifications` (start at LATEST)."""
        handlers = EventHandlers()
        handlers.on(post_events.PostLiked, self._on_liked)
        handlers.on(post_events.PostShared, self._on_shared)
        handlers.on(post_events.CommentCreated, self._on_commented)
        handlers.on(post_events.PostCreated, self._on_post_created)
        handlers.on(graph_events.Followed, self._on_followed)
        handlers.on(graph_events.FollowRequested, self._on_follow_requested)
        handlers.on(graph_events.FollowRequestAccepted, self._on_follow_accepted)
        return handlers

    async def _on_liked(self, e: post_events.PostLiked, meta: EventMeta) -> None:
        await self.record(
            meta,
            [Activity(e.post_author_id, e.user_id, LIKE, f"like:{e.post_id}", post_id=e.post_id)],
        )

    async def _on_shared(self, e: post_events.PostShared, meta: EventMeta) -> None:
        await self.record(
            meta,
            [Activity(e.post_author_id, e.user_id, SHARE, f"share:{e.post_id}", post_id=e.post_id)],
        )

    async def _on_commented(self, e: post_events.CommentCreated, meta: EventMeta) -> None:
        await self.record(
            meta,
            [
                Activity(
                    e.post_author_id,
                    e.author_id,
                    COMMENT,
                    f"comment:{e.comment_id}",
                    post_id=e.post_id,
                    comment_id=e.comment_id,
                    snippet=_snippet(e.snippet),
                )
            ],
        )

    async def _on_post_created(self, e: post_events.PostCreated, meta: EventMeta) -> None:
        if not e.mention_ids:
            return
        restricted = e.visibility == post_pb2.VISIBILITY_FOLLOWERS or (
            self._is_private is not None and await self._is_private(e.author_id)
        )
        await self.record(
            meta,
            [
                Activity(
                    m,
                    e.author_id,
                    MENTION,
                    f"mention:{e.post_id}",
                    post_id=e.post_id,
                    snippet=_snippet(e.snippet),
                    requires_following=restricted,
                )
                for m in dict.fromkeys(e.mention_ids)
            ],
        )

    async def _on_followed(self, e: graph_events.Followed, meta: EventMeta) -> None:
        day = _utc(meta.occur_time).date().isoformat()
        await self.record(meta, [Activity(e.followee_id, e.follower_id, FOLLOW, f"follow:{day}")])

    async def _on_follow_requested(self, e: graph_events.FollowRequested, meta: EventMeta) -> None:
        await self.record(
            meta,
            [Activity(e.target_id, e.requester_id, FOLLOW_REQUEST, f"request:{e.requester_id}")],
        )

    async def _on_follow_accepted(
        self, e: graph_events.FollowRequestAccepted, meta: EventMeta
    ) -> None:
        await self.record(
            meta,
            [Activity(e.requester_id, e.target_id, FOLLOW_ACCEPTED, f"accepted:{e.target_id}")],
        )

    async def _allowed(self, activity: Activity) -> bool:
        """False for own actions and across blocks (either way) or the recipient's mutes."""
        if activity.recipient <= 0 or activity.actor <= 0 or activity.recipient == activity.actor:
            return False
        reply = await self._graph.BatchGetRelationships(
            graph_pb2.BatchGetRelationshipsRequest(
                viewer_id=activity.recipient, user_ids=[activity.actor]
            )
        )
        rel = reply.relationships[0]
        if activity.requires_following and not rel.following:
            return False
        return not (rel.blocking or rel.blocked_by or rel.muting)

    async def record(self, meta: EventMeta, activities: Sequence[Activity]) -> None:
        """Stores the activities of one event (once, however often it is delivered).

        Graph and presence are asked before the transaction (a failing graph
        call fails the event, and the consumer retries it); the groups, the
        event log entries and the push deliveries commit together.
        """
        candidates = [a for a in activities if a.recipient > 0 and a.recipient != a.actor]
        if not candidates:
            return
        verdicts = await asyncio.gather(*(self._allowed(a) for a in candidates))
        allowed = [a for a, ok in zip(candidates, verdicts, strict=True) if ok]
        if not allowed:
            return
        recipients = list(dict.fromkeys(a.recipient for a in allowed))
        online = await self._is_online(recipients)
        unread_messages = dict(
            zip(
                recipients,
                await asyncio.gather(*(self._message_unread(r) for r in recipients)),
                strict=True,
            )
        )
        at = _utc(meta.occur_time)
        positions: dict[int, int] = {}
        async with self._db.transaction() as conn:
            if not await claim_event(conn, self._schema_name, CONSUMER_GROUP, meta):
                return
            for activity in allowed:
                notification = await self._upsert(conn, activity, at)
                if notification is None:
                    continue
                recipient = activity.recipient
                now = datetime.now(UTC)
                event = chat_pb2.ChatEvent(notification=notification)
                event.create_time.CopyFrom(from_datetime(now))
                positions.update(await self._events.append(conn, {recipient: event}))
                counts = await self._counts(conn, recipient, unread_messages[recipient])
                counts_event = chat_pb2.ChatEvent(unread_counts=counts)
                counts_event.create_time.CopyFrom(from_datetime(now))
                positions.update(await self._events.append(conn, {recipient: counts_event}))
                if recipient not in online:
                    await self.enqueue_push(conn, [recipient], event)
        await self._wakeups.notify(positions)
        self.push_worker.poke()

    async def _upsert(
        self, conn: asyncpg.Connection, a: Activity, at: datetime
    ) -> chat_pb2.Notification | None:
        """Adds the activity to its group; None when nothing changed.

        A repeat by an actor already in the group (unlike and like again)
        changes nothing, so nobody can bump a group to the top at will. A
        dismissed group starts over with this actor.
        """
        s = self._s
        if a.kind == FOLLOW:
            # Accepting a request also emits Followed: the recipient approved
            # this follower themselves, which is no news to them.
            asked = await conn.fetchval(
                f"SELECT true FROM {s}.notifications WHERE user_id = $1 AND group_key = $2",
                a.recipient,
                f"request:{a.actor}",
            )
            if asked:
                return None
        dismissed = await conn.fetchval(
            f"SELECT dismissed FROM {s}.notifications WHERE user_id = $1 AND group_key = $2"
            " FOR UPDATE",
            a.recipient,
            a.group_key,
        )
        if dismissed:
            await conn.execute(
                f"DELETE FROM {s}.notification_actors WHERE user_id = $1 AND group_key = $2",
                a.recipient,
                a.group_key,
            )
        new_actor = await conn.fetchval(
            f"""INSERT INTO {s}.notification_actors (user_id, group_key, actor_id)
                VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
            a.recipient,
            a.group_key,
            a.actor,
        )
        if not new_actor:
            return None
        row = await conn.fetchrow(
            f"""INSERT INTO {s}.notifications AS n
                    (notification_id, user_id, kind, group_key, post_id, comment_id, snippet,
                     sample_actor_ids, actor_count, create_time, latest_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7, ARRAY[$8::bigint], 1, $9, $9)
                ON CONFLICT (user_id, group_key) DO UPDATE SET
                    notification_id = EXCLUDED.notification_id,
                    comment_id = EXCLUDED.comment_id,
                    snippet = EXCLUDED.snippet,
                    sample_actor_ids = CASE WHEN n.dismissed THEN EXCLUDED.sample_actor_ids
                        ELSE (ARRAY[$8::bigint] || array_remove(n.sample_actor_ids, $8))[1:$10]
                        END,
                    actor_count = CASE WHEN n.dismissed THEN 1 ELSE n.actor_count + 1 END,
                    create_time = CASE WHEN n.dismissed THEN EXCLUDED.create_time
                        ELSE n.create_time END,
                    latest_time = CASE WHEN n.dismissed THEN EXCLUDED.latest_time
                        ELSE greatest(n.latest_time, EXCLUDED.latest_time) END,
                    dismissed = false
                RETURNING *""",
            self._ids.next_id(),
            a.recipient,
            a.kind,
            a.group_key,
            a.post_id,
            a.comment_id,
            a.snippet,
            a.actor,
            at,
            MAX_SAMPLE_ACTORS,
        )
        # A fresh id is above any read mark: unread.
        return notification_proto(row, 0)

    # ----- reads -----------------------------------------------------------

    async def _marker(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
        value = await conn.fetchval(
            f"SELECT last_read_id FROM {self._s}.notification_markers WHERE user_id = $1",
            user_id,
        )
        return int(value or 0)

    async def _unread(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
        value = await conn.fetchval(
            f"""SELECT count(*) FROM {self._s}.notifications
                WHERE user_id = $1 AND NOT dismissed
                  AND notification_id > coalesce(
                      (SELECT last_read_id FROM {self._s}.notification_markers
                       WHERE user_id = $1), 0)""",
            user_id,
        )
        return int(value or 0)

    async def _counts(
        self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int, messages: tuple[int, int]
    ) -> chat_pb2.UnreadCounts:
        return chat_pb2.UnreadCounts(
            notifications=await self._unread(conn, user_id),
            messages=messages[0],
            conversations=messages[1],
        )

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
            f"""SELECT * FROM {self._s}.notifications
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
        marker = await self._marker(pool, user_id)
        return chat_pb2.ListNotificationsResponse(
            notifications=[notification_proto(r, marker) for r in page.rows(rows)],
            next_page_token=page.next_token(rows, lambda r: int(r["notification_id"])),
            unread_count=await self._unread(pool, user_id),
        )

    async def unread_counts(self, user_id: int) -> chat_pb2.UnreadCounts:
        messages = await self._message_unread(user_id)
        return await self._counts(self._db.primary, user_id, messages)

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
        s = self._s
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
            counts = await self._counts(conn, user_id, messages)
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
        s = self._s
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
            counts = await self._counts(conn, user_id, messages)
            positions = await self._append_counts(conn, user_id, counts)
        await self._wakeups.notify(positions)

    # ----- push endpoints --------------------------------------------------

    async def create_push_endpoint(
        self, user_id: int, request: chat_pb2.CreatePushEndpointRequest
    ) -> chat_pb2.PushEndpoint:
        """Idempotent per (user, url); at most MAX_PUSH_ENDPOINTS per user."""
        url = request.push_endpoint.url
        validate_push_url(url)
        s = self._s
        async with self._db.transaction() as conn:
            # Serialises one user's creates so the limit holds under concurrency.
            await conn.execute(
                "SELECT pg_advisory_xact_lock("
                "hashtextextended('chat-push:' || $1::bigint::text, 0))",
                user_id,
            )
            row = await conn.fetchrow(
                f"SELECT * FROM {s}.push_endpoints WHERE user_id = $1 AND url = $2",
                user_id,
                url,
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
                    f"""INSERT INTO {s}.push_endpoints (push_endpoint_id, user_id, url)
                        VALUES ($1, $2, $3) RETURNING *""",
                    self._ids.next_id(),
                    user_id,
                    url,
                )
        endpoint = chat_pb2.PushEndpoint(
            push_endpoint_id=int(row["push_endpoint_id"]), url=str(row["url"])
        )
        endpoint.create_time.CopyFrom(from_datetime(row["create_time"]))
        return endpoint

    async def delete_push_endpoint(
        self, user_id: int, request: chat_pb2.DeletePushEndpointRequest
    ) -> None:
        """Removes the endpoint and whatever is queued for it; NOT_FOUND if not the caller's."""
        require_positive_id(request.push_endpoint_id, "push_endpoint_id")
        deleted = await self._db.primary.fetchval(
            f"""DELETE FROM {self._s}.push_endpoints
                WHERE push_endpoint_id = $1 AND user_id = $2 RETURNING true""",
            request.push_endpoint_id,
            user_id,
        )
        if not deleted:
            raise NotFound(f"push endpoint {request.push_endpoint_id} not found")

    async def enqueue_push(
        self, conn: asyncpg.Connection, user_ids: Sequence[int], event: chat_pb2.ChatEvent
    ) -> None:
        """Queues `event` for every push endpoint of `user_ids`, in the caller's transaction.

        Call `poke_push()` after the commit to send without waiting for the
        worker's next poll.
        """
        if not user_ids:
            return
        endpoints = await conn.fetch(
            f"SELECT push_endpoint_id FROM {self._s}.push_endpoints"
            " WHERE user_id = ANY($1::bigint[])",
            list(set(user_ids)),
        )
        if not endpoints:
            return
        payload = event.SerializeToString()
        await conn.execute(
            f"""INSERT INTO {self._s}.push_deliveries (delivery_id, push_endpoint_id, payload)
                SELECT d, e, $3 FROM unnest($1::bigint[], $2::bigint[]) AS t(d, e)""",
            [self._ids.next_id() for _ in endpoints],
            [int(r["push_endpoint_id"]) for r in endpoints],
            payload,
        )

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


async def attach(servicer: ChatServicer) -> None:
    """Builds the servicer's `notifications` (the hook `ChatServicer.on_ready` calls).

    Starts the push worker and consumer group `chat-notifications` from `$`
    (never notify for last month's likes).
    """
    rt = servicer._rt
    users = user_pb2_grpc.UserServiceStub(servicer.peer("user"))

    async def is_private(user_id: int) -> bool:
        reply = await users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[user_id]))
        return any(u.is_private for u in reply.users)

    notifications = Notifications(
        rt.db,
        rt.ids,
        rt.page_tokens,
        events=servicer.event_log,
        wakeups=servicer.wakeups,
        graph=graph_pb2_grpc.GraphServiceStub(servicer.peer("graph")),
        is_online=servicer.presence.online,
        message_unread=servicer.store.unread_messages,
        is_private=is_private,
    )
    servicer.notifications = notifications
    notifications.start()
    await servicer.consume(CONSUMER_GROUP, notifications.handlers(), start=Start.LATEST)
