"""Prometheus metrics: every RPC counted by method and code, timed; bus gauges sampled."""

from __future__ import annotations

import grpc
from prometheus_client import REGISTRY
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.metrics import MetricsSampler, method_name

from .conftest import Mesh, Person


def handled(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "rpc_server_handled_total", {"service": "user", "method": method, "code": code}
    )
    return value or 0.0


async def test_every_rpc_is_counted_by_method_and_status_and_timed(mesh: Mesh, make_person) -> None:
    users = user_pb2_grpc.UserServiceStub(mesh["user"].channel)
    person: Person = await make_person()
    ok_before = handled("UserService/GetCaller", "OK")
    denied_before = handled("UserService/GetCaller", "UNAUTHENTICATED")
    timed_before = (
        REGISTRY.get_sample_value(
            "rpc_server_handling_seconds_count",
            {"service": "user", "method": "UserService/GetCaller"},
        )
        or 0.0
    )
    await users.GetCaller(user_pb2.GetCallerRequest(), metadata=person.md)
    await users.GetCaller(user_pb2.GetCallerRequest(), metadata=person.md)
    try:
        await users.GetCaller(user_pb2.GetCallerRequest())
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    assert handled("UserService/GetCaller", "OK") == ok_before + 2
    assert handled("UserService/GetCaller", "UNAUTHENTICATED") == denied_before + 1
    timed = REGISTRY.get_sample_value(
        "rpc_server_handling_seconds_count", {"service": "user", "method": "UserService/GetCaller"}
    )
    assert timed == timed_before + 3


async def test_the_sampler_reports_outbox_backlog_and_consumer_lag(mesh: Mesh) -> None:
    host = mesh["feed"].host
    runtime = host.runtime
    sampler = MetricsSampler("feed", runtime.db, runtime.redis, lambda: list(runtime.consumers))
    await sampler.sample()
    assert REGISTRY.get_sample_value("outbox_unpublished_events", {"service": "feed"}) is not None
    consumer = runtime.consumers[0]
    labels = {"stream": consumer.stream, "group": consumer.group}
    assert REGISTRY.get_sample_value("event_consumer_pending", labels) is not None
    assert REGISTRY.get_sample_value("event_dead_letters", labels) is not None


def test_method_labels_stay_low_cardinality() -> None:
    assert method_name("/socialmesh.user.v1.UserService/GetUser") == "UserService/GetUser"
