"""Wires the chat service into the kit's server bootstrap.

Chat serves long-lived streams: it opts out of the kit's 5-minute connection-age
cut and ends streams itself (TOKEN_EXPIRING before the token expires, RECONNECT
when draining).
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import ChatServicer

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="chat",
        grpc_service=SERVICE_NAME,
        servicer=ChatServicer,
        add_to_server=chat_pb2_grpc.add_ChatServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
        long_lived_streams=True,
    )
