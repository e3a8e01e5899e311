"""Chat test support: conversations, messages, and a second chat instance.

Not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from socialmesh.chat.v1 import chat_pb2

from services import registry
from services.kit.server import ServiceHost

from .conftest import Infra, Mesh, Person, free_port

DIRECT = chat_pb2.CONVERSATION_TYPE_DIRECT
GROUP = chat_pb2.CONVERSATION_TYPE_GROUP


async def direct(chat, a: Person, b: Person) -> chat_pb2.Conversation:
    return await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(type=DIRECT, member_ids=[b.id])
        ),
        metadata=a.md,
    )


async def group(chat, owner: Person, *members: Person, title: str = "g", request_id: str = ""):
    return await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(
                type=GROUP, member_ids=[m.id for m in members], title=title
            ),
            request_id=request_id,
        ),
        metadata=owner.md,
    )


async def send(chat, who: Person, conversation_id: int, text: str, request_id: str = ""):
    return await chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=conversation_id,
            message=chat_pb2.Message(text=text),
            request_id=request_id,
        ),
        metadata=who.md,
    )


@contextlib.asynccontextmanager
async def chat_instance(
    infra: Infra, mesh: Mesh
) -> AsyncIterator[tuple[ServiceHost, grpc.aio.Channel]]:
    """Another chat instance on the same PostgreSQL and Redis as the mesh's."""
    port = free_port()
    host = ServiceHost(
        registry.get("chat").build_spec(),
        infra.settings("chat", {**mesh.env, "SOCIALMESH_GRPC_PORT": str(port)}),
    )
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        yield host, channel
    finally:
        await channel.close()
        await host.stop()
