"""Wires the graph service into the kit's server bootstrap."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import grpc
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc

from services.kit.events import Event, StreamConsumer, stream_name
from services.kit.server import Runtime, ServiceSpec

from .servicer import GraphServicer

SERVICE_NAME = graph_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name
#: Counts are public (they are on every public profile); all else needs a token.
PUBLIC_METHODS = frozenset({f"/{SERVICE_NAME}/BatchGetFollowCounts"})


def build_spec() -> ServiceSpec:
    state: dict[str, object] = {}

    def register(server: grpc.aio.Server, runtime: Runtime) -> None:
        servicer = GraphServicer(runtime)
        state["servicer"] = servicer
        graph_pb2_grpc.add_GraphServiceServicer_to_server(servicer, server)

    async def on_ready(runtime: Runtime) -> None:
        servicer = state["servicer"]
        assert isinstance(servicer, GraphServicer)
        await servicer.on_ready()

        async def on_user_event(event: Event) -> None:
            if event.topic == "user.deleted":
                await servicer.store.forget_user(event.aggregate_id)

        consumer = StreamConsumer(
            runtime.redis,
            stream_name("user"),
            group="graph",
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            handler=on_user_event,
        )
        await consumer.ensure_group()
        consumer.start()
        state["consumer"] = consumer

    async def on_stop(runtime: Runtime) -> None:
        consumer = state.get("consumer")
        if isinstance(consumer, StreamConsumer):
            await consumer.stop()
        servicer = state["servicer"]
        assert isinstance(servicer, GraphServicer)
        await servicer.on_stop()

    return ServiceSpec(
        name="graph",
        schema="graph",
        migrations_dir=Path(__file__).parent / "migrations",
        grpc_services=(SERVICE_NAME,),
        public_methods=PUBLIC_METHODS,
        register=register,
        on_ready=on_ready,
        on_stop=on_stop,
    )
