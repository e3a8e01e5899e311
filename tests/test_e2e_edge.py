"""The edge with real traffic: what it refuses, how much it carries, how long it keeps a
quiet stream, and that it never shares its port.

Two setups:
* the real stack (`socialmesh up`, the session `stack` fixture) for the contract's own
  internal methods and a large page of posts over HTTP/2;
* a bare Envoy rendered by gateway/envoy_config.py in front of a tiny grpc.aio server for
  the edge-test service of edge_support.py (an internal method *with* a REST binding,
  a server stream), for what the real services cannot show (yet) or would make slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway.descriptors import load_contract
from gateway.envoy_config import (
    MAX_RESPONSE_BODY_BYTES,
)
from services import registry
from services.kit.server import MIN_PING_INTERVAL_WITHOUT_DATA_MS, SERVER_OPTIONS

from .conftest import free_port
from .e2e_support import UpProcess, bearer, login, register
from .edge_support import (
    DESCRIPTOR_SET,
    EDGETEST_SERVICE,
    contract_for_tests,
    edge_config,
    envoy,
    es256_key_and_jwks,
    until_ready,
)

pytestmark = pytest.mark.e2e


def not_found(r: httpx.Response) -> bool:
    """The edge's JSON 404 for a route it does not serve (google.rpc.Status)."""
    if r.status_code != 404:
        return False
    body = r.json()
    reasons = [d.get("reason") for d in body.get("details", [])]
    return (body["code"], body["message"], reasons) == (5, "no such API route", ["ROUTE_NOT_FOUND"])


# ------------------------------------------------------------------- the real stack


def internal_methods() -> list[tuple[str, str]]:
    """(service name, gRPC path) of every METHOD_ACCESS_INTERNAL method `up` serves."""
    contract = load_contract(DESCRIPTOR_SET)
    found = [
        (name, m.grpc_path)
        for name in registry.IMPLEMENTED
        for m in contract.methods(registry.get(name).grpc_service)
        if m.internal
    ]
    assert len(found) >= 4, found  # graph and post have several
    return found


def test_internal_methods_are_not_found_at_the_edge(client: httpx.Client, stack: UpProcess) -> None:
    """Native gRPC and JSON, anonymous, signed in or with a forged token: always 404
    (UNIMPLEMENTED for gRPC clients), although the services themselves serve them."""
    token = login(client, register(client)["handle"])["accessToken"]
    callers = {
        "anonymous": [],
        "signed in": [("authorization", f"Bearer {token}")],
        "forged token": [("authorization", f"Bearer {token[:-4]}AAAA")],
    }
    ports = registry.ports(stack.base_port)
    with grpc.insecure_channel(f"127.0.0.1:{stack.edge_port}") as edge:
        for service, path in internal_methods():
            for who, metadata in callers.items():
                call = edge.unary_unary(path)  # raw bytes: b"" is an empty request message
                with pytest.raises(grpc.RpcError) as err:
                    call(b"", metadata=metadata, timeout=10)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (path, who)
                r = client.post(path, json={}, headers=dict(metadata))
                assert not_found(r), (path, who, r.text)
            # The same method straight at its service exists (whatever it answers).
            with grpc.insecure_channel(f"127.0.0.1:{ports[service]}") as direct:
                try:
                    direct.unary_unary(path)(b"", metadata=callers["signed in"], timeout=10)
                except grpc.RpcError as exc:
                    assert exc.code() != grpc.StatusCode.UNIMPLEMENTED, (path, exc)


def test_a_large_page_over_http2(client: httpx.Client, stack: UpProcess) -> None:
    """A page of 30 posts of 5,000 characters is ~180 KB of JSON: it used to be a 500
    ("Response not transcoded because the transcoder's internal buffer size exceeds the
    configured limit") for HTTP/2 clients, whose transcoder buffer was the 64 KiB window."""
    user = register(client)
    headers = bearer(login(client, user["handle"])["accessToken"])
    texts = []
    for i in range(30):  # the post service allows 30 posts a minute
        text = (f"post {i:02d}: " + "lorem ipsum dolor sit amet, ünïcödé ✓ " * 200)[:5000]
        r = client.post("/v1/posts", json={"text": text}, headers=headers)
        assert r.status_code == 200, r.text
        texts.append(text)
    path = f"/v1/users/{user['userId']}/posts"
    # HTTP/2 without TLS needs prior knowledge (h2c): HTTP/1.1 off, HTTP/2 on.
    with httpx.Client(base_url=stack.edge, http1=False, http2=True, timeout=30) as h2:
        r = h2.get(path, params={"pageSize": 30})
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200, r.text[:500]
    assert 2 * 64 * 1024 < len(r.content) < MAX_RESPONSE_BODY_BYTES  # well past the old limit
    page = r.json()
    assert [p["text"] for p in page["posts"]] == texts[::-1]  # newest first
    assert all(p["authorId"] == user["userId"] for p in page["posts"])
    # And the same page over HTTP/1.1.
    assert client.get(path, params={"pageSize": 30}).json() == page


# ------------------------------------------- a bare Envoy and the edge-test service


def edgetest_messages(descriptor: Path) -> tuple[Any, Any]:
    """WatchRequest{id} and Event{text, seq_no} of the edge-test service, as classes."""
    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes()).file:
        pool.Add(f)

    def message(name: str) -> Any:
        return message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"socialmesh.edgetest.v1.{name}")
        )

    return message("WatchRequest"), message("Event")


@contextlib.asynccontextmanager
async def edgetest_server(descriptor: Path, options: list[tuple[str, Any]]) -> AsyncIterator[int]:
    """The edge-test service on an ephemeral port; its port.

    Watch sends one event, stays silent for `id` milliseconds, then sends another.
    Unary methods answer with an event that names them; Echo returns its request.
    """
    watch_request, event = edgetest_messages(descriptor)

    async def watch(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        yield event(text="first", seq_no=1)
        await asyncio.sleep(request.id / 1000)
        yield event(text="after the quiet", seq_no=2)

    def unary(name: str) -> grpc.RpcMethodHandler:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return event(text=name, seq_no=request.id)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=watch_request.FromString,
            response_serializer=event.SerializeToString,
        )

    async def echo(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return request

    handlers = {name: unary(name) for name in ("Poke", "ListEvents", "Secret", "Hidden")}
    handlers["Echo"] = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=event.FromString, response_serializer=event.SerializeToString
    )
    handlers["Watch"] = grpc.unary_stream_rpc_method_handler(
        watch,
        request_deserializer=watch_request.FromString,
        response_serializer=event.SerializeToString,
    )
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(EDGETEST_SERVICE, handlers),)
    )
    health = HealthServicer()
    await health.set(EDGETEST_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def access_token(private_key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "socialmesh", "aud": "socialmesh-api", "sub": "42", "iat": now}
    payload |= {"exp": now + 300, **claims}
    return jwt.encode(payload, private_key, algorithm="ES256", headers={"kid": "test"})


async def test_internal_methods_are_refused_on_every_path(tmp_path: Path) -> None:
    """Including a REST binding an internal method may get; public and signed-in methods
    of the same service keep working, and the upstream does serve the refused ones."""
    descriptor = contract_for_tests(tmp_path)
    watch_request, event = edgetest_messages(descriptor)
    key, jwks = es256_key_and_jwks()
    good = {"authorization": f"Bearer {access_token(key)}"}
    other_key, _ = es256_key_and_jwks()
    callers: dict[str, dict[str, str]] = {
        "anonymous": {},
        "signed in": good,
        "foreign key": {"authorization": f"Bearer {access_token(other_key)}"},
        "expired": {"authorization": f"Bearer {access_token(key, exp=int(time.time()) - 60)}"},
    }
    async with edgetest_server(descriptor, SERVER_OPTIONS) as upstream_port:
        config, edge_port, admin_port = edge_config(descriptor, jwks, upstream_port)
        with envoy(config, tmp_path) as edge:
            await until_ready(edge, admin_port)
            base = f"http://127.0.0.1:{edge_port}"
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as h1,
                httpx.AsyncClient(base_url=base, timeout=10, http1=False, http2=True) as h2,
                grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as channel,
            ):
                for who, headers in callers.items():
                    for client in (h1, h2):
                        for path in ("/v1/edgetest/7:secret", "/v1/edgetest/7:secret/"):
                            r = await client.get(path, headers=headers)
                            assert not_found(r), (who, path, r.text)
                        for name in ("Secret", "Hidden"):
                            r = await client.post(f"/{EDGETEST_SERVICE}/{name}", headers=headers)
                            assert not_found(r), (who, name, r.text)
                    for name in ("Secret", "Hidden"):
                        call = channel.unary_unary(
                            f"/{EDGETEST_SERVICE}/{name}",
                            request_serializer=watch_request.SerializeToString,
                            response_deserializer=event.FromString,
                        )
                        with pytest.raises(grpc.aio.AioRpcError) as err:
                            await call(watch_request(id=7), metadata=tuple(headers.items()))
                        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (who, name)
                # The controls: tokens are still checked where they matter, and methods
                # that are not internal reach the upstream in both forms.
                assert (await h1.post("/v1/edgetest/7:poke", json={})).status_code == 401
                poked = await h2.post("/v1/edgetest/7:poke", json={}, headers=good)
                assert poked.status_code == 200 and poked.json()["text"] == "Poke", poked.text
                watch = await h1.get("/v1/edgetest/0:watch")  # public: anonymous is fine
                assert watch.status_code == 200 and '"seqNo":"2"' in watch.text, watch.text
                poke = channel.unary_unary(
                    f"/{EDGETEST_SERVICE}/Poke",
                    request_serializer=watch_request.SerializeToString,
                    response_deserializer=event.FromString,
                )
                reply = await poke(watch_request(id=7), metadata=tuple(good.items()))
                assert reply.text == "Poke"
        # Straight at the upstream the refused methods answer.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}") as direct:
            secret = direct.unary_unary(
                f"/{EDGETEST_SERVICE}/Secret",
                request_serializer=watch_request.SerializeToString,
                response_deserializer=event.FromString,
            )
            assert (await secret(watch_request(id=7))).text == "Secret"


async def test_bodies_beyond_the_http2_window_pass_both_ways(tmp_path: Path) -> None:
    """A 200 KB JSON body in and the same back out, over HTTP/1.1 and HTTP/2. Before the
    transcoder had explicit limits the HTTP/2 response was a 500 (its buffer was the 64 KiB
    stream window); this shows it without the whole stack."""
    descriptor = contract_for_tests(tmp_path)
    key, jwks = es256_key_and_jwks()
    good = {"authorization": f"Bearer {access_token(key)}"}
    body = {"text": "é" * 100_000, "seqNo": "7"}  # 200 KB of UTF-8
    async with edgetest_server(descriptor, SERVER_OPTIONS) as upstream_port:
        config, edge_port, admin_port = edge_config(descriptor, jwks, upstream_port)
        with envoy(config, tmp_path) as edge:
            await until_ready(edge, admin_port)
            base = f"http://127.0.0.1:{edge_port}"
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as h1,
                httpx.AsyncClient(base_url=base, timeout=10, http1=False, http2=True) as h2,
            ):
                for client in (h1, h2):
                    r = await client.post("/v1/edgetest:echo", json=body, headers=good)
                    assert r.status_code == 200, (client, r.status_code, r.text[:300])
                    assert r.json() == body
                    assert len(r.content) > 64 * 1024 * 2
                assert r.http_version == "HTTP/2"


# What ServiceHost passed to grpc.aio.server before keepalive enforcement was set: the
# control case, to show the test catches the failure it guards against.
PRE_KEEPALIVE_SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
]
# Envoy pings every 1.5 s here instead of 30 s, so that "several intervals" is seconds.
PING_INTERVAL_SECONDS = 1.5
# With grpc's default policy the 4th ping without data (the 3rd strike) gets GOAWAY
# too_many_pings, i.e. after 4 intervals (+15% jitter each): ~6-7 s. Stay quiet longer.
QUIET_SECONDS = 10.0


@pytest.mark.parametrize(
    ("server_options", "survives"),
    [(SERVER_OPTIONS, True), (PRE_KEEPALIVE_SERVER_OPTIONS, False)],
    ids=["kit-server-options", "control-grpc-default-ping-policy"],
)
async def test_a_quiet_stream_survives_the_edges_keepalive_pings(
    tmp_path: Path, server_options: list[tuple[str, Any]], survives: bool
) -> None:
    """A server stream through the edge that sends nothing for several of Envoy's upstream
    ping intervals. With the kit's server options it gets its last message; with grpc's
    default ping policy the server answers the pings with GOAWAY too_many_pings and the
    stream dies UNAVAILABLE (what quiet SSE feeds and chat streams would have hit)."""
    assert PING_INTERVAL_SECONDS * 1000 >= MIN_PING_INTERVAL_WITHOUT_DATA_MS
    descriptor = contract_for_tests(tmp_path)
    watch_request, event = edgetest_messages(descriptor)
    _, jwks = es256_key_and_jwks()
    async with edgetest_server(descriptor, server_options) as upstream_port:
        config, edge_port, admin_port = edge_config(
            descriptor,
            jwks,
            upstream_port,
            upstream_keepalive_interval_seconds=PING_INTERVAL_SECONDS,
        )
        with envoy(config, tmp_path) as edge:
            await until_ready(edge, admin_port)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as channel:
                watch = channel.unary_stream(
                    f"/{EDGETEST_SERVICE}/Watch",
                    request_serializer=watch_request.SerializeToString,
                    response_deserializer=event.FromString,
                )
                started = time.monotonic()
                seen: list[int] = []
                failure: grpc.aio.AioRpcError | None = None
                try:
                    async for message in watch(
                        watch_request(id=int(QUIET_SECONDS * 1000)), timeout=QUIET_SECONDS + 20
                    ):
                        seen.append(message.seq_no)
                except grpc.aio.AioRpcError as exc:
                    failure = exc
                elapsed = time.monotonic() - started
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as admin:
                stats = (await admin.get("/stats", params={"filter": "^cluster.edgetest."})).text
    # GOAWAYs Envoy received from the upstream (grpc's is ENHANCE_YOUR_CALM too_many_pings).
    goaways = counter(stats, "cluster.edgetest.upstream_cx_close_notify")
    if survives:
        assert failure is None, (failure, elapsed, stats)
        assert seen == [1, 2] and elapsed >= QUIET_SECONDS
        assert goaways == 0, stats
    else:
        assert failure is not None and seen == [1], (seen, elapsed)
        assert failure.code() == grpc.StatusCode.UNAVAILABLE, failure
        assert elapsed < QUIET_SECONDS, elapsed
        assert goaways == 1, stats


def counter(stats: str, name: str) -> int:
    for line in stats.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError(f"no stat {name} in:\n{stats}")


# --------------------------------------------------------------------- port sharing


async def test_a_second_edge_on_the_same_port_fails_loudly(tmp_path: Path) -> None:
    """Without SO_REUSEPORT the kernel refuses the second bind (security review L9)."""
    descriptor = contract_for_tests(tmp_path)
    _, jwks = es256_key_and_jwks()
    config, edge_port, admin_port = edge_config(descriptor, jwks, free_port())
    second_config = config.replace(f"port_value: {admin_port}\n", f"port_value: {free_port()}\n")
    assert second_config != config  # its own admin port: only the edge port is shared
    with envoy(config, tmp_path, "first") as first:
        await until_ready(first, admin_port, upstream_healthy=False)
        with envoy(second_config, tmp_path, "second") as second:
            try:
                code = await asyncio.to_thread(second.proc.wait, 15)
            except subprocess.TimeoutExpired:
                code = None
            log = second.output()
        assert code is not None, f"a second envoy is serving port {edge_port} too:\n{log}"
        assert code != 0, log
        assert f"127.0.0.1:{edge_port}" in log and "Address already in use" in log, log
        assert first.proc.poll() is None  # the first one is unharmed
