"""Consumer group `chat-notifications`: typed events become grouped notifications.

Likes (and shares) of one post share a group, follows share one per day,
comments and mentions never group. Nothing is stored for your own actions, nor
between accounts that block each other or from an account the recipient mutes
(asked of graph with chat's own credential). `claim_event` in the write's
transaction makes redelivery harmless. Starts at LATEST: never notify for last
month's likes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2

from services.kit.consumers import EventHandlers, EventMeta, Start, claim_event
from services.kit.db import Database
from services.kit.timestamps import from_datetime
from services.kit.validation import strip_control_characters

from ..eventlog import EventLog, Wakeups
from .activity import (
    COMMENT,
    FOLLOW,
    FOLLOW_ACCEPTED,
    FOLLOW_REQUEST,
    LIKE,
    MENTION,
    SHARE,
    Activity,
)
from .store import NotificationStore

#: Comment snippet length (chat.proto).
MAX_SNIPPET = 140

IsOnline = Callable[[Sequence[int]], Awaitable[set[int]]]
MessageUnread = Callable[[int], Awaitable[tuple[int, int]]]


def aware(value: datetime) -> datetime:
    """Envelope times are naive UTC; asyncpg needs them aware for TIMESTAMPTZ."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _snippet(text: str) -> str:
    return strip_control_characters(text)[:MAX_SNIPPET]


class NotificationGrouping:
    """The `chat-notifications` consumer: activity -> groups, log entries and pushes."""

    GROUP: ClassVar[str] = "chat-notifications"
    #: Never notify for last month's likes.
    START: ClassVar[Start] = Start.LATEST

    def __init__(
        self,
        db: Database,
        store: NotificationStore,
        *,
        events: EventLog,
        wakeups: Wakeups,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        is_online: IsOnline,
        message_unread: MessageUnread,
        poke_push: Callable[[], None],
        is_private: Callable[[int], Awaitable[bool]] | None = None,
        schema: str = "chat",
    ) -> None:
        self._db = db
        self._store = store
        self._events = events
        self._wakeups = wakeups
        self._graph = graph
        self._is_online = is_online
        self._message_unread = message_unread
        self._poke_push = poke_push
        self._is_private = is_private
        self._schema_name = schema

    def handlers(self) -> EventHandlers:
        """Typed dispatch for the group."""
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
        day = aware(meta.occur_time).date().isoformat()
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
        at = aware(meta.occur_time)
        positions: dict[int, int] = {}
        async with self._db.transaction() as conn:
            if not await claim_event(conn, self._schema_name, self.GROUP, meta):
                return
            for activity in allowed:
                notification = await self._store.upsert(conn, activity, at)
                if notification is None:
                    continue
                recipient = activity.recipient
                now = datetime.now(UTC)
                event = chat_pb2.ChatEvent(notification=notification)
                event.create_time.CopyFrom(from_datetime(now))
                positions.update(await self._events.append(conn, {recipient: event}))
                counts = await self._store.counts(conn, recipient, unread_messages[recipient])
                counts_event = chat_pb2.ChatEvent(unread_counts=counts)
                counts_event.create_time.CopyFrom(from_datetime(now))
                positions.update(await self._events.append(conn, {recipient: counts_event}))
                if recipient not in online:
                    await self._store.enqueue_push(conn, [recipient], event)
        await self._wakeups.notify(positions)
        self._poke_push()
