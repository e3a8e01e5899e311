"""Messages: send, list, edit, delete, react, read marks and typing.

Every change commits with the members' event log entries (store.py) and wakes
their streams; a new message also queues pushes for members without an open
stream (notifications/). Sends and typing updates are rate limited per sender.

A block (either direction) stops everything between the pair: in a direct
conversation every action is refused (BLOCKED); in a group each event skips
the members who have a block with its actor, and lists hide their messages.
Typing and read receipts travel only between members who both accepted: a
pending request or invitation reveals nothing but itself.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta

from socialmesh.chat.v1 import chat_pb2

from services.kit.auth import Caller
from services.kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from services.kit.pagination import PageTokens, page_size
from services.kit.ratelimit import RateLimiter
from services.kit.validation import Violations

from .conversations import MAX_REQUEST_ID, Conversations, normalize_text
from .cursors import MessagesAt
from .delivery import duration
from .emoji import MAX_CODE_POINTS, is_single_emoji
from .eventlog import Wakeups, event_at
from .notifications import Notifications
from .peers import ChatPeers
from .presence import PresenceTracker
from .store import DIRECT, REQUEST, ChatStore, ConversationRow

MAX_TEXT = 4000
MAX_MEDIA = 4
MAX_EMOJI = MAX_CODE_POINTS
EDIT_WINDOW = timedelta(minutes=15)
TYPING_TTL_SECONDS = 6
MESSAGE_PAGES = (50, 100)


class Messages:
    """The message RPCs' work (and Connect's send, typing and mark_read actions)."""

    def __init__(
        self,
        store: ChatStore,
        conversations: Conversations,
        peers: ChatPeers,
        *,
        wakeups: Wakeups,
        presence: PresenceTracker,
        notifications: Notifications,
        page_tokens: PageTokens,
        send_limit: RateLimiter,
        typing_limit: RateLimiter,
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._peers = peers
        self._wakeups = wakeups
        self._presence = presence
        self._notifications = notifications
        self._tokens = page_tokens
        self._send_limit = send_limit
        self._typing_limit = typing_limit

    async def blocked(self, row: ConversationRow, actor_id: int) -> set[int]:
        """Members with a block with the actor; in a direct conversation, a refusal."""
        others = [m.user_id for m in row.members if m.user_id != actor_id]
        blocked = await self._conversations.blocks.of(actor_id, others)
        if blocked and row.kind == DIRECT:
            raise PermissionDenied(
                "conversation_id: cannot message across a block", reason=Reason.BLOCKED
            )
        return blocked

    async def signal_audience_excluded(self, row: ConversationRow, actor_id: int) -> set[int]:
        """Who must not get the actor's typing or read receipt: blocks, members who have
        not accepted, and everyone while the actor has not accepted."""
        excluded = await self.blocked(row, actor_id)
        others = {m.user_id for m in row.members if m.user_id != actor_id}
        if not row.accepted(actor_id):
            return others
        return excluded | {m.user_id for m in row.members if m.state == REQUEST} - {actor_id}

    async def send(self, caller: Caller, request: chat_pb2.SendMessageRequest) -> chat_pb2.Message:
        violations = Violations()
        text = normalize_text(request.message.text)
        media_ids = list(request.message.media_ids)
        violations.check(request.conversation_id > 0, "conversation_id", "must be a positive id")
        violations.check(len(text) <= MAX_TEXT, "message.text", f"at most {MAX_TEXT} characters")
        violations.check(
            bool(text.strip()) or bool(media_ids),
            "message.text",
            "must not be empty (or attach media)",
        )
        violations.check(len(media_ids) <= MAX_MEDIA, "message.media_ids", f"at most {MAX_MEDIA}")
        violations.check(all(m > 0 for m in media_ids), "message.media_ids", "ids must be positive")
        violations.check(
            request.message.reply_to_message_id >= 0,
            "message.reply_to_message_id",
            "must not be negative",
        )
        violations.check(
            len(request.request_id) <= MAX_REQUEST_ID,
            "request_id",
            f"at most {MAX_REQUEST_ID} characters",
        )
        violations.raise_if_any()
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        blocked = await self.blocked(row, caller.user_id)
        reply_to = request.message.reply_to_message_id
        if reply_to and await self._store.message(row.conversation_id, reply_to) is None:
            raise InvalidArgument(
                [("message.reply_to_message_id", "no such message in this conversation")]
            )
        await self._send_limit.enforce(str(caller.user_id), "messages")
        media = await self._peers.attach_media(caller.user_id, media_ids)
        delivery = await self._store.send(
            row.conversation_id,
            caller.user_id,
            text,
            media_ids,
            reply_to,
            request.request_id,
            media,
            exclude=blocked,
        )
        await self._wakeups.notify(delivery.positions)
        await self._presence.touch(caller.user_id)
        assert delivery.message is not None
        if delivery.created:
            # No push to anyone with a block with the sender, either.
            audience = [m for m in row.members if m.user_id not in blocked]
            await self._notifications.after_message(
                dataclasses.replace(row, members=audience), delivery.message
            )
        return delivery.message

    async def list(
        self, caller: Caller, request: chat_pb2.ListMessagesRequest
    ) -> chat_pb2.ListMessagesResponse:
        if request.after_sequence < 0:
            raise InvalidArgument([("after_sequence", "must not be negative")])
        if request.after_sequence and request.page_token:
            raise InvalidArgument([("page_token", "not combined with after_sequence")])
        size = page_size(request.page_size, default=MESSAGE_PAGES[0], maximum=MESSAGE_PAGES[1])
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        # A block hides each side's messages and reactions from the other (a page may
        # come short).
        blocked = await self._conversations.blocks.of(
            caller.user_id, (m.user_id for m in row.members)
        )
        scope = f"messages:{row.conversation_id}"
        position = self._tokens.decode(scope, request.page_token)
        before = after = None
        if position is not None:
            at = MessagesAt.parse(position)
            if at.forward:
                after = at.sequence
            else:
                before = at.sequence
        elif request.after_sequence:
            after = request.after_sequence
        messages = await self._store.messages(
            row.conversation_id,
            before=before,
            after=after,
            limit=size + 1,
            viewer_id=caller.user_id,
            hidden_reactors=blocked,
        )
        former = {m.sender_id for m in messages[:size]} - {m.user_id for m in row.members}
        if former:  # senders who left
            blocked |= await self._conversations.blocks.of(caller.user_id, former)
        reply = chat_pb2.ListMessagesResponse(
            messages=[m for m in messages[:size] if m.sender_id not in blocked]
        )
        senders = await self._peers.cards.get_many(
            caller.user_id, (m.sender_id for m in reply.messages)
        )
        for message in reply.messages:
            if message.sender_id in senders:
                message.sender.CopyFrom(senders[message.sender_id])
        if len(messages) > size:
            at = MessagesAt(messages[size - 1].sequence, forward=after is not None)
            reply.next_page_token = self._tokens.encode(scope, at.body())
        return reply

    async def own_message(
        self, caller: Caller, conversation_id: int, message_id: int
    ) -> chat_pb2.Message:
        if message_id <= 0:
            raise InvalidArgument([("message_id", "must be a positive id")])
        row = await self._conversations.membership(conversation_id, caller.user_id)
        message = await self._store.message(row.conversation_id, message_id)
        if message is None:
            raise NotFound("message not found")
        if message.sender_id != caller.user_id:
            raise PermissionDenied("only the sender may change a message", reason=Reason.NOT_OWNER)
        if message.HasField("delete_time"):
            raise FailedPrecondition("the message was deleted", reason=Reason.MESSAGE_DELETED)
        return message

    async def update(
        self, caller: Caller, request: chat_pb2.UpdateMessageRequest
    ) -> chat_pb2.Message:
        if list(request.update_mask.paths) != ["text"]:
            raise InvalidArgument([("update_mask", "only text can be changed")])
        text = normalize_text(request.message.text)
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidArgument([("message.text", f"1 to {MAX_TEXT} characters")])
        message = await self.own_message(
            caller, request.conversation_id, request.message.message_id
        )
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        blocked = await self.blocked(row, caller.user_id)
        if datetime.now(UTC) - message.create_time.ToDatetime(UTC) > EDIT_WINDOW:
            raise FailedPrecondition(
                "messages can be edited for 15 minutes after sending",
                reason=Reason.EDIT_WINDOW_CLOSED,
            )
        delivery = await self._store.edit(
            request.conversation_id, message.message_id, text, blocked
        )
        await self._wakeups.notify(delivery.positions)
        assert delivery.message is not None
        return delivery.message

    async def delete(
        self, caller: Caller, request: chat_pb2.DeleteMessageRequest
    ) -> chat_pb2.Message:
        message = await self.own_message(caller, request.conversation_id, request.message_id)
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        # Deleting stays possible across a block; only the event skips the other side.
        others = [m.user_id for m in row.members if m.user_id != caller.user_id]
        blocked = await self._conversations.blocks.of(caller.user_id, others)
        delivery = await self._store.delete(request.conversation_id, message.message_id, blocked)
        await self._wakeups.notify(delivery.positions)
        assert delivery.message is not None
        return delivery.message

    async def react(
        self, caller: Caller, conversation_id: int, message_id: int, emoji: str, on: bool
    ) -> chat_pb2.Message:
        emoji = unicodedata.normalize("NFC", emoji)
        if not is_single_emoji(emoji):
            raise InvalidArgument(
                [("emoji", f"exactly one emoji (at most {MAX_EMOJI} code points)")],
                reason=Reason.EMOJI_INVALID,
            )
        if message_id <= 0:
            raise InvalidArgument([("message_id", "must be a positive id")])
        row = await self._conversations.membership(conversation_id, caller.user_id)
        message = await self._store.message(row.conversation_id, message_id)
        blocked = await self.blocked(row, caller.user_id)
        if message is None or message.sender_id in blocked:
            raise NotFound("message not found")
        if message.HasField("delete_time"):
            raise FailedPrecondition("the message was deleted", reason=Reason.MESSAGE_DELETED)
        delivery = await self._store.react(
            row.conversation_id, message_id, caller.user_id, emoji, on, blocked
        )
        await self._wakeups.notify(delivery.positions)
        assert delivery.message is not None
        return delivery.message

    async def mark_read(
        self, caller: Caller, request: chat_pb2.MarkReadRequest
    ) -> chat_pb2.MarkReadResponse:
        if request.sequence <= 0:
            raise InvalidArgument([("sequence", "must be a positive sequence")])
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        excluded = await self.signal_audience_excluded(row, caller.user_id)
        delivery, mark = await self._store.mark_read(
            row.conversation_id, caller.user_id, request.sequence, excluded
        )
        await self._wakeups.notify(delivery.positions)
        await self._presence.touch(caller.user_id)
        receipt = chat_pb2.ReadReceipt(
            conversation_id=row.conversation_id, user_id=caller.user_id, sequence=mark
        )
        receipt.read_time.GetCurrentTime()
        return chat_pb2.MarkReadResponse(receipt=receipt)

    async def typing(
        self, caller: Caller, request: chat_pb2.SendTypingRequest
    ) -> chat_pb2.SendTypingResponse:
        row = await self._conversations.membership(request.conversation_id, caller.user_id)
        excluded = await self.signal_audience_excluded(row, caller.user_id)
        await self._typing_limit.enforce(
            f"{caller.user_id}:{row.conversation_id}", "typing updates"
        )
        indicator = chat_pb2.TypingIndicator(
            conversation_id=row.conversation_id,
            user_id=caller.user_id,
            typing=request.typing,
            ttl=duration(TYPING_TTL_SECONDS),
        )
        others = [
            m.user_id
            for m in row.members
            if m.user_id != caller.user_id and m.user_id not in excluded
        ]
        if others:
            event = event_at(datetime.now(UTC), typing=indicator)
            await self._wakeups.notify(await self._store.append({u: event for u in others}))
        await self._presence.touch(caller.user_id)
        return chat_pb2.SendTypingResponse(ttl=duration(TYPING_TTL_SECONDS))
