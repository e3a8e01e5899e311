"""Trace context crosses every hop: one trace from the client through user to graph and post."""

from __future__ import annotations

import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services import registry
from services.kit.counts import changed
from services.kit.telemetry import setup_tracing

from .conftest import Infra, start_mesh, stop_mesh, unique


async def test_one_trace_spans_every_service_a_call_touches(infra: Infra):
    exporter = InMemorySpanExporter()
    setup_tracing("test", SimpleSpanProcessor(exporter))
    mesh = await start_mesh(infra, registry.IMPLEMENTED)  # servers created after instrumenting
    try:
        stub = user_pb2_grpc.UserServiceStub(mesh["user"].channel)
        handle = unique("t")
        user = await stub.CreateUser(
            user_pb2.CreateUserRequest(
                handle=handle, email=f"{handle}@e.com", password="password123"
            )
        )
        # Counts are cached (kit/counts.py): make this read ask their owners, graph and post.
        redis = aioredis.Redis.from_url(infra.redis_url)
        await changed(redis, [user.user_id])
        await redis.aclose()
        exporter.clear()
        await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
        spans = exporter.get_finished_spans()
        (server,) = [
            s
            for s in spans
            if s.name == "/socialmesh.user.v1.UserService/GetUser" and s.kind == SpanKind.SERVER
        ]
        hops = [s for s in spans if s.name.startswith(("/socialmesh.graph", "/socialmesh.post"))]
        assert {s.name for s in hops} >= {
            "/socialmesh.graph.v1.GraphService/BatchGetFollowCounts",
            "/socialmesh.post.v1.PostService/BatchGetPostCounts",
        }
        assert all(s.context.trace_id == server.context.trace_id for s in hops)
        # The user service's outbound calls are children of its server span...
        clients = [s for s in hops if s.kind == SpanKind.CLIENT]
        assert clients and all(s.parent.span_id == server.context.span_id for s in clients)
        # ...and the downstream servers continue the same trace under those calls.
        servers = [s for s in hops if s.kind == SpanKind.SERVER]
        assert servers and {s.parent.span_id for s in servers} <= {
            c.context.span_id for c in clients
        }
    finally:
        await stop_mesh(mesh)
