"""Chat across several instances: wake-ups over Redis, drain, and a killed instance."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc

from .chat_support import chat_instance, direct, send
from .conftest import Infra, Mesh

RECONNECT = chat_pb2.STREAM_CONTROL_KIND_RECONNECT


class Received(list[chat_pb2.ChatEvent]):
    """Messages read so far, with a way to wait for a count."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    def add(self, event: chat_pb2.ChatEvent) -> None:
        self.append(event)
        self.grew.set()

    async def reach(self, count: int) -> None:
        while len(self) < count:
            self.grew.clear()
            await self.grew.wait()


async def read_messages(
    stub: chat_pb2_grpc.ChatServiceStub, md, since: str, received: Received
) -> tuple[str, str]:
    """Reads a stream until it ends; returns (last cursor, why it ended)."""
    cursor = since
    try:
        async for event in stub.StreamEvents(
            chat_pb2.StreamEventsRequest(since=since), metadata=md
        ):
            if event.HasField("message"):
                received.add(event)
            if event.cursor:
                cursor = event.cursor
            if event.HasField("control") and event.control.kind == RECONNECT:
                return cursor, "reconnect"
    except grpc.aio.AioRpcError as exc:
        return cursor, exc.code().name
    return cursor, "eof"


async def test_a_message_sent_on_one_instance_reaches_a_stream_on_another(
    infra: Infra, mesh: Mesh, make_person
):
    a, b = await make_person(), await make_person()
    first = chat_pb2_grpc.ChatServiceStub(mesh["chat"].channel)
    convo = await direct(first, a, b)
    async with chat_instance(infra, mesh) as (_, channel):
        second = chat_pb2_grpc.ChatServiceStub(channel)
        stream = second.StreamEvents(chat_pb2.StreamEventsRequest(), metadata=b.md)
        hello = await stream.read()
        assert hello.control.kind == chat_pb2.STREAM_CONTROL_KIND_HELLO
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await send(first, a, convo.conversation_id, "across instances")
        async with asyncio.timeout(5):
            while not (event := await stream.read()).HasField("message"):
                pass
        assert event.message.text == "across instances"
        # Woken over pub/sub, not found at the next heartbeat (20 s away).
        assert loop.time() - sent_at < 2
        stream.cancel()


async def test_draining_tells_streams_to_reconnect_and_they_resume_elsewhere(
    infra: Infra, mesh: Mesh, make_person
):
    a, b = await make_person(), await make_person()
    first = chat_pb2_grpc.ChatServiceStub(mesh["chat"].channel)
    convo = await direct(first, a, b)
    received = Received()
    async with chat_instance(infra, mesh) as (host, channel):
        second = chat_pb2_grpc.ChatServiceStub(channel)
        reading = asyncio.create_task(read_messages(second, b.md, "", received))
        await asyncio.sleep(0.3)
        await send(first, a, convo.conversation_id, "before drain")
        async with asyncio.timeout(5):
            await received.reach(1)
        await host.stop()  # SIGTERM's path: health NOT_SERVING, then drain
        cursor, why = await asyncio.wait_for(reading, 10)
        assert why == "reconnect"
    await send(first, a, convo.conversation_id, "after drain")
    stream = first.StreamEvents(chat_pb2.StreamEventsRequest(since=cursor), metadata=b.md)
    async with asyncio.timeout(5):
        while not (event := await stream.read()).HasField("message"):
            pass
    assert event.message.text == "after drain"
    stream.cancel()


@pytest.mark.parametrize("rounds", [60])
async def test_chaos_an_instance_killed_mid_conversation_loses_and_repeats_nothing(
    infra: Infra, mesh: Mesh, make_person, rounds: int
):
    """Two senders on two instances; the reader's instance is killed without draining.

    The reader reconnects to the survivor with its last cursor and ends with
    every message exactly once, in each conversation's order.
    """
    a, b, reader = await make_person(), await make_person(), await make_person()
    first = chat_pb2_grpc.ChatServiceStub(mesh["chat"].channel)
    convo_a = await direct(first, a, reader)
    convo_b = await direct(first, b, reader)
    received = Received()
    async with chat_instance(infra, mesh) as (host, channel):
        second = chat_pb2_grpc.ChatServiceStub(channel)
        reading = asyncio.create_task(read_messages(second, reader.md, "", received))
        await asyncio.sleep(0.3)

        async def talk(stubs, who, convo, tag: str) -> None:
            """Sends in order; when an instance dies, retries on the survivor with the same
            requestId (a send that did land is not stored twice)."""
            for i in range(rounds):
                while True:
                    try:
                        await send(stubs[0], who, convo.conversation_id, f"{tag}{i}", f"{tag}{i}")
                        break
                    except grpc.aio.AioRpcError:
                        stubs = stubs[1:] or stubs
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)

        talking = asyncio.gather(
            talk([first], a, convo_a, "a"), talk([second, first], b, convo_b, "b")
        )
        async with asyncio.timeout(10):
            await received.reach(rounds // 2)
        await host.server.stop(None)  # killed: no drain, streams cut mid-flight
        cursor, why = await asyncio.wait_for(reading, 10)
        assert why != "reconnect"  # it really was cut, not drained
        await talking
    resumed = asyncio.create_task(read_messages(first, reader.md, cursor, received))
    async with asyncio.timeout(15):
        await received.reach(2 * rounds)
    await asyncio.sleep(0.3)  # anything extra (a repeat) would arrive now
    resumed.cancel()
    texts_a = [
        e.message.text for e in received if e.message.conversation_id == convo_a.conversation_id
    ]
    texts_b = [
        e.message.text for e in received if e.message.conversation_id == convo_b.conversation_id
    ]
    assert texts_a == [f"a{i}" for i in range(rounds)]
    assert texts_b == [f"b{i}" for i in range(rounds)]
    sequences = [
        e.message.sequence for e in received if e.message.conversation_id == convo_a.conversation_id
    ]
    assert sequences == list(range(1, rounds + 1))
