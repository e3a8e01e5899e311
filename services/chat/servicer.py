"""ChatService: conversations and messages in PostgreSQL, delivered from per-user logs.

Writes (send, edit, react, read marks, membership) commit the change and the
recipients' log entries in one transaction, then wake their streams over Redis
pub/sub. Every stream (Connect, StreamEvents, SyncEvents) reads the log from
the client's cursor: replay and live delivery are the same code, so a stream
on any instance, after any reconnect, sees every event exactly once, in order.

This module adapts the RPCs; the jobs live beside it: the stream engine in
`delivery.py`, notifications in `notifications/`, consumer groups as classes
(`consumers()`), tunables in `config.py` (map: docs/chat.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import empty_pb2
from google.rpc import code_pb2
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.media.v1 import media_pb2_grpc
from socialmesh.post.v1 import post_pb2_grpc
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.auth import Caller, require_caller
from services.kit.cards import ViewerCards, user_loader
from services.kit.channels import peer_call
from services.kit.consumers import ConsumerGroup
from services.kit.errors import (
    InvalidArgument,
    ServiceError,
    Unavailable,
)
from services.kit.ratelimit import RateLimiter
from services.kit.relcache import graph_loader
from services.kit.server import Runtime, ServicerBase, build_verifier
from services.kit.tasks import cancel_and_wait
from services.kit.validation import request_violations

from .config import ChatConfig
from .conversations import MAX_REQUEST_ID, Conversations
from .delivery import Streams
from .eventlog import EventLog, Wakeups, decode_cursor
from .media_status import MediaStatusRelay
from .messages import Messages
from .notifications import Notifications
from .peers import ChatPeers
from .presence import PresenceBroadcast, PresenceTracker
from .sse import PATH as SSE_PATH
from .sse import EventStreamServer, StreamTickets
from .store import ChatStore

log = logging.getLogger("socialmesh.chat")


class ChatServicer(chat_pb2_grpc.ChatServiceServicer, ServicerBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = ChatConfig.from_env(os.environ)
        self._log = EventLog()
        self._store: ChatStore | None = None
        self._wakeups: Wakeups | None = None
        self._presence: PresenceTracker | None = None
        self._graph: graph_pb2_grpc.GraphServiceAsyncStub | None = None
        self._users: user_pb2_grpc.UserServiceAsyncStub | None = None
        self._media: media_pb2_grpc.MediaServiceAsyncStub | None = None
        self._typing_limit: RateLimiter | None = None
        self._send_limit: RateLimiter | None = None
        self._cards: ViewerCards | None = None
        self._posts: post_pb2_grpc.PostServiceAsyncStub | None = None
        self._upstream: ChatPeers | None = None
        self._conversations: Conversations | None = None
        self._messages: Messages | None = None
        self._broadcast: PresenceBroadcast | None = None
        self._streams: Streams | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._notifications: Notifications | None = None
        self._media_status: MediaStatusRelay | None = None
        self._tickets: StreamTickets | None = None
        #: The browsers' SSE stream server, when CHAT_HTTP_PORT is set.
        self.sse: EventStreamServer | None = None

    # ---- lifecycle -----------------------------------------------------------------

    async def on_ready(self) -> None:
        rt = self._rt
        self._store = ChatStore(rt.db, rt.ids, self._log)
        self._wakeups = Wakeups(rt.redis)
        self._wakeups.start()
        self._presence = PresenceTracker(rt.redis)
        self._graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        self._users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        self._media = media_pb2_grpc.MediaServiceStub(self.peer("media"))
        self._posts = post_pb2_grpc.PostServiceStub(self.peer("post"))
        # Members' and actors' cards side-loaded on answers (kit/cards.py).
        self._cards = ViewerCards(
            rt.redis, "chat", user_loader(self._users), graph_loader(self._graph)
        )
        self._cards.start()
        self._upstream = ChatPeers(
            graph=self._graph,
            users=self._users,
            media=self._media,
            posts=self._posts,
            cards=self._cards,
        )
        self._conversations = Conversations(
            self._store, self._upstream, self._wakeups, rt.page_tokens
        )
        self._broadcast = PresenceBroadcast(
            self._store, self._presence, self._wakeups, self._conversations.blocks
        )
        self._typing_limit = RateLimiter(rt.redis, "chat-typing", limit=20, window_seconds=10)
        self._send_limit = RateLimiter(rt.redis, "chat-send", limit=120, window_seconds=60)
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="chat-prune"))
        self._notifications = self._build_notifications()
        self._notifications.start()
        self._messages = Messages(
            self._store,
            self.conversations,
            self.upstream,
            wakeups=self._wakeups,
            presence=self._presence,
            notifications=self._notifications,
            page_tokens=rt.page_tokens,
            send_limit=self._send_limit,
            typing_limit=self._typing_limit,
        )
        self._media_status = MediaStatusRelay(rt.db, self._log, self._wakeups)
        for group in self.consumers():
            await self.consume(group.GROUP, group.handlers(), start=group.START)
        self._streams = Streams(
            rt.db,
            self._log,
            self._wakeups,
            self._presence,
            lambda: self.config,
            revocations=lambda: self._rt.revocations,
            broadcast_presence=self._broadcast.broadcast,
        )
        self._tickets = StreamTickets(rt.redis)
        if self.config.http_port is not None:
            self.sse = EventStreamServer(
                lambda caller, since: self.streams.events(caller, since, greet=True),
                self._tickets,
                build_verifier(rt.settings),
                lambda: self._rt.revocations,
            )
            await self.sse.start(rt.settings.grpc_host, self.config.http_port)

    def consumers(self) -> list[ConsumerGroup]:
        """Chat's consumer groups, one class each (docs/events.md lists them)."""
        return [self.notifications.grouping, self.ready(self._media_status)]

    def _build_notifications(self) -> Notifications:
        """Notifications and push (services/chat/notifications/); the group starts at LATEST."""
        rt = self._rt
        return Notifications(
            rt.db,
            rt.ids,
            rt.page_tokens,
            events=self._log,
            wakeups=self.wakeups,
            graph=self.ready(self._graph),
            is_online=self.presence.online,
            message_unread=self.store.unread_messages,
            is_private=self.upstream.is_private,
        )

    async def on_drain(self) -> None:
        """Tells every open stream to reconnect (jittered) and end, so the deploy moves on."""
        if self._streams is not None:
            self._streams.draining = True
        if self._wakeups is not None:
            self._wakeups.wake_all()
        await asyncio.sleep(0.2)  # let streams write their RECONNECT before the server stops

    async def on_stop(self) -> None:
        if self._streams is not None:
            self._streams.draining = True
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        if self._notifications is not None:
            await self._notifications.stop()
        if self._cards is not None:
            await self._cards.stop()
        if self._wakeups is not None:
            await self._wakeups.stop()
        if self.sse is not None:
            await self.sse.stop()
        await super().on_stop()

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(300 + random.random() * 60)
            try:
                removed = await self._log.prune(
                    self._rt.db.primary,
                    older_than=datetime.now(UTC) - timedelta(days=self.config.retention_days),
                    keep_per_user=self.config.keep_per_user,
                )
                if removed:
                    log.info("pruned %d chat log events past retention", removed)
            except Exception:
                log.warning("chat log prune failed", exc_info=True)

    @property
    def store(self) -> ChatStore:
        return self.ready(self._store)

    @property
    def wakeups(self) -> Wakeups:
        return self.ready(self._wakeups)

    @property
    def presence(self) -> PresenceTracker:
        return self.ready(self._presence)

    @property
    def upstream(self) -> ChatPeers:
        """Calls to graph, user, media and post (peers.py)."""
        return self.ready(self._upstream)

    @property
    def conversations(self) -> Conversations:
        return self.ready(self._conversations)

    @property
    def messages(self) -> Messages:
        return self.ready(self._messages)

    @property
    def streams(self) -> Streams:
        return self.ready(self._streams)

    @property
    def notifications(self) -> Notifications:
        return self.ready(self._notifications)

    @property
    def event_log(self) -> EventLog:
        return self._log

    # ---- conversations -------------------------------------------------------------

    async def CreateConversation(
        self, request: chat_pb2.CreateConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.create(require_caller(), request)

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.get(require_caller(), request)

    async def ListConversations(
        self, request: chat_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListConversationsResponse:
        return await self.conversations.list(require_caller(), request)

    async def UpdateConversation(
        self, request: chat_pb2.UpdateConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.update(require_caller(), request)

    async def AddMembers(
        self, request: chat_pb2.AddMembersRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.add_members(require_caller(), request)

    async def RemoveMember(
        self, request: chat_pb2.RemoveMemberRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.remove_member(require_caller(), request)

    async def LeaveConversation(
        self, request: chat_pb2.LeaveConversationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await self.conversations.leave(require_caller(), request)

    async def AcceptConversation(
        self, request: chat_pb2.AcceptConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        return await self.conversations.accept(require_caller(), request)

    async def DeclineConversation(
        self, request: chat_pb2.DeclineConversationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await self.conversations.decline(require_caller(), request)

    # ---- messages ------------------------------------------------------------------

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Message:
        return await self.messages.send(require_caller(), request)

    async def ListMessages(
        self, request: chat_pb2.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListMessagesResponse:
        return await self.messages.list(require_caller(), request)

    async def UpdateMessage(
        self, request: chat_pb2.UpdateMessageRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Message:
        return await self.messages.update(require_caller(), request)

    async def DeleteMessage(
        self, request: chat_pb2.DeleteMessageRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Message:
        return await self.messages.delete(require_caller(), request)

    async def AddReaction(
        self, request: chat_pb2.AddReactionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Message:
        return await self.messages.react(
            require_caller(), request.conversation_id, request.message_id, request.emoji, True
        )

    async def RemoveReaction(
        self, request: chat_pb2.RemoveReactionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Message:
        return await self.messages.react(
            require_caller(), request.conversation_id, request.message_id, request.emoji, False
        )

    async def MarkRead(
        self, request: chat_pb2.MarkReadRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.MarkReadResponse:
        return await self.messages.mark_read(require_caller(), request)

    async def SendTyping(
        self, request: chat_pb2.SendTypingRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.SendTypingResponse:
        return await self.messages.typing(require_caller(), request)

    # ---- presence ------------------------------------------------------------------

    async def BatchGetPresence(
        self, request: chat_pb2.BatchGetPresenceRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.BatchGetPresenceResponse:
        return await self.ready(self._broadcast).batch_get(require_caller(), request)

    # ---- streams -------------------------------------------------------------------

    async def StreamEvents(
        self, request: chat_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        caller = require_caller()
        async for event in self.streams.events(caller, request.since, greet=True):
            yield event

    async def CreateEventStreamTicket(
        self, request: chat_pb2.CreateEventStreamTicketRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.EventStreamTicket:
        caller = require_caller()
        if self._tickets is None:
            raise Unavailable("service is starting")
        ticket, expires = await self._tickets.mint(caller)
        reply = chat_pb2.EventStreamTicket(ticket=ticket, url=f"{SSE_PATH}?ticket={ticket}")
        reply.expire_time.FromSeconds(int(expires))
        return reply

    async def SyncEvents(
        self, request: chat_pb2.SyncEventsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.SyncEventsResponse:
        caller = require_caller()
        return await self.streams.sync(caller, request)

    async def Connect(
        self,
        request_iterator: AsyncIterator[chat_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[chat_pb2.ConnectResponse]:
        caller = require_caller()
        async for response in self.streams.connect(caller, request_iterator, self._act):
            yield response

    async def _act(self, caller: Caller, action: chat_pb2.ConnectRequest) -> chat_pb2.Ack | None:
        """Runs one Connect action; None for `subscribe` (the caller starts delivery)."""
        ack = chat_pb2.Ack(client_request_id=action.client_request_id)
        try:
            async with peer_call("peer"):  # a peer's refusal becomes this ack's status
                violations = request_violations(action)
                if len(action.client_request_id) > MAX_REQUEST_ID:
                    violations.append(("client_request_id", f"at most {MAX_REQUEST_ID} characters"))
                if violations:
                    raise InvalidArgument(violations)
                kind = action.WhichOneof("action")
                if kind == "subscribe":
                    decode_cursor(action.subscribe.since, "subscribe.since")
                    return None
                if kind == "send":
                    send = chat_pb2.SendMessageRequest()
                    send.CopyFrom(action.send)
                    send.request_id = send.request_id or action.client_request_id
                    ack.message.CopyFrom(await self.messages.send(caller, send))
                elif kind == "typing":
                    await self.messages.typing(caller, action.typing)
                elif kind == "mark_read":
                    await self.messages.mark_read(caller, action.mark_read)
                elif kind == "heartbeat":
                    if action.heartbeat.active:
                        await self.presence.touch(caller.user_id)
                else:
                    raise InvalidArgument(
                        [("action", "set one of subscribe, send, typing, mark_read, heartbeat")]
                    )
            ack.status.code = code_pb2.OK
        except ServiceError as exc:
            ack.status.CopyFrom(exc.status_proto())
        return ack

    # ---- notifications (services/chat/notifications/) -----------------------------

    async def ListNotifications(
        self, request: chat_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListNotificationsResponse:
        caller = require_caller()
        reply = await self.notifications.list_notifications(caller.user_id, request)
        await self.upstream.side_load_notifications(reply.notifications, caller.user_id)
        return reply

    async def GetUnreadCounts(
        self, request: chat_pb2.GetUnreadCountsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.UnreadCounts:
        caller = require_caller()
        return await self.notifications.unread_counts(caller.user_id)

    async def MarkNotificationsRead(
        self, request: chat_pb2.MarkNotificationsReadRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.UnreadCounts:
        caller = require_caller()
        return await self.notifications.mark_read(caller.user_id, request)

    async def DismissNotification(
        self, request: chat_pb2.DismissNotificationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        await self.notifications.dismiss(caller.user_id, request)
        return empty_pb2.Empty()

    async def CreatePushEndpoint(
        self, request: chat_pb2.CreatePushEndpointRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.PushEndpoint:
        caller = require_caller()
        return await self.notifications.create_push_endpoint(caller.user_id, request)

    async def DeletePushEndpoint(
        self, request: chat_pb2.DeletePushEndpointRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        await self.notifications.delete_push_endpoint(caller.user_id, request)
        return empty_pb2.Empty()

    async def GetPushConfig(
        self, request: chat_pb2.GetPushConfigRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.PushConfig:
        return self.notifications.push_config()
