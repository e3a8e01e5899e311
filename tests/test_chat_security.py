"""Chat's security review findings (issue 21) on the service port: group consent, blocks
in every shared conversation, pending requests that reveal nothing, one-emoji
reactions and the per-account stream cap (T3-M3, T3-M4, T3-L1, T3-M5, T3-L2, T3-L3)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2

from services.chat.emoji import is_single_emoji
from services.chat.servicer import ChatServicer

from .chat_support import direct, group, send
from .conftest import Mesh, Person
from .helpers import follow, reason_of

ACCEPTED = chat_pb2.CONVERSATION_STATE_ACCEPTED
REQUEST = chat_pb2.CONVERSATION_STATE_REQUEST


class Stream:
    """A StreamEvents subscription read in the background."""

    def __init__(self, chat, who: Person) -> None:
        self.call = chat.StreamEvents(chat_pb2.StreamEventsRequest(), metadata=who.md)
        self.queue: asyncio.Queue[chat_pb2.ChatEvent | None] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for event in self.call:
                await self.queue.put(event)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            await self.queue.put(None)

    async def next(self, within: float = 10) -> chat_pb2.ChatEvent | None:
        async with asyncio.timeout(within):
            return await self.queue.get()

    async def until_message(self, text: str) -> list[str]:
        """The kinds of events before the message with `text` (heartbeats left out)."""
        kinds = []
        while True:
            event = await self.next()
            assert event is not None, "stream ended"
            kind = event.WhichOneof("event")
            if kind == "message" and event.message.text == text:
                return kinds
            if kind != "heartbeat":
                kinds.append(kind if kind != "message" else f"message:{event.message.text}")

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def chat_service(mesh: Mesh) -> ChatServicer:
    servicer = mesh["chat"].host.servicer
    assert isinstance(servicer, ChatServicer)
    return servicer


@pytest.fixture
async def event_streams() -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        await stream.close()


async def online(chat, who: Person, opened: list[Stream]) -> Stream:
    stream = Stream(chat, who)
    opened.append(stream)
    hello = await stream.next()
    assert hello is not None and hello.control.kind == chat_pb2.STREAM_CONTROL_KIND_HELLO
    return stream


async def block(graph, blocker: Person, blocked: Person) -> None:
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md)


async def refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), reason_of(err.value)


async def presence_seen_by(chat, viewer: Person, *people: Person) -> set[int]:
    reply = await chat.BatchGetPresence(
        chat_pb2.BatchGetPresenceRequest(user_ids=[p.id for p in people]), metadata=viewer.md
    )
    return {p.user_id for p in reply.presence}


async def conversation(chat, who: Person, conversation_id: int) -> chat_pb2.Conversation:
    return await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation_id), metadata=who.md
    )


def typing(chat, who: Person, conversation_id: int):
    return chat.SendTyping(
        chat_pb2.SendTypingRequest(conversation_id=conversation_id, typing=True), metadata=who.md
    )


def mark_read(chat, who: Person, conversation_id: int, sequence: int):
    return chat.MarkRead(
        chat_pb2.MarkReadRequest(conversation_id=conversation_id, sequence=sequence),
        metadata=who.md,
    )


def react(chat, who: Person, conversation_id: int, message_id: int, emoji: str = "👍"):
    return chat.AddReaction(
        chat_pb2.AddReactionRequest(
            conversation_id=conversation_id, message_id=message_id, emoji=emoji
        ),
        metadata=who.md,
    )


def edit(chat, who: Person, conversation_id: int, message_id: int, text: str):
    return chat.UpdateMessage(
        chat_pb2.UpdateMessageRequest(
            conversation_id=conversation_id,
            message=chat_pb2.Message(message_id=message_id, text=text),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        ),
        metadata=who.md,
    )


# ---- T3-M4: consent to be in a group -----------------------------------------------------


async def test_a_group_invites_whoever_does_not_follow_the_adder(chat, graph, make_person):
    owner, fan = await make_person(), await make_person()
    stranger, private = await make_person(), await make_person(private=True)
    await follow(graph, fan, owner)
    convo = await group(chat, owner, fan, stranger, private, title="FREE CRYPTO")
    states = {m.user_id: m.state for m in convo.members}
    assert states == {
        owner.id: ACCEPTED,
        fan.id: ACCEPTED,
        stranger.id: REQUEST,
        private.id: REQUEST,
    }
    assert (await conversation(chat, private, convo.conversation_id)).state == REQUEST
    inbox = await chat.ListConversations(chat_pb2.ListConversationsRequest(), metadata=private.md)
    assert convo.conversation_id not in [c.conversation_id for c in inbox.conversations]
    invitations = await chat.ListConversations(
        chat_pb2.ListConversationsRequest(state=REQUEST), metadata=private.md
    )
    assert convo.conversation_id in [c.conversation_id for c in invitations.conversations]

    await chat.DeclineConversation(
        chat_pb2.DeclineConversationRequest(conversation_id=convo.conversation_id),
        metadata=private.md,
    )
    code, _ = await refusal(conversation(chat, private, convo.conversation_id))
    assert code == grpc.StatusCode.NOT_FOUND
    assert private.id not in (await conversation(chat, owner, convo.conversation_id)).member_ids

    accepted = await chat.AcceptConversation(
        chat_pb2.AcceptConversationRequest(conversation_id=convo.conversation_id),
        metadata=stranger.md,
    )
    assert accepted.state == ACCEPTED
    assert await refusal(
        chat.DeclineConversation(
            chat_pb2.DeclineConversationRequest(conversation_id=convo.conversation_id),
            metadata=stranger.md,
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_PENDING")

    later = await make_person()
    added = await chat.AddMembers(
        chat_pb2.AddMembersRequest(conversation_id=convo.conversation_id, user_ids=[later.id]),
        metadata=owner.md,
    )
    assert {m.user_id: m.state for m in added.members}[later.id] == REQUEST

    dm = await direct(chat, owner, later)
    assert await refusal(
        chat.DeclineConversation(
            chat_pb2.DeclineConversationRequest(conversation_id=dm.conversation_id),
            metadata=later.md,
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_SUPPORTED")


# ---- T3-M3 / T3-L1: blocks ---------------------------------------------------------------


async def test_nobody_puts_a_blocked_pair_into_one_group(chat, graph, make_person):
    blocker, blocked, third = await make_person(), await make_person(), await make_person()
    await block(graph, blocker, blocked)
    assert await refusal(group(chat, third, blocker, blocked)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "BLOCKED",
    )
    assert await refusal(group(chat, third, blocked, blocker)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "BLOCKED",
    )
    convo = await group(chat, third, blocker)
    assert await refusal(
        chat.AddMembers(
            chat_pb2.AddMembersRequest(
                conversation_id=convo.conversation_id, user_ids=[blocked.id]
            ),
            metadata=third.md,
        )
    ) == (grpc.StatusCode.PERMISSION_DENIED, "BLOCKED")


async def test_a_block_stops_everything_between_the_pair_in_a_shared_group(
    chat, graph, make_person, event_streams
):
    owner, blocker, blocked = await make_person(), await make_person(), await make_person()
    for member in (blocker, blocked):
        await follow(graph, member, owner)
    convo = await group(chat, owner, blocker, blocked)
    cid = convo.conversation_id
    before = await send(chat, blocked, cid, "before the block")
    by_blocker = await send(chat, blocker, cid, "blocker's own")
    by_owner = await send(chat, owner, cid, "owner's")
    await react(chat, blocked, cid, by_owner.message_id, "🎉")
    blocker_stream = await online(chat, blocker, event_streams)
    blocked_stream = await online(chat, blocked, event_streams)
    assert blocker.id in await presence_seen_by(chat, blocked, blocker)
    await send(chat, owner, cid, "sentinel 0")  # what came before the block
    await blocker_stream.until_message("sentinel 0")
    await blocked_stream.until_message("sentinel 0")
    await block(graph, blocker, blocked)

    await send(chat, blocked, cid, "you blocked me, but here I am")
    await edit(chat, blocked, cid, before.message_id, "edited after the block")
    await typing(chat, blocked, cid)
    await mark_read(chat, blocked, cid, by_blocker.sequence)
    code, _ = await refusal(react(chat, blocked, cid, by_blocker.message_id))
    assert code == grpc.StatusCode.NOT_FOUND  # hidden from them, like in a list
    await send(chat, owner, cid, "sentinel 1")
    assert await blocker_stream.until_message("sentinel 1") == []
    await blocked_stream.until_message("sentinel 1")  # their own actions' echoes

    await send(chat, blocker, cid, "after the block")
    await typing(chat, blocker, cid)
    await send(chat, owner, cid, "sentinel 2")
    assert await blocked_stream.until_message("sentinel 2") == []

    listed = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid), metadata=blocker.md
    )
    assert blocked.id not in {m.sender_id for m in listed.messages}
    owners = next(m for m in listed.messages if m.message_id == by_owner.message_id)
    assert not owners.reactions  # the blocked one's reaction does not count for the blocker
    listed = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid), metadata=blocked.md
    )
    assert blocker.id not in {m.sender_id for m in listed.messages}
    seen = await conversation(chat, blocker, cid)
    assert {m.user_id: m.last_read_sequence for m in seen.members}[blocked.id] == 0
    assert await presence_seen_by(chat, blocked, blocker) == set()
    assert await presence_seen_by(chat, blocker, blocked) == set()


async def test_a_block_refuses_every_action_in_an_existing_dm(
    chat, graph, make_person, event_streams
):
    p, q = await make_person(), await make_person()
    await follow(graph, p, q)
    await follow(graph, q, p)
    dm = await direct(chat, p, q)
    cid = dm.conversation_id
    pm = await send(chat, p, cid, "p's message")
    qm = await send(chat, q, cid, "q's message")
    await online(chat, p, event_streams)
    await block(graph, p, q)
    denied = (grpc.StatusCode.PERMISSION_DENIED, "BLOCKED")
    assert await refusal(react(chat, q, cid, pm.message_id)) == denied
    assert await refusal(edit(chat, q, cid, qm.message_id, "edited after the block")) == denied
    assert await refusal(typing(chat, q, cid)) == denied
    assert await refusal(mark_read(chat, q, cid, pm.sequence)) == denied
    assert await refusal(send(chat, q, cid, "hi")) == denied
    assert await refusal(react(chat, p, cid, qm.message_id)) == denied  # both directions
    assert await presence_seen_by(chat, q, p) == set()
    listed = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=cid), metadata=q.md
    )
    assert [m.text for m in listed.messages] == ["q's message"]


# ---- T3-M5: a pending request reveals nothing ----------------------------------------------


async def test_a_pending_message_request_reveals_no_presence_typing_or_reads(
    chat, make_person, event_streams
):
    stranger, victim = await make_person(), await make_person(private=True)
    victim_stream = await online(chat, victim, event_streams)
    stranger_stream = await online(chat, stranger, event_streams)
    dm = await direct(chat, stranger, victim)
    cid = dm.conversation_id
    assert (await conversation(chat, victim, cid)).state == REQUEST
    assert await presence_seen_by(chat, stranger, victim) == set()

    await typing(chat, stranger, cid)
    first = await send(chat, stranger, cid, "hello?")
    kinds = await victim_stream.until_message("hello?")
    assert "typing" not in kinds and "presence" not in kinds

    await mark_read(chat, victim, cid, first.sequence)
    await typing(chat, victim, cid)
    seen = await conversation(chat, stranger, cid)
    assert {m.user_id: m.last_read_sequence for m in seen.members}[victim.id] == 0
    await send(chat, stranger, cid, "sentinel")
    kinds = await stranger_stream.until_message("sentinel")
    assert not {"typing", "read_receipt", "presence"} & set(kinds), kinds

    await chat.AcceptConversation(
        chat_pb2.AcceptConversationRequest(conversation_id=cid), metadata=victim.md
    )
    assert await presence_seen_by(chat, stranger, victim) == {victim.id}


# ---- T3-L2: one emoji ---------------------------------------------------------------------


def test_one_emoji_is_one_grapheme_of_emoji_code_points() -> None:
    for good in ["👍", "❤️", "👍🏽", "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🧑🏿‍💻"]:
        assert is_single_emoji(good), good
    for bad in ["stupidloser", "a", "1", "👍👍", "👍 ", " ", "🏽", "\u200d", "🇫", "🇫🇷🇩🇪", ":)", ""]:
        assert not is_single_emoji(bad), bad


async def test_reactions_take_exactly_one_emoji(chat, make_person):
    a, b = await make_person(), await make_person()
    convo = await group(chat, a, b)
    message = await send(chat, a, convo.conversation_id, "react to me")
    for bad in ["stupidloser", "👍👍", "a", "👍x"]:
        assert await refusal(react(chat, a, convo.conversation_id, message.message_id, bad)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "EMOJI_INVALID",
        ), bad
    for good in ["👍🏽", "🇫🇷", "👩‍👩‍👧‍👦"]:
        reacted = await react(chat, a, convo.conversation_id, message.message_id, good)
        assert good in {r.emoji for r in reacted.reactions}


# ---- T3-L3: streams per account -------------------------------------------------------------


async def test_one_stream_more_than_the_cap_is_refused(
    chat_service, chat, make_person, event_streams
):
    before = chat_service.config
    chat_service.config = dataclasses.replace(before, max_streams_per_user=2)
    try:
        who = await make_person()
        first = await online(chat, who, event_streams)
        await online(chat, who, event_streams)
        third = Stream(chat, who)
        event_streams.append(third)
        assert await third.next() is None
        assert third.error is not None
        assert third.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(third.error) == "TOO_MANY_STREAMS"

        # Connect's subscription counts too: its ack carries the refusal.
        connect = chat.Connect(metadata=who.md)
        await connect.read()  # HELLO
        await connect.write(
            chat_pb2.ConnectRequest(client_request_id="s", subscribe=chat_pb2.Subscribe(since=""))
        )
        acks = []
        async with asyncio.timeout(10):
            while True:
                response = await connect.read()
                if response is grpc.aio.EOF:
                    break
                if response.WhichOneof("response") == "ack":
                    acks.append(response.ack.status.code)
        connect.cancel()
        assert grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] in acks

        # Open ones are never cut; closing one frees its slot.
        await first.close()
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            again = Stream(chat, who)
            event_streams.append(again)
            hello = await again.next()
            if hello is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, "the slot never freed"
            await asyncio.sleep(0.2)
    finally:
        chat_service.config = before
