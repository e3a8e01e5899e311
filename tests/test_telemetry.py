"""The kit's lean tracing: every request has a trace context, only sampled ones record spans."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services import registry
from services.kit import telemetry
from services.kit.counts import changed
from services.kit.telemetry import ServerSpan, incoming_context, traceparent_headers

from .conftest import Infra, start_mesh, stop_mesh, unique

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_traceparent_parsing_accepts_w3c_and_refuses_garbage() -> None:
    ctx = incoming_context([("traceparent", f"00-{TRACE}-{PARENT}-01"), ("x", "y")])
    assert ctx is not None and ctx.trace_flags.sampled and ctx.is_remote
    assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") == (TRACE, PARENT)
    unsampled = incoming_context([("traceparent", f"00-{TRACE}-{PARENT}-00")])
    assert unsampled is not None and not unsampled.trace_flags.sampled
    for bad in (
        "",
        "00-xyz-abc-01",
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",
    ):
        assert incoming_context([("traceparent", bad)]) is None, bad
    assert incoming_context(None) is None


def test_an_unrecorded_request_still_has_a_trace_for_logs_and_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "_recording", False)
    span = ServerSpan("/socialmesh.user.v1.UserService/GetUser", [])
    try:
        current = trace.get_current_span().get_span_context()
        assert current.is_valid and not span.span.is_recording()
        assert not current.trace_flags.sampled
        (header,) = traceparent_headers()
        assert header == ("traceparent", f"00-{current.trace_id:032x}-{current.span_id:016x}-00")
    finally:
        span.end(grpc.StatusCode.OK)
    assert not trace.get_current_span().get_span_context().is_valid  # detached again
    # A caller's trace goes on, with a new span id for this hop.
    span = ServerSpan("/x.Y/Z", [("traceparent", f"00-{TRACE}-{PARENT}-01")])
    try:
        ctx = trace.get_current_span().get_span_context()
        assert f"{ctx.trace_id:032x}" == TRACE and f"{ctx.span_id:016x}" != PARENT
        assert ctx.trace_flags.sampled  # the decision travels on
    finally:
        span.end(grpc.StatusCode.OK)


async def test_sampling_is_decided_where_the_trace_starts(infra: Infra) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("test", SimpleSpanProcessor(exporter))
    mesh = await start_mesh(infra, registry.IMPLEMENTED)
    try:
        stub = user_pb2_grpc.UserServiceStub(mesh["user"].channel)
        handle = unique("t")
        user = await stub.CreateUser(
            user_pb2.CreateUserRequest(
                handle=handle, email=f"{handle}@e.com", password="password123"
            )
        )
        request = user_pb2.GetUserRequest(user_id=user.user_id)
        # Unsampled upstream: no span anywhere along the path (the counts miss calls graph
        # and post), though the trace id still travels.
        exporter.clear()
        unsampled = "1" * 32
        redis = aioredis.Redis.from_url(infra.redis_url)
        await changed(redis, [user.user_id])
        await redis.aclose()
        await stub.GetUser(request, metadata=[("traceparent", f"00-{unsampled}-{PARENT}-00")])
        assert exporter.get_finished_spans() == ()
        # Sampled upstream: this service and the ones it calls record, in the caller's trace.
        redis = aioredis.Redis.from_url(infra.redis_url)
        await changed(redis, [user.user_id])  # cached counts go stale: this read asks graph, post
        await redis.aclose()
        exporter.clear()
        await stub.GetUser(
            request,
            metadata=[("traceparent", f"00-{TRACE}-{PARENT}-01")],
        )
        spans = exporter.get_finished_spans()
        assert {s.name for s in spans} >= {
            "/socialmesh.user.v1.UserService/GetUser",
            "/socialmesh.graph.v1.GraphService/BatchGetFollowCounts",
            "/socialmesh.post.v1.PostService/BatchGetPostCounts",
        }
        assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE}
        (server,) = [s for s in spans if s.name.endswith("UserService/GetUser")]
        assert f"{server.parent.span_id:016x}" == PARENT
    finally:
        await stop_mesh(mesh)
