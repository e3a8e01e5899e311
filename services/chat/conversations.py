"""Conversations: create (direct or group), get, list, title, members, leave, accept, decline.

A direct message from someone the recipient does not follow opens as a message
request (REQUEST) until accepted; so does a group for a member added by
someone they do not follow (an invitation, accepted or declined). Nobody is
put in a group with an account they have a block with. Members see a
conversation; anyone else gets NOT_FOUND, never a hint that it exists. Every
change commits with the members' event log entries (store.py) and wakes their
streams.
"""

from __future__ import annotations

import unicodedata

from google.protobuf import empty_pb2
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
from services.kit.validation import Violations, strip_control_characters

from .blocks import Blocks
from .cursors import InboxAt
from .eventlog import Wakeups
from .peers import ChatPeers
from .store import ACCEPTED, ADMIN, DIRECT, GROUP, OWNER, REQUEST, ChatStore, ConversationRow

MAX_GROUP_MEMBERS = 256
MAX_TITLE = 100
MAX_REQUEST_ID = 64
CONVERSATION_PAGES = (20, 100)


def normalize_text(value: str) -> str:
    """User text as stored: control characters stripped, NFC."""
    return unicodedata.normalize("NFC", strip_control_characters(value))


class Conversations:
    """The conversation RPCs' work, for a caller already authenticated."""

    def __init__(
        self, store: ChatStore, peers: ChatPeers, wakeups: Wakeups, page_tokens: PageTokens
    ) -> None:
        self._store = store
        self._peers = peers
        self._wakeups = wakeups
        self._tokens = page_tokens
        #: Blocks between members (blocks.py), for messages and presence too.
        self.blocks = Blocks(peers)

    async def membership(self, conversation_id: int, user_id: int) -> ConversationRow:
        """The conversation if the user is a member; NOT_FOUND otherwise (no existence leak)."""
        if conversation_id <= 0:
            raise InvalidArgument([("conversation_id", "must be a positive id")])
        row = await self._store.conversation(conversation_id)
        if row is None or row.member(user_id) is None:
            raise NotFound("conversation not found")
        return row

    async def view(self, row: ConversationRow, viewer_id: int) -> chat_pb2.Conversation:
        last = await self._store.last_messages([row.conversation_id])
        blocked = await self.blocks.of(viewer_id, (m.user_id for m in row.members))
        view = row.to_proto(viewer_id, last.get(row.conversation_id), blocked)
        await self._peers.member_cards([view], viewer_id)
        return view

    async def member_states(
        self, adder_id: int, newcomers: list[int], members: list[int], field: str
    ) -> dict[int, int]:
        """Each newcomer's state: ACCEPTED if they follow the adder, else REQUEST (an
        invitation). Refuses (BLOCKED) a newcomer with a block with the adder or any
        member: a group must not bring a blocked pair together."""
        relationships = await self._peers.refuse_blocks(adder_id, newcomers, field)
        blocked = await self.blocks.first_blocked_newcomer(newcomers, members)
        if blocked is not None:
            raise PermissionDenied(
                f"{field}: user {blocked} cannot join: a block stands between them and a member",
                reason=Reason.BLOCKED,
            )
        states: dict[int, int] = {}
        for user_id in newcomers:
            rel = relationships.get(user_id)
            states[user_id] = ACCEPTED if rel is not None and rel.followed_by else REQUEST
        return states

    async def create(
        self, caller: Caller, request: chat_pb2.CreateConversationRequest
    ) -> chat_pb2.Conversation:
        spec = request.conversation
        violations = Violations()
        others = [m for m in dict.fromkeys(spec.member_ids) if m != caller.user_id]
        violations.check(
            all(m > 0 for m in spec.member_ids), "conversation.member_ids", "ids must be positive"
        )
        violations.check(
            spec.type in (DIRECT, GROUP), "conversation.type", "must be DIRECT or GROUP"
        )
        title = normalize_text(spec.title).strip()
        if spec.type == DIRECT:
            violations.check(
                len(others) == 1,
                "conversation.member_ids",
                "a direct conversation has exactly one other member",
            )
            violations.check(not title, "conversation.title", "direct conversations have no title")
        elif spec.type == GROUP:
            violations.check(
                bool(others), "conversation.member_ids", "a group needs at least one other member"
            )
            violations.check(
                len(others) + 1 <= MAX_GROUP_MEMBERS,
                "conversation.member_ids",
                f"a group has at most {MAX_GROUP_MEMBERS} members",
            )
            violations.check(
                len(title) <= MAX_TITLE, "conversation.title", f"at most {MAX_TITLE} characters"
            )
        request_id = request.request_id
        violations.check(
            len(request_id) <= MAX_REQUEST_ID, "request_id", f"at most {MAX_REQUEST_ID} characters"
        )
        violations.raise_if_any()
        existing = await self._peers.existing_users(others)
        missing = [m for m in others if m not in existing]
        if missing:
            raise NotFound(
                f"conversation.member_ids: no user {missing[0]}",
                resource="user",
                resource_id=missing[0],
            )
        if spec.type == DIRECT:
            relationships = await self._peers.refuse_blocks(
                caller.user_id, others, "conversation.member_ids"
            )
            other = others[0]
            # A DM from someone the recipient does not follow is a message request.
            rel = relationships.get(other)
            other_state = ACCEPTED if rel is not None and rel.followed_by else REQUEST
            delivery = await self._store.create_direct(caller.user_id, other, other_state)
        else:
            # Likewise a group: who does not follow the creator is invited, not added.
            states = await self.member_states(
                caller.user_id, others, [caller.user_id], "conversation.member_ids"
            )
            delivery = await self._store.create_group(caller.user_id, states, title, request_id)
        await self._wakeups.notify(delivery.positions)
        assert delivery.conversation is not None
        if delivery.conversation.member(caller.user_id) is None:
            raise NotFound("conversation not found")  # a reused requestId after leaving it
        return await self.view(delivery.conversation, caller.user_id)

    async def get(
        self, caller: Caller, request: chat_pb2.GetConversationRequest
    ) -> chat_pb2.Conversation:
        row = await self.membership(request.conversation_id, caller.user_id)
        return await self.view(row, caller.user_id)

    async def list(
        self, caller: Caller, request: chat_pb2.ListConversationsRequest
    ) -> chat_pb2.ListConversationsResponse:
        size = page_size(
            request.page_size, default=CONVERSATION_PAGES[0], maximum=CONVERSATION_PAGES[1]
        )
        state = request.state or ACCEPTED
        if state not in (ACCEPTED, REQUEST):
            raise InvalidArgument([("state", "must be ACCEPTED or REQUEST")])
        scope = f"conversations:{caller.user_id}:{state}"
        position = self._tokens.decode(scope, request.page_token)
        after = None
        if position is not None:
            at = InboxAt.parse(position)
            after = (at.activity, at.conversation_id)
        refs = await self._store.inbox(caller.user_id, state, after, size + 1)
        page = refs[:size]
        rows = await self._store.conversations([c for c, _ in page])
        last = await self._store.last_messages([c for c, _ in page])
        blocked = await self.blocks.of(
            caller.user_id, (m.user_id for row in rows.values() for m in row.members)
        )
        reply = chat_pb2.ListConversationsResponse(
            conversations=[
                rows[c].to_proto(caller.user_id, last.get(c), blocked) for c, _ in page if c in rows
            ]
        )
        await self._peers.member_cards(reply.conversations, caller.user_id)
        if len(refs) > size:
            conversation_id, activity = page[-1]
            reply.next_page_token = self._tokens.encode(
                scope, InboxAt.of(activity, conversation_id).body()
            )
        return reply

    async def admin(self, request_conversation_id: int, caller: Caller) -> ConversationRow:
        row = await self.membership(request_conversation_id, caller.user_id)
        if row.kind != GROUP:
            raise FailedPrecondition(
                "direct conversations have no members to manage", reason=Reason.NOT_SUPPORTED
            )
        me = row.member(caller.user_id)
        assert me is not None
        if me.role not in (OWNER, ADMIN):
            raise PermissionDenied(
                "only the group's owner and admins may do this", reason=Reason.NOT_ADMIN
            )
        return row

    async def update(
        self, caller: Caller, request: chat_pb2.UpdateConversationRequest
    ) -> chat_pb2.Conversation:
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument([("update_mask", "name the fields to change: title")])
        if any(p != "title" for p in paths):
            raise InvalidArgument([("update_mask", "only title can be changed")])
        title = normalize_text(request.conversation.title).strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidArgument([("conversation.title", f"1 to {MAX_TITLE} characters")])
        row = await self.admin(request.conversation.conversation_id, caller)
        delivery = await self._store.update_title(row.conversation_id, caller.user_id, title)
        await self._wakeups.notify(delivery.positions)
        assert delivery.conversation is not None
        return await self.view(delivery.conversation, caller.user_id)

    async def add_members(
        self, caller: Caller, request: chat_pb2.AddMembersRequest
    ) -> chat_pb2.Conversation:
        ids = list(dict.fromkeys(request.user_ids))
        if not ids or len(ids) >= MAX_GROUP_MEMBERS or any(u <= 0 for u in ids):
            raise InvalidArgument([("user_ids", f"1 to {MAX_GROUP_MEMBERS - 1} positive ids")])
        row = await self.admin(request.conversation_id, caller)
        existing = await self._peers.existing_users(ids)
        missing = [u for u in ids if u not in existing]
        if missing:
            raise NotFound(
                f"user_ids: no user {missing[0]}", resource="user", resource_id=missing[0]
            )
        present = [m.user_id for m in row.members]
        newcomers = [u for u in ids if u not in present]
        states = (
            await self.member_states(caller.user_id, newcomers, present, "user_ids")
            if newcomers
            else {}
        )
        delivery = await self._store.add_members(
            row.conversation_id, caller.user_id, states, MAX_GROUP_MEMBERS
        )
        assert delivery.conversation is not None
        now_present = {m.user_id for m in delivery.conversation.members}
        if not delivery.created and any(u not in now_present for u in ids):
            raise FailedPrecondition(
                f"a group has at most {MAX_GROUP_MEMBERS} members", reason=Reason.LIMIT_REACHED
            )
        await self._wakeups.notify(delivery.positions)
        return await self.view(delivery.conversation, caller.user_id)

    async def remove_member(
        self, caller: Caller, request: chat_pb2.RemoveMemberRequest
    ) -> chat_pb2.Conversation:
        if request.user_id <= 0:
            raise InvalidArgument([("user_id", "must be a positive id")])
        if request.user_id == caller.user_id:
            raise InvalidArgument([("user_id", "use LeaveConversation to leave")])
        row = await self.admin(request.conversation_id, caller)
        target = row.member(request.user_id)
        if target is None:
            raise NotFound(
                "user_id: not a member of this conversation",
                resource="conversationMember",
                resource_id=request.user_id,
            )
        me = row.member(caller.user_id)
        assert me is not None
        if target.role == OWNER or (target.role == ADMIN and me.role != OWNER):
            raise PermissionDenied(
                "admins remove members only; nobody removes the owner", reason=Reason.NOT_ADMIN
            )
        delivery = await self._store.remove_member(
            row.conversation_id, caller.user_id, request.user_id
        )
        await self._wakeups.notify(delivery.positions)
        assert delivery.conversation is not None
        return await self.view(delivery.conversation, caller.user_id)

    async def leave(
        self, caller: Caller, request: chat_pb2.LeaveConversationRequest
    ) -> empty_pb2.Empty:
        row = await self.membership(request.conversation_id, caller.user_id)
        if row.kind != GROUP:
            raise FailedPrecondition(
                "direct conversations cannot be left", reason=Reason.NOT_SUPPORTED
            )
        delivery = await self._store.remove_member(
            row.conversation_id, caller.user_id, caller.user_id
        )
        await self._wakeups.notify(delivery.positions)
        return empty_pb2.Empty()

    async def accept(
        self, caller: Caller, request: chat_pb2.AcceptConversationRequest
    ) -> chat_pb2.Conversation:
        row = await self.membership(request.conversation_id, caller.user_id)
        delivery = await self._store.accept(row.conversation_id, caller.user_id)
        await self._wakeups.notify(delivery.positions)
        assert delivery.conversation is not None
        return await self.view(delivery.conversation, caller.user_id)

    async def decline(
        self, caller: Caller, request: chat_pb2.DeclineConversationRequest
    ) -> empty_pb2.Empty:
        """Declines a group invitation: the caller leaves before ever having joined."""
        row = await self.membership(request.conversation_id, caller.user_id)
        if row.kind != GROUP:
            raise FailedPrecondition(
                "a message request is not declined: leave it unanswered or block the sender",
                reason=Reason.NOT_SUPPORTED,
            )
        if row.accepted(caller.user_id):
            raise FailedPrecondition(
                "the invitation was accepted: leave the group instead", reason=Reason.NOT_PENDING
            )
        delivery = await self._store.remove_member(
            row.conversation_id, caller.user_id, caller.user_id
        )
        await self._wakeups.notify(delivery.positions)
        return empty_pb2.Empty()
