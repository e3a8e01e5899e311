"""The chat service over real gRPC, with the real user and graph services and real PG/Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import code_pb2
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2

from services.chat.eventlog import decode_cursor, encode_cursor
from services.chat.servicer import ChatServicer
from services.kit.auth import Revocations

from .chat_support import DIRECT, GROUP, direct, group, send
from .conftest import Infra, Mesh, Person
from .helpers import code_of, follow, violations

HELLO = chat_pb2.STREAM_CONTROL_KIND_HELLO
_sessions = itertools.count(10_000)


@pytest.fixture
def service(mesh: Mesh) -> ChatServicer:
    servicer = mesh["chat"].host.servicer
    assert isinstance(servicer, ChatServicer)
    return servicer


@pytest.fixture
def heartbeat(service: ChatServicer) -> Iterator[None]:
    """Heartbeats (and the expiry/revocation checks that run with them) every 0.3 s."""
    before = service.config
    service.config = dataclasses.replace(before, heartbeat_seconds=0.3)
    yield
    service.config = before


class Events:
    """A StreamEvents subscription read in the background."""

    def __init__(self, chat, who: Person, since: str = "") -> None:
        self.call = chat.StreamEvents(chat_pb2.StreamEventsRequest(since=since), metadata=who.md)
        self.queue: asyncio.Queue[chat_pb2.ChatEvent | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for event in self.call:
                await self.queue.put(event)
        except grpc.aio.AioRpcError:
            pass
        finally:
            await self.queue.put(None)

    async def next(self, kind: str | None = None, within: float = 10) -> chat_pb2.ChatEvent:
        """The next event (of `kind`, skipping heartbeats and others)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.queue.get()
                assert event is not None, "stream ended"
                if kind is None or event.WhichOneof("event") == kind:
                    return event

    async def messages(self, count: int, within: float = 10) -> list[chat_pb2.Message]:
        return [(await self.next("message", within)).message for _ in range(count)]

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def streams() -> AsyncIterator[list[Events]]:
    opened: list[Events] = []
    yield opened
    for stream in opened:
        await stream.close()


async def subscribe(chat, who: Person, streams: list[Events], since: str = "") -> Events:
    events = Events(chat, who, since)
    streams.append(events)
    hello = await events.next()
    assert hello.control.kind == HELLO
    return events


# ---- conversations --------------------------------------------------------------------


async def test_a_pair_gets_one_direct_conversation_and_a_stranger_s_dm_is_a_request(
    chat, graph, make_person
):
    a, b, c = await make_person(), await make_person(), await make_person()
    first = await direct(chat, a, b)
    again = await direct(chat, b, a)
    assert again.conversation_id == first.conversation_id
    assert sorted(first.member_ids) == sorted([a.id, b.id])
    # b does not follow a: for b it is a message request, for a it is in the inbox.
    seen_by_b = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=first.conversation_id), metadata=b.md
    )
    assert seen_by_b.state == chat_pb2.CONVERSATION_STATE_REQUEST
    assert first.state == chat_pb2.CONVERSATION_STATE_ACCEPTED
    requests = await chat.ListConversations(
        chat_pb2.ListConversationsRequest(state=chat_pb2.CONVERSATION_STATE_REQUEST), metadata=b.md
    )
    assert [x.conversation_id for x in requests.conversations] == [first.conversation_id]
    inbox = await chat.ListConversations(chat_pb2.ListConversationsRequest(), metadata=b.md)
    assert first.conversation_id not in [x.conversation_id for x in inbox.conversations]
    accepted = await chat.AcceptConversation(
        chat_pb2.AcceptConversationRequest(conversation_id=first.conversation_id), metadata=b.md
    )
    assert accepted.state == chat_pb2.CONVERSATION_STATE_ACCEPTED
    # c follows a: c's DM from a lands in c's inbox directly.
    await follow(graph, c, a)
    to_follower = await direct(chat, a, c)
    seen_by_c = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=to_follower.conversation_id), metadata=c.md
    )
    assert seen_by_c.state == chat_pb2.CONVERSATION_STATE_ACCEPTED


async def test_blocks_refuse_conversations_and_messages_both_ways(chat, graph, make_person):
    a, b, c = await make_person(), await make_person(), await make_person()
    convo = await direct(chat, a, b)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=a.id), metadata=b.md)
    assert await code_of(send(chat, a, convo.conversation_id, "hi")) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(send(chat, b, convo.conversation_id, "hi")) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=c.id), metadata=a.md)
    assert await code_of(direct(chat, c, a)) == grpc.StatusCode.PERMISSION_DENIED
    assert await code_of(direct(chat, a, c)) == grpc.StatusCode.PERMISSION_DENIED
    assert await code_of(group(chat, c, a, b)) == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_requests_name_the_field(chat, make_person):
    a = await make_person()
    cases = [
        (chat_pb2.Conversation(type=DIRECT, member_ids=[]), "conversation.memberIds"),
        (chat_pb2.Conversation(member_ids=[a.id + 1]), "conversation.type"),
        (
            chat_pb2.Conversation(type=GROUP, member_ids=list(range(1, 300))),
            "conversation.memberIds",
        ),
        (chat_pb2.Conversation(type=GROUP, member_ids=[1], title="x" * 101), "conversation.title"),
    ]
    for conversation, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await chat.CreateConversation(
                chat_pb2.CreateConversationRequest(conversation=conversation), metadata=a.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value)
    missing = chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(type=DIRECT, member_ids=[2**62])
        ),
        metadata=a.md,
    )
    assert await code_of(missing) == grpc.StatusCode.NOT_FOUND


async def test_only_members_read_or_write_a_conversation(chat, make_person):
    a, b, outsider = await make_person(), await make_person(), await make_person()
    convo = await direct(chat, a, b)
    await send(chat, a, convo.conversation_id, "private")
    cid = convo.conversation_id
    calls = [
        chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=cid), metadata=outsider.md
        ),
        chat.ListMessages(chat_pb2.ListMessagesRequest(conversation_id=cid), metadata=outsider.md),
        send(chat, outsider, cid, "let me in"),
        chat.MarkRead(
            chat_pb2.MarkReadRequest(conversation_id=cid, sequence=1), metadata=outsider.md
        ),
        chat.SendTyping(
            chat_pb2.SendTypingRequest(conversation_id=cid, typing=True), metadata=outsider.md
        ),
    ]
    for call in calls:
        # NOT_FOUND, like a conversation that does not exist: membership is not revealed.
        assert await code_of(call) == grpc.StatusCode.NOT_FOUND
    listed = await chat.ListConversations(chat_pb2.ListConversationsRequest(), metadata=outsider.md)
    assert cid not in [c.conversation_id for c in listed.conversations]


async def test_sequences_are_gapless_and_retries_return_the_first_message(chat, make_person):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    cid = convo.conversation_id
    sent = await asyncio.gather(*(send(chat, a if i % 2 else b, cid, f"m{i}") for i in range(20)))
    assert sorted(m.sequence for m in sent) == list(range(1, 21))
    retries = await asyncio.gather(
        *(send(chat, a, cid, "once", request_id="r-1") for _ in range(5))
    )
    assert len({m.message_id for m in retries}) == 1
    assert retries[0].sequence == 21
    page = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid, page_size=8), metadata=a.md
    )
    assert [m.sequence for m in page.messages] == list(range(21, 13, -1))
    older = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(
            conversation_id=cid, page_size=8, page_token=page.next_page_token
        ),
        metadata=a.md,
    )
    assert [m.sequence for m in older.messages] == list(range(13, 5, -1))
    forwards = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid, after_sequence=18), metadata=b.md
    )
    assert [m.sequence for m in forwards.messages] == [19, 20, 21]
    conversation = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=cid), metadata=b.md
    )
    assert conversation.max_sequence == 21
    assert conversation.last_message.text == "once"
    # b sent 10 of the 20, and reading your own message marks it read.
    assert 0 < conversation.unread_count <= 21


async def test_edit_delete_and_react_are_the_sender_s_and_members_own(chat, make_person):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    cid = convo.conversation_id
    message = await send(chat, a, cid, "helo")
    edit = chat_pb2.UpdateMessageRequest(
        conversation_id=cid,
        message=chat_pb2.Message(message_id=message.message_id, text="hello"),
        update_mask=field_mask_pb2.FieldMask(paths=["text"]),
    )
    assert (
        await code_of(chat.UpdateMessage(edit, metadata=b.md)) == grpc.StatusCode.PERMISSION_DENIED
    )
    edited = await chat.UpdateMessage(edit, metadata=a.md)
    assert edited.text == "hello" and edited.HasField("update_time")
    react = chat_pb2.AddReactionRequest(
        conversation_id=cid, message_id=message.message_id, emoji="👍"
    )
    await chat.AddReaction(react, metadata=b.md)
    twice = await chat.AddReaction(react, metadata=b.md)
    assert [(r.emoji, r.count) for r in twice.reactions] == [("👍", 1)]
    bad = chat_pb2.AddReactionRequest(conversation_id=cid, message_id=message.message_id, emoji="")
    assert await code_of(chat.AddReaction(bad, metadata=b.md)) == grpc.StatusCode.INVALID_ARGUMENT
    delete = chat_pb2.DeleteMessageRequest(conversation_id=cid, message_id=message.message_id)
    assert (
        await code_of(chat.DeleteMessage(delete, metadata=b.md))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    tombstone = await chat.DeleteMessage(delete, metadata=a.md)
    assert tombstone.text == "" and tombstone.HasField("delete_time")
    assert tombstone.sequence == message.sequence  # the sequence stays: no gap
    listed = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid), metadata=b.md
    )
    assert listed.messages[0].HasField("delete_time") and not listed.messages[0].reactions


async def test_group_roles_membership_and_the_request_id(chat, make_person):
    owner, admin_less, c, d = [await make_person() for _ in range(4)]
    created = await group(chat, owner, admin_less, c, title="trip", request_id="g-1")
    again = await group(chat, owner, admin_less, c, title="trip", request_id="g-1")
    assert again.conversation_id == created.conversation_id
    cid = created.conversation_id
    roles = {m.user_id: m.role for m in created.members}
    assert (
        roles[owner.id] == chat_pb2.MEMBER_ROLE_OWNER and roles[c.id] == chat_pb2.MEMBER_ROLE_MEMBER
    )
    add = chat_pb2.AddMembersRequest(conversation_id=cid, user_ids=[d.id])
    assert await code_of(chat.AddMembers(add, metadata=c.md)) == grpc.StatusCode.PERMISSION_DENIED
    grown = await chat.AddMembers(add, metadata=owner.md)
    assert d.id in grown.member_ids
    rename = chat_pb2.UpdateConversationRequest(
        conversation=chat_pb2.Conversation(conversation_id=cid, title="Trip 2026"),
        update_mask=field_mask_pb2.FieldMask(paths=["title"]),
    )
    assert (
        await code_of(chat.UpdateConversation(rename, metadata=d.md))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (await chat.UpdateConversation(rename, metadata=owner.md)).title == "Trip 2026"
    remove = chat_pb2.RemoveMemberRequest(conversation_id=cid, user_id=owner.id)
    assert (
        await code_of(chat.RemoveMember(remove, metadata=c.md)) == grpc.StatusCode.PERMISSION_DENIED
    )
    removed = await chat.RemoveMember(
        chat_pb2.RemoveMemberRequest(conversation_id=cid, user_id=d.id), metadata=owner.md
    )
    assert d.id not in removed.member_ids
    assert await code_of(send(chat, d, cid, "still here?")) == grpc.StatusCode.NOT_FOUND
    await chat.LeaveConversation(
        chat_pb2.LeaveConversationRequest(conversation_id=cid), metadata=owner.md
    )
    after = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=cid), metadata=c.md
    )
    assert owner.id not in after.member_ids
    # Ownership passed to the longest-standing member.
    assert sum(m.role == chat_pb2.MEMBER_ROLE_OWNER for m in after.members) == 1


# ---- streams --------------------------------------------------------------------------


async def test_stream_delivers_live_to_every_device_and_resumes_from_a_cursor(
    chat, make_person, streams
):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    phone = await subscribe(chat, b, streams)
    laptop = await subscribe(chat, b, streams)
    first = await send(chat, a, convo.conversation_id, "one")
    got_phone = await phone.next("message")
    got_laptop = await laptop.next("message")
    assert got_phone.message.message_id == got_laptop.message.message_id == first.message_id
    cursor = got_phone.cursor
    await phone.close()
    await send(chat, a, convo.conversation_id, "two")
    await send(chat, a, convo.conversation_id, "three")
    resumed = await subscribe(chat, b, streams, since=cursor)
    texts = [m.text for m in await resumed.messages(2)]
    assert texts == ["two", "three"]  # nothing before the cursor again, nothing missed


async def test_the_sender_s_own_event_carries_its_request_id(chat, make_person, streams):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    mine = await subscribe(chat, a, streams)
    theirs = await subscribe(chat, b, streams)
    await send(chat, a, convo.conversation_id, "hi", request_id="client-42")
    assert (await mine.next("message")).origin_request_id == "client-42"
    assert (await theirs.next("message")).origin_request_id == ""


async def test_typing_receipts_and_membership_changes_arrive_on_the_stream(
    chat, graph, make_person, streams
):
    a, b, c = await make_person(), await make_person(), await make_person()
    await follow(graph, b, a)  # an accepted member (typing skips pending invitations)
    convo = await group(chat, a, b)
    watch = await subscribe(chat, b, streams)
    await chat.SendTyping(
        chat_pb2.SendTypingRequest(conversation_id=convo.conversation_id, typing=True),
        metadata=a.md,
    )
    typing = (await watch.next("typing")).typing
    assert typing.user_id == a.id and typing.typing and typing.ttl.seconds > 0
    message = await send(chat, a, convo.conversation_id, "read me")
    await watch.next("message")
    mark = await chat.MarkRead(
        chat_pb2.MarkReadRequest(conversation_id=convo.conversation_id, sequence=message.sequence),
        metadata=b.md,
    )
    assert mark.receipt.sequence == message.sequence
    own_receipt = (await watch.next("read_receipt")).read_receipt  # other devices learn it too
    assert own_receipt.user_id == b.id
    back = await chat.MarkRead(
        chat_pb2.MarkReadRequest(conversation_id=convo.conversation_id, sequence=1), metadata=b.md
    )
    assert back.receipt.sequence == message.sequence  # never moves backwards
    await chat.AddMembers(
        chat_pb2.AddMembersRequest(conversation_id=convo.conversation_id, user_ids=[c.id]),
        metadata=a.md,
    )
    change = (await watch.next("conversation_changed")).conversation_changed
    assert change.kind == chat_pb2.CONVERSATION_CHANGE_KIND_MEMBERS_ADDED and list(
        change.user_ids
    ) == [c.id]


async def test_a_removed_member_stops_receiving_at_once(chat, make_person, streams):
    a, b, c = await make_person(), await make_person(), await make_person()
    convo = await group(chat, a, b, c)
    watch = await subscribe(chat, c, streams)
    await chat.RemoveMember(
        chat_pb2.RemoveMemberRequest(conversation_id=convo.conversation_id, user_id=c.id),
        metadata=a.md,
    )
    removed = (await watch.next("conversation_changed")).conversation_changed
    assert removed.kind == chat_pb2.CONVERSATION_CHANGE_KIND_REMOVED
    await send(chat, a, convo.conversation_id, "after removal")
    marker = await direct(chat, b, c)
    await send(chat, b, marker.conversation_id, "marker")
    # The next message c receives is the marker: nothing of the group after removal.
    assert (await watch.next("message")).message.text == "marker"


async def test_a_cursor_beyond_retention_gets_resync_required(chat, make_person, streams, service):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    watch = await subscribe(chat, b, streams)
    await send(chat, a, convo.conversation_id, "old")
    # The client's last cursor is from before "old": it still needs "old".
    old_cursor = encode_cursor(decode_cursor((await watch.next("message")).cursor) - 1)
    await send(chat, a, convo.conversation_id, "newer")
    await watch.next("message")
    # Retention: keep only each user's newest event (the pruner's real code path).
    await service.event_log.prune(
        service._rt.db.primary,
        older_than=datetime.now(UTC) - timedelta(days=1),
        keep_per_user=1,
    )
    head = await service.event_log.head(service._rt.db.primary, b.id)
    assert head.floor_position > decode_cursor(old_cursor)  # "old" is gone
    late = Events(chat, b, since=old_cursor)
    streams.append(late)
    assert (await late.next()).control.kind == HELLO
    resync = await late.next("control")
    assert resync.control.kind == chat_pb2.STREAM_CONTROL_KIND_RESYNC_REQUIRED
    await send(chat, a, convo.conversation_id, "after resync")
    assert (await late.next("message")).message.text == "after resync"
    sync = await chat.SyncEvents(chat_pb2.SyncEventsRequest(since=old_cursor), metadata=b.md)
    assert sync.events[0].control.kind == chat_pb2.STREAM_CONTROL_KIND_RESYNC_REQUIRED
    bogus = chat.StreamEvents(chat_pb2.StreamEventsRequest(since="not-a-cursor"), metadata=b.md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in bogus:
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_sync_long_polls_with_the_same_cursor(chat, make_person):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    start = await chat.SyncEvents(chat_pb2.SyncEventsRequest(), metadata=b.md)
    assert start.next_cursor and not start.events
    waiting = asyncio.ensure_future(
        chat.SyncEvents(
            chat_pb2.SyncEventsRequest(since=start.next_cursor, timeout={"seconds": 10}),
            metadata=b.md,
        )
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await send(chat, a, convo.conversation_id, "wake up")
    reply = await asyncio.wait_for(waiting, 5)
    assert [e.message.text for e in reply.events if e.HasField("message")] == ["wake up"]
    empty = await chat.SyncEvents(
        chat_pb2.SyncEventsRequest(since=reply.next_cursor, timeout={"nanos": 100_000_000}),
        metadata=b.md,
    )
    assert not empty.events and empty.next_cursor == reply.next_cursor


async def test_connect_greets_acks_every_action_and_streams_events(chat, make_person):
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    actions: asyncio.Queue[chat_pb2.ConnectRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[chat_pb2.ConnectRequest]:
        while (action := await actions.get()) is not None:
            yield action

    call = chat.Connect(requests(), metadata=a.md)
    hello = await call.read()
    assert hello.event.control.kind == HELLO
    assert hello.event.control.heartbeat_interval.ToMilliseconds() > 0
    await actions.put(
        chat_pb2.ConnectRequest(client_request_id="s1", subscribe=chat_pb2.Subscribe())
    )
    assert (await call.read()).ack.client_request_id == "s1"
    await actions.put(
        chat_pb2.ConnectRequest(
            client_request_id="m1",
            send=chat_pb2.SendMessageRequest(
                conversation_id=convo.conversation_id, message=chat_pb2.Message(text="over connect")
            ),
        )
    )
    await actions.put(
        chat_pb2.ConnectRequest(
            client_request_id="bad",
            send=chat_pb2.SendMessageRequest(
                conversation_id=convo.conversation_id, message=chat_pb2.Message()
            ),
        )
    )
    await actions.put(
        chat_pb2.ConnectRequest(
            client_request_id="nope",
            mark_read=chat_pb2.MarkReadRequest(conversation_id=123456789, sequence=1),
        )
    )
    acks: dict[str, chat_pb2.Ack] = {}
    events: list[chat_pb2.ChatEvent] = []
    async with asyncio.timeout(10):
        while len(acks) < 3 or not events:
            response = await call.read()
            if response.HasField("ack"):
                acks[response.ack.client_request_id] = response.ack
            elif response.event.HasField("message"):
                events.append(response.event)
    assert acks["m1"].status.code == code_pb2.OK and acks["m1"].message.text == "over connect"
    assert acks["bad"].status.code == code_pb2.INVALID_ARGUMENT
    assert acks["nope"].status.code == code_pb2.NOT_FOUND
    assert events[0].message.message_id == acks["m1"].message.message_id
    assert events[0].origin_request_id == "m1"  # request_id defaults to client_request_id
    # A retried send with the same client_request_id is the same message.
    await actions.put(
        chat_pb2.ConnectRequest(
            client_request_id="m1",
            send=chat_pb2.SendMessageRequest(
                conversation_id=convo.conversation_id, message=chat_pb2.Message(text="over connect")
            ),
        )
    )
    async with asyncio.timeout(10):
        while not (response := await call.read()).HasField("ack"):
            pass
    assert response.ack.message.message_id == acks["m1"].message.message_id
    await actions.put(None)
    call.cancel()


async def test_streams_end_with_token_expiring_and_session_ended(
    chat, make_person, infra: Infra, heartbeat, mesh: Mesh
):
    a = await make_person()
    short = infra.signer(ttl=61).sign(a.id, next(_sessions))  # expires within the 60 s margin
    short_person = Person(a.id, short)
    events = Events(chat, short_person)
    assert (await events.next()).control.kind == HELLO
    ending = await events.next("control", within=10)
    assert ending.control.kind == chat_pb2.STREAM_CONTROL_KIND_TOKEN_EXPIRING
    assert (await events.queue.get()) is None  # and the stream closed
    session = next(_sessions)
    revocable = Person(a.id, infra.signer().sign(a.id, session))
    watched = Events(chat, revocable)
    assert (await watched.next()).control.kind == HELLO
    redis = mesh["chat"].host.runtime.redis
    await Revocations(redis, 60).revoke_session(session)  # as another process would
    ended = await watched.next("control", within=10)
    assert ended.control.kind == chat_pb2.STREAM_CONTROL_KIND_SESSION_ENDED
    await events.close()
    await watched.close()


async def test_presence_is_visible_only_to_people_sharing_a_conversation(
    chat, graph, make_person, streams
):
    a, b, stranger = await make_person(), await make_person(), await make_person()
    await follow(graph, b, a)  # an accepted conversation (a pending request shows nothing)
    await direct(chat, a, b)
    watch = await subscribe(chat, b, streams)
    online = await subscribe(chat, a, streams)
    change = (await watch.next("presence")).presence
    assert change.user_id == a.id and change.state == chat_pb2.PRESENCE_STATE_ONLINE
    seen = await chat.BatchGetPresence(
        chat_pb2.BatchGetPresenceRequest(user_ids=[a.id]), metadata=b.md
    )
    assert [p.state for p in seen.presence] == [chat_pb2.PRESENCE_STATE_ONLINE]
    hidden = await chat.BatchGetPresence(
        chat_pb2.BatchGetPresenceRequest(user_ids=[a.id]), metadata=stranger.md
    )
    assert not hidden.presence
    await online.close()
    streams.remove(online)
    gone = (await watch.next("presence")).presence
    assert gone.user_id == a.id and gone.state == chat_pb2.PRESENCE_STATE_OFFLINE


async def test_unread_counts_follow_messages_and_read_marks(chat, make_person, graph):
    a, b = await make_person(), await make_person()
    await follow(graph, b, a)
    convo = await direct(chat, a, b)
    for i in range(3):
        last = await send(chat, a, convo.conversation_id, f"u{i}")
    counts = await chat.GetUnreadCounts(chat_pb2.GetUnreadCountsRequest(), metadata=b.md)
    assert (counts.messages, counts.conversations) == (3, 1)
    await chat.MarkRead(
        chat_pb2.MarkReadRequest(conversation_id=convo.conversation_id, sequence=last.sequence),
        metadata=b.md,
    )
    counts = await chat.GetUnreadCounts(chat_pb2.GetUnreadCountsRequest(), metadata=b.md)
    assert (counts.messages, counts.conversations) == (0, 0)


def test_cursors_are_opaque_round_trips():
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert decode_cursor("") is None


async def test_messages_carry_the_sender_s_ready_media_and_refuse_anyone_else_s(
    chat, make_person, mesh: Mesh
):
    from socialmesh.media.v1 import media_pb2, media_pb2_grpc

    from .media_support import image_bytes, settled, upload

    media = media_pb2_grpc.MediaServiceStub(mesh["media"].channel)
    a, b = await make_person(), await make_person()
    convo = await direct(chat, a, b)
    photo = await upload(media, a, image_bytes("JPEG"), description="a red square")
    ready = await settled(media, a, photo.media_id)
    assert ready.state == media_pb2.MEDIA_STATE_READY
    sent = await chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=convo.conversation_id,
            message=chat_pb2.Message(text="look", media_ids=[photo.media_id]),
        ),
        metadata=a.md,
    )
    (embedded,) = sent.media
    assert embedded.media_id == photo.media_id and embedded.description == "a red square"
    assert embedded.blurhash and embedded.variants
    listed = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=convo.conversation_id), metadata=b.md
    )
    assert listed.messages[0].media[0].media_id == photo.media_id
    # Attached: the owner can no longer delete it from under the conversation.
    delete = media.DeleteMedia(media_pb2.DeleteMediaRequest(media_id=photo.media_id), metadata=a.md)
    assert await code_of(delete) == grpc.StatusCode.FAILED_PRECONDITION
    # b cannot attach a's upload.
    theirs = chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=convo.conversation_id,
            message=chat_pb2.Message(text="mine now", media_ids=[photo.media_id]),
        ),
        metadata=b.md,
    )
    assert await code_of(theirs) == grpc.StatusCode.PERMISSION_DENIED
    missing = chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=convo.conversation_id,
            message=chat_pb2.Message(media_ids=[2**62]),
        ),
        metadata=a.md,
    )
    assert await code_of(missing) == grpc.StatusCode.NOT_FOUND
